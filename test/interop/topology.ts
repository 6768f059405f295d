// Two WireGuard hosts in two network namespaces joined by a veth pair: each side runs either
// wireguard-ts or wireguard-go, configured with `wg` exactly as a user would. Every address is
// inside the namespaces the test creates; everything is torn down by the Cleanup.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cleanup, createNetns, keyFile, netnsExec, sh, spawnDaemon, tryRun, uniqueName, waitFor, wgKeyPair } from './harness.js';
import type { LoadgenReport } from '../../src/loadgen/stats.js';

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
  /** Extra environment for wireguard-ts (e.g. a test hook). */
  oursEnv?: NodeJS.ProcessEnv;
  /** Another build's bin/wireguard-ts to run as wireguard-ts (a bench's reference build). */
  oursBin?: string;
}

/**
 * The command line of our daemon in the foreground with `args`. WGTS_DAEMON_NODE_ARGS passes
 * node flags (e.g. --cpu-prof, --trace-gc) to it, for profiling.
 */
export function oursCommand(args: string[], bin = BIN): string[] {
  const nodeArgs = process.env.WGTS_DAEMON_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  return [process.execPath, ...nodeArgs, bin, '-f', ...args];
}

/** Starts a daemon of `impl` in the foreground inside `ns` and waits for its UAPI socket. */
export async function startDaemon(cleanup: Cleanup, impl: Impl, ns: string, ifname: string, extra: string[] = [], env?: NodeJS.ProcessEnv, bin = BIN): Promise<{ proc: ChildProcess; exited: () => boolean }> {
  const cmd = impl === 'ours' ? oursCommand([...extra, ifname], bin) : ['wireguard-go', '-f', ifname];
  return spawnDaemon(cleanup, impl, ['ip', 'netns', 'exec', ns, ...cmd], ifname, {
    stdio: 'inherit',
    logLevel: process.env.TEST_LOG_LEVEL,
    env,
  });
}

/** Starts `impl` in a new namespace of its own, so every such daemon may take the same listen port. */
export async function startDaemonAlone(cleanup: Cleanup, impl: Impl, extra: string[] = []): Promise<{ ifname: string; proc: ChildProcess; exited: () => boolean }> {
  const ifname = uniqueName(impl === 'ours' ? 'wgts' : 'wggo');
  const d = await startDaemon(cleanup, impl, createNetns(cleanup), ifname, extra);
  return { ifname, ...d };
}

/** Two namespaces joined by a veth pair with one outer address on each end. */
export interface Link { nsA: string; nsB: string; outerA: string; outerB: string }

export function createLink(cleanup: Cleanup, outer: 4 | 6 = 4): Link {
  const nsA = createNetns(cleanup, 'wgtsa');
  const nsB = createNetns(cleanup, 'wgtsb');
  const va = uniqueName('va');
  const vb = uniqueName('vb');
  sh('ip', ['link', 'add', va, 'netns', nsA, 'type', 'veth', 'peer', 'name', vb, 'netns', nsB]);
  const v6 = outer === 6;
  const outerA = v6 ? 'fd00:99::1' : '10.99.0.1';
  const outerB = v6 ? 'fd00:99::2' : '10.99.0.2';
  for (const [ns, dev, addr] of [[nsA, va, outerA], [nsB, vb, outerB]] as const) {
    sh('ip', ['-n', ns, 'addr', 'add', `${addr}/${v6 ? 64 : 24}`, 'dev', dev, ...(v6 ? ['nodad'] : [])]);
    sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
  }
  return { nsA, nsB, outerA, outerB };
}

/**
 * Starts host number `n` (1 or 2) of a pair in `ns` with fresh keys; its port and tunnel
 * addresses follow from `n` (51820 + n, 10.200.0.n, fd00:200::n). Not yet configured.
 */
