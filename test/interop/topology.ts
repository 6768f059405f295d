// Two WireGuard hosts in two network namespaces joined by a veth pair: each side runs either
// wireguard-ts or wireguard-go, configured with `wg` exactly as a user would. Every address is
// inside the namespaces the test creates; everything is torn down by the Cleanup.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Cleanup, createNetns, keyFile, sh, tryRun, uniqueName, waitFor, wgKeyPair, SOCKET_DIR } from './harness.js';

export type Impl = 'ours' | 'wggo';

export const BIN = fileURLToPath(new URL('../../../bin/wireguard-ts', import.meta.url));

export interface Host {
  impl: Impl;
  ns: string;
  ifname: string;
  privateKey: string;
  publicKey: string;
  port: number;
  /** Outer (veth) address, tunnel IPv4 and IPv6 addresses. */
  outer: string;
  tunnel4: string;
  tunnel6: string;
  proc: ChildProcess;
  exited: () => boolean;
  /** Runs a command inside the host's namespace. */
  exec(cmd: string, args: string[]): string;
  wg(...args: string[]): string;
}

export interface PairOptions {
  a: Impl;
  b: Impl;
  outer?: 4 | 6;
  psk?: boolean;
  /** Extra arguments for wireguard-ts (e.g. --workers 1). */
  oursArgs?: string[];
}

/** Starts a daemon of `impl` in the foreground inside `ns` and waits for its UAPI socket. */
export async function startDaemon(cleanup: Cleanup, impl: Impl, ns: string, ifname: string, extra: string[] = []): Promise<{ proc: ChildProcess; exited: () => boolean }> {
  // WGTS_DAEMON_NODE_ARGS passes node flags (e.g. --cpu-prof) to our daemons, for profiling.
  const nodeArgs = process.env.WGTS_DAEMON_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const cmd = impl === 'ours' ? [process.execPath, ...nodeArgs, BIN, '-f', ...extra, ifname] : ['wireguard-go', '-f', ifname];
  const proc = spawn('ip', ['netns', 'exec', ns, ...cmd], {
    env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1', LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'error' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  let exited = false;
  proc.on('exit', () => (exited = true));
  cleanup.add(async () => {
    if (exited) return;
    proc.kill('SIGTERM');
    await waitFor(`${impl} ${ifname} to exit`, () => exited, 5000).catch(() => proc.kill('SIGKILL'));
  });
  await waitFor(`${impl} socket for ${ifname}`, () => exited || existsSync(`${SOCKET_DIR}/${ifname}.sock`), 10_000);
  if (exited) throw new Error(`${impl} ${ifname} exited during start-up`);
  return { proc, exited: () => exited };
}

/** Two hosts with a tunnel between them, configured and up; traffic not yet exchanged. */
export async function createPair(cleanup: Cleanup, o: PairOptions): Promise<{ a: Host; b: Host }> {
  const nsA = createNetns(cleanup, 'wgtsa');
  const nsB = createNetns(cleanup, 'wgtsb');
  const va = uniqueName('va');
  const vb = uniqueName('vb');
  sh('ip', ['link', 'add', va, 'netns', nsA, 'type', 'veth', 'peer', 'name', vb, 'netns', nsB]);
  const v6 = o.outer === 6;
  const outerA = v6 ? 'fd00:99::1' : '10.99.0.1';
  const outerB = v6 ? 'fd00:99::2' : '10.99.0.2';
  for (const [ns, dev, addr] of [[nsA, va, outerA], [nsB, vb, outerB]] as const) {
    sh('ip', ['-n', ns, 'addr', 'add', `${addr}/${v6 ? 64 : 24}`, 'dev', dev, ...(v6 ? ['nodad'] : [])]);
    sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
  }
  const host = async (impl: Impl, ns: string, outer: string, n: number): Promise<Host> => {
    const ifname = uniqueName(impl === 'ours' ? 'wgts' : 'wggo');
    const d = await startDaemon(cleanup, impl, ns, ifname, impl === 'ours' ? o.oursArgs : []);
    const keys = wgKeyPair();
    const exec = (cmd: string, args: string[]): string => sh('ip', ['netns', 'exec', ns, cmd, ...args]);
    return {
      impl, ns, ifname, ...keys, port: 51820 + n, outer, tunnel4: `10.200.0.${n}`, tunnel6: `fd00:200::${n}`,
      proc: d.proc, exited: d.exited, exec, wg: (...args) => sh('wg', args),
    };
  };
  const a = await host(o.a, nsA, outerA, 1);
  const b = await host(o.b, nsB, outerB, 2);
  const psk = o.psk ? keyFile(sh('wg', ['genpsk']).trim()) : undefined;
  for (const [me, peer] of [[a, b], [b, a]] as const) {
    const endpoint = v6 ? `[${peer.outer}]:${peer.port}` : `${peer.outer}:${peer.port}`;
    me.wg('set', me.ifname, 'private-key', keyFile(me.privateKey), 'listen-port', String(me.port),
      'peer', peer.publicKey, 'allowed-ips', `${peer.tunnel4}/32,${peer.tunnel6}/128`, 'endpoint', endpoint,
      ...(psk ? ['preshared-key', psk] : []));
    sh('ip', ['-n', me.ns, 'addr', 'add', `${me.tunnel4}/24`, 'dev', me.ifname]);
    sh('ip', ['-n', me.ns, 'addr', 'add', `${me.tunnel6}/64`, 'dev', me.ifname, 'nodad']);
    sh('ip', ['-n', me.ns, 'link', 'set', me.ifname, 'up']);
  }
  return { a, b };
}

/** Pings `to` from `from`'s namespace; returns whether replies came back. */
export function ping(from: Host, to: string, args: string[] = []): boolean {
  const v6 = to.includes(':');
  return tryRun('ip', ['netns', 'exec', from.ns, 'ping', ...(v6 ? ['-6'] : []), '-c', '3', '-i', '0.2', '-W', '2', ...args, to]).status === 0;
}

/** `wg show IF dump` of one peer: the fields of its line. */
export function peerDump(host: Host, publicKey: string): { endpoint: string; latestHandshake: number; rx: number; tx: number } {
  const line = host.wg('show', host.ifname, 'dump').split('\n').find((l) => l.startsWith(publicKey + '\t'));
  if (!line) throw new Error(`${host.impl} does not list peer ${publicKey}`);
  const f = line.split('\t');
  return { endpoint: f[2]!, latestHandshake: Number(f[4]), rx: Number(f[5]), tx: Number(f[6]) };
}

/** iperf3 TCP from `client` to `server` for `seconds` with `streams` flows; the receiver's bits/s. */
export async function iperf(cleanup: Cleanup, client: Host, server: Host, seconds: number, streams = 1): Promise<number> {
  const srv = spawn('ip', ['netns', 'exec', server.ns, 'iperf3', '-s', '-1', '-B', server.tunnel4], { stdio: 'ignore' });
  cleanup.add(() => void srv.kill());
  await waitFor('iperf3 server', () => tryRun('ip', ['netns', 'exec', server.ns, 'ss', '-ltn', `sport = :5201`]).out.includes('5201'), 5000);
  const out = sh('ip', ['netns', 'exec', client.ns, 'iperf3', '-c', server.tunnel4, '-t', String(seconds), '-P', String(streams), '-J']);
  const report = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
  return report.end.sum_received.bits_per_second;
}