export async function startHost(cleanup: Cleanup, impl: Impl, ns: string, outer: string, n: number, oursArgs: string[] = [], oursEnv?: NodeJS.ProcessEnv, oursBin?: string): Promise<Host> {
  const ifname = uniqueName(impl === 'ours' ? 'wgts' : 'wggo');
  const d = await startDaemon(cleanup, impl, ns, ifname, impl === 'ours' ? oursArgs : [], impl === 'ours' ? oursEnv : undefined, oursBin);
  const keys = wgKeyPair();
  const exec = (cmd: string, args: string[]): string => netnsExec(ns, cmd, args);
  return {
    impl, ns, ifname, ...keys, port: 51820 + n, outer, tunnel4: `10.200.0.${n}`, tunnel6: `fd00:200::${n}`,
    proc: d.proc, exited: d.exited, exec, wg: (...args) => sh('wg', args),
  };
}

/** What a host needs to know of the other end of its tunnel. */
export type Remote = Pick<Host, 'publicKey' | 'outer' | 'port' | 'tunnel4' | 'tunnel6'>;

/** Configures `me` with `wg set` to reach `peer` (`psk`: a key file), gives it its tunnel addresses, sets it up. */
export function connect(me: Host, peer: Remote, psk?: string): void {
  const endpoint = peer.outer.includes(':') ? `[${peer.outer}]:${peer.port}` : `${peer.outer}:${peer.port}`;
  me.wg('set', me.ifname, 'private-key', keyFile(me.privateKey), 'listen-port', String(me.port),
    'peer', peer.publicKey, 'allowed-ips', `${peer.tunnel4}/32,${peer.tunnel6}/128`, 'endpoint', endpoint,
    ...(psk ? ['preshared-key', psk] : []));
  sh('ip', ['-n', me.ns, 'addr', 'add', `${me.tunnel4}/24`, 'dev', me.ifname]);
  sh('ip', ['-n', me.ns, 'addr', 'add', `${me.tunnel6}/64`, 'dev', me.ifname, 'nodad']);
  sh('ip', ['-n', me.ns, 'link', 'set', me.ifname, 'up']);
}

/** Two hosts with a tunnel between them, configured and up; traffic not yet exchanged. */
export async function createPair(cleanup: Cleanup, o: PairOptions): Promise<{ a: Host; b: Host }> {
  const link = createLink(cleanup, o.outer);
  const a = await startHost(cleanup, o.a, link.nsA, link.outerA, 1, o.oursArgs, o.oursEnv, o.oursBin);
  const b = await startHost(cleanup, o.b, link.nsB, link.outerB, 2, o.oursArgs, o.oursEnv, o.oursBin);
  const psk = o.psk ? keyFile(sh('wg', ['genpsk']).trim()) : undefined;
  connect(a, b, psk);
  connect(b, a, psk);
  return { a, b };
}

/** Pings `to` from `from`'s namespace; returns whether replies came back. */
export function ping(from: Pick<Host, 'ns'>, to: string, args: string[] = []): boolean {
  const v6 = to.includes(':');
  return tryRun('ip', ['netns', 'exec', from.ns, 'ping', ...(v6 ? ['-6'] : []), '-c', '3', '-i', '0.2', '-W', '2', ...args, to]).status === 0;
}

/** `wg show IF dump` of one peer: the fields of its line. */
export function peerDump(host: Host, publicKey: string): { endpoint: string; allowedIps: string; latestHandshake: number; rx: number; tx: number } {
  const line = host.wg('show', host.ifname, 'dump').split('\n').find((l) => l.startsWith(publicKey + '\t'));
  if (!line) throw new Error(`${host.impl} does not list peer ${publicKey}`);
  const f = line.split('\t');
  return { endpoint: f[2]!, allowedIps: f[3]!, latestHandshake: Number(f[4]), rx: Number(f[5]), tx: Number(f[6]) };
}

/** iperf3 TCP from `client` to `server` for `seconds` with `streams` flows; the receiver's bits/s. */
export async function iperf(cleanup: Cleanup, client: Host, server: Host, seconds: number, streams = 1): Promise<number> {
  return (await iperfReport(cleanup, client, server, { seconds, streams })).receivedBps;
}

export interface IperfOptions {
  /** Seconds of sending (-t); 10 by default, ignored when `packets` or `bytes` is given. */
  seconds?: number;
  /** Parallel flows (-P). */
  streams?: number;
  /** UDP at this offered rate (-u -b, e.g. '200M'); TCP when absent. */
  udpRate?: string;
  /** Bytes per write, i.e. the UDP payload size (-l). */
  length?: number;
  /** Stop after this many writes or datagrams (-k) instead of after `seconds`. */
  packets?: number;
  /** Stop after sending this many bytes (-n, e.g. '20M') instead of after `seconds`. */
  bytes?: string;
  /** The server's address, bound and connected to (server.tunnel4 by default; an IPv6 one works too). */
  address?: string;
  /** Kill the client after this long (the run's seconds plus 30 s by default): a stalled run fails in bounded time. */
  timeoutMs?: number;
}

export interface IperfResult {
  /** Bits/s the receiver got. */
  receivedBps: number;
  /** Bytes the receiver got. */
  receivedBytes: number;
  /** UDP only, as the receiver counted: datagrams sent, lost, and late (a lower sequence number than one already seen). */
  udp?: { packets: number; lost: number; lostPercent: number; outOfOrder: number };
}

interface IperfJson {
  error?: string;
  end: {
    sum_received: { bits_per_second: number; bytes: number; packets?: number; lost_packets?: number; lost_percent?: number };
    streams: { udp?: { out_of_order: number } }[];
  };
}

/**
 * iperf3 from `client` to `server` through the tunnel, TCP or UDP at a fixed rate, with the
 * receiver's side of the report. Runs asynchronously, so the caller may measure something else
 * (ping, memory) while it goes; a run that does not finish in its time plus 30 s is killed.
 */
export async function iperfReport(cleanup: Cleanup, client: Pick<Host, 'ns'>, server: Pick<Host, 'ns' | 'tunnel4'>, o: IperfOptions): Promise<IperfResult> {
  const address = o.address ?? server.tunnel4;
  const srv = spawn('ip', ['netns', 'exec', server.ns, 'iperf3', '-s', '-1', '-B', address], { stdio: 'ignore' });
  const srvExited = new Promise<void>((resolve) => srv.once('exit', () => resolve()));
  const stopServer = async (): Promise<void> => {
    srv.kill('SIGKILL');
    await srvExited;
  };
  cleanup.add(stopServer);
  try {
    await waitFor('iperf3 server', () => tryRun('ip', ['netns', 'exec', server.ns, 'ss', '-ltn', `sport = :5201`]).out.includes('5201'), 5000);
    const seconds = o.seconds ?? 10;
    const args = ['-c', address, '-J', '-P', String(o.streams ?? 1)];
    args.push(...(o.packets !== undefined ? ['-k', String(o.packets)] : o.bytes !== undefined ? ['-n', o.bytes] : ['-t', String(seconds)]));
    if (o.udpRate !== undefined) args.push('-u', '-b', o.udpRate);
    if (o.length !== undefined) args.push('-l', String(o.length));
    const out = await output('ip', ['netns', 'exec', client.ns, 'iperf3', ...args], o.timeoutMs ?? seconds * 1000 + 30_000);
    const report = JSON.parse(out) as IperfJson;
    if (report.error !== undefined) throw new Error(`iperf3 ${args.join(' ')}: ${report.error}`);
    const r = report.end.sum_received;
    if (o.udpRate === undefined) return { receivedBps: r.bits_per_second, receivedBytes: r.bytes };
    const outOfOrder = report.end.streams.reduce((n, s) => n + (s.udp?.out_of_order ?? 0), 0);
    return { receivedBps: r.bits_per_second, receivedBytes: r.bytes, udp: { packets: r.packets ?? 0, lost: r.lost_packets ?? 0, lostPercent: r.lost_percent ?? 0, outOfOrder } };
  } finally {
    // A server whose client failed or stalled would still hold port 5201 for the next run.
    await stopServer();
  }
}

/** Runs a command without blocking the event loop and resolves with its stdout (iperf3 -J reports errors there too). */
function output(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      if (timedOut) reject(new Error(`${cmd} ${args.join(' ')} did not finish within ${timeoutMs} ms (killed): ${err.trim()}`.trim()));
      else if (out.trim().startsWith('{')) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${status ?? signal}): ${err.trim()}`));
    });
  });
}

/**
 * `count` pings from `from` to `to`, `intervalS` seconds apart (below 0.2 s needs root): the
 * round-trip times in ms of the replies that came back, in order.
 */
export function pingTimes(from: Pick<Host, 'ns'>, to: string, count: number, intervalS: number): number[] {
  const deadline = String(Math.ceil(count * intervalS) + 5);
  const r = tryRun('ip', ['netns', 'exec', from.ns, 'ping', ...(to.includes(':') ? ['-6'] : []), '-c', String(count), '-i', String(intervalS), '-W', '1', '-w', deadline, to]);
  return [...r.out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
}

/**
 * The stage of the load generator (src/loadgen): a WireGuard server of `impl` (tunnel address
 * 10.78.0.1/16, no peers yet) in one namespace; in the other, `sources` client source addresses
 * 10.99.1.1... on lo, routed over the veth.
 */
export interface LoadgenStage { server: Host; clientNs: string; sources: string; serverEndpoint: string; serverTunnel: string }

export async function createLoadgenStage(cleanup: Cleanup, impl: Impl, sources: number, oursArgs: string[] = []): Promise<LoadgenStage> {
  if (sources < 1 || sources > 254) throw new RangeError('1 to 254 source addresses');
  const link = createLink(cleanup);
  const server = await startHost(cleanup, impl, link.nsB, link.outerB, 2, oursArgs);
  server.wg('set', server.ifname, 'private-key', keyFile(server.privateKey), 'listen-port', String(server.port));
  sh('ip', ['-n', link.nsB, 'addr', 'add', '10.78.0.1/16', 'dev', server.ifname]);
  sh('ip', ['-n', link.nsB, 'link', 'set', server.ifname, 'up']);
  sh('ip', ['-n', link.nsA, '-batch', '-'], { input: Array.from({ length: sources }, (_, i) => `addr add 10.99.1.${i + 1}/32 dev lo\n`).join('') });
  sh('ip', ['-n', link.nsB, 'route', 'add', '10.99.1.0/24', 'via', link.outerA]);
  return { server, clientNs: link.nsA, sources: `10.99.1.1-${sources}`, serverEndpoint: `${link.outerB}:${server.port}`, serverTunnel: '10.78.0.1' };
}

/**
 * Generates `clients` load-generator clients into a 0600 keys file and adds them to the stage's
 * server; `tunnel` (loadgen keys --tunnel) numbers their addresses, inside 10.78.0.0/16.
 */
export function addLoadgenClients(cleanup: Cleanup, stage: LoadgenStage, clients: number, tunnel = '10.78.0.1/16'): string {
  const dir = mkdtempSync(join(tmpdir(), 'wgts-loadgen-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const keys = join(dir, 'clients.keys');
  writeFileSync(join(dir, 'peers.conf'), sh(process.execPath, [BIN, 'loadgen', 'keys', '--clients', String(clients), '--out', keys, '--tunnel', tunnel]));
  sh('wg', ['addconf', stage.server.ifname, join(dir, 'peers.conf')]);
  return keys;
}

/**
 * Runs `wireguard-ts loadgen run` in the stage's client namespace against its server with the
 * clients of `keys` from its source addresses, without blocking; resolves with the JSON report.
 */
export async function runLoadgen(stage: LoadgenStage, keys: string, args: string[], timeoutMs = 60_000): Promise<LoadgenReport> {
  const out = await output('ip', ['netns', 'exec', stage.clientNs, process.execPath, BIN, 'loadgen', 'run', '--keys', keys,
    '--server', stage.serverEndpoint, '--server-key', stage.server.publicKey, '--json', ...args], timeoutMs);
  return JSON.parse(out) as LoadgenReport;
}
