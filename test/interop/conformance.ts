// Shared by the conformance suites (conformance*.test.ts), which cover every scenario of the
// netns test that wireguard-go and the kernel module ship, written here from its description:
// the two WireGuard hosts it calls wg1 and wg2 (keys, a preshared key, listen ports 10000 and
// 20000, tunnel addresses 192.168.241.n/24 and fd00::n/24), the pairings each scenario runs
// in, and the one-shot checks the scenarios are made of (a single ping, a flood ping, a UDP
// datagram that must or must not arrive).
import { spawn } from 'node:child_process';
import { Cleanup, keyFile, netnsExec, sh, tryRun, waitFor, wgKeyPair, uniqueName } from './harness.js';
import { startDaemon, type Host, type Impl } from './topology.js';

/**
 * wg1 and wg2 of every scenario, in both orders against wireguard-go. WGTS_CONFORMANCE_REFERENCE=1
 * adds wireguard-go against itself: what Debian's build passes is what we may ask of it.
 */
const PAIRINGS: [Impl, Impl][] = [['ours', 'ours'], ['ours', 'wggo'], ['wggo', 'ours']];
export const reference = process.env.WGTS_CONFORMANCE_REFERENCE === '1';
const REFERENCE: [Impl, Impl][] = reference ? [['wggo', 'wggo']] : [];

/**
 * The pairings of a scenario. `goFails`: Debian's wireguard-go (0.0.20220316) fails this scenario
 * against itself, so only ours<->ours is asked to pass it (the reference run still shows it).
 */
export function pairings(o: { goFails?: boolean } = {}): [Impl, Impl][] {
  return [...(o.goFails ? PAIRINGS.filter(([a, b]) => a === 'ours' && b === 'ours') : PAIRINGS), ...REFERENCE];
}

export const skip = process.getuid?.() === 0 ? false : 'needs root for network namespaces';

/** The script's tunnel network: wg1 is .1 / ::1, wg2 is .2 / ::2, both /24. */
export const tunnel4 = (n: 1 | 2): string => `192.168.241.${n}`;
export const tunnel6 = (n: 1 | 2): string => `fd00::${n}`;

/**
 * Starts wgN of the script (daemon and UDP socket in `daemonNs`) with fresh keys. Its `ns` is
 * where its interface lives: `daemonNs` until the caller moves the interface elsewhere.
 */
export async function startScriptHost(cleanup: Cleanup, impl: Impl, daemonNs: string, n: 1 | 2): Promise<Host> {
  const ifname = uniqueName(impl === 'ours' ? 'wgts' : 'wggo');
  const d = await startDaemon(cleanup, impl, daemonNs, ifname);
  const keys = wgKeyPair();
  return {
    impl, ns: daemonNs, ifname, ...keys, port: n * 10000, outer: '', tunnel4: tunnel4(n), tunnel6: tunnel6(n),
    proc: d.proc, exited: d.exited, exec: (cmd, args) => netnsExec(daemonNs, cmd, args), wg: (...args) => sh('wg', args),
  };
}

/**
 * The script's configuration of both hosts: addresses on each interface (in the namespace it
 * lives in), keys, the shared preshared key, listen ports, each other's tunnel addresses as
 * allowed IPs, no endpoints yet; then both interfaces up.
 */
export function configurePeers(w1: Host, w2: Host): void {
  const psk = keyFile(sh('wg', ['genpsk']).trim());
  for (const [me, peer] of [[w1, w2], [w2, w1]] as const) {
    sh('ip', ['-n', me.ns, 'addr', 'add', `${me.tunnel4}/24`, 'dev', me.ifname]);
    sh('ip', ['-n', me.ns, 'addr', 'add', `${me.tunnel6}/24`, 'dev', me.ifname, 'nodad']);
    sh('wg', ['set', me.ifname, 'private-key', keyFile(me.privateKey), 'listen-port', String(me.port),
      'peer', peer.publicKey, 'preshared-key', psk, 'allowed-ips', `${peer.tunnel4}/32,${peer.tunnel6}/128`]);
  }
  for (const me of [w1, w2]) sh('ip', ['-n', me.ns, 'link', 'set', me.ifname, 'up']);
}

/** `wg set IF peer KEY ARGS...` for the peer that is `peer`. */
export function setPeer(me: Host, peer: Pick<Host, 'publicKey'>, ...args: string[]): void {
  sh('wg', ['set', me.ifname, 'peer', peer.publicKey, ...args]);
}

/** `wg show IF endpoints` as the script compares it: one line, key TAB endpoint. */
export function endpoints(me: Host): string {
  return sh('wg', ['show', me.ifname, 'endpoints']).trim();
}

/**
 * One `ping -W 1 -c 1` from `ns`, the script's check that a path works on its first packet.
 * Throws with ping's output when the reply does not come back.
 */
export function pingOnce(ns: string, to: string): void {
  const r = tryRun('ip', ['netns', 'exec', ns, 'ping', ...(to.includes(':') ? ['-6'] : []), '-W', '1', '-c', '1', to]);
  if (r.status !== 0) throw new Error(`ping -W 1 -c 1 ${to} from ${ns}: no reply\n${r.out.trim()}`);
}

/**
 * `ping -c 10 -f -W 1` from `ns`: ten echo requests, each sent when the previous reply arrives or
 * 10 ms pass. Throws unless ping succeeds, the script's check: at least one reply. No stricter:
 * after the last request flood ping waits only twice the longest round trip, so on a busy machine
 * a reply a few ms late counts as lost (wireguard-go against itself shows 9 of 10 now and then).
 */
export function floodPing(ns: string, to: string): void {
  const r = tryRun('ip', ['netns', 'exec', ns, 'ping', ...(to.includes(':') ? ['-6'] : []), '-c', '10', '-f', '-W', '1', to]);
  if (r.status !== 0) {
    const m = /(\d+) packets transmitted, (\d+) received/.exec(r.out);
    throw new Error(`ping -c 10 -f -W 1 ${to} from ${ns}: ${m ? `${m[2]} of ${m[1]} replies` : 'failed'}\n${r.out.trim()}`);
  }
}

/** Receive and transmit byte counters of an interface, as `ip -stats link show` prints them. */
export function linkBytes(ns: string, ifname: string): { rx: number; tx: number } {
  const [link] = JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', ifname])) as { stats64: { rx: { bytes: number }; tx: { bytes: number } } }[];
  return { rx: link!.stats64.rx.bytes, tx: link!.stats64.tx.bytes };
}

/** A UDP listener in a namespace that collects what arrives (the script uses ncat for this). */
export interface UdpListener {
  /** Resolves with what arrived within `ms` (empty string when nothing did). */
  receivedWithin(ms: number): Promise<string>;
  close(): Promise<void>;
}

/** Listens on UDP `port` (IPv4, any address) inside `ns`; resolves once the socket is bound. */
export async function udpListen(cleanup: Cleanup, ns: string, port: number): Promise<UdpListener> {
  const script = `const s = require('node:dgram').createSocket('udp4');
    s.on('message', (m) => process.stdout.write(m));
    s.bind(${port});`;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let got = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (got += d));
  const close = async (): Promise<void> => {
    child.kill('SIGKILL');
    await exited;
  };
  cleanup.add(close);
  await waitFor(`UDP listener on port ${port} in ${ns}`, () => tryRun('ip', ['netns', 'exec', ns, 'ss', '-uln', `sport = :${port}`]).out.includes(`:${port}`), 5000);
  return {
    receivedWithin: async (ms) => {
      await waitFor('a datagram', () => got.length > 0, ms).catch(() => undefined);
      return got;
    },
    close,
  };
}

/** Sends one UDP datagram holding `text` from inside `ns` (bash's /dev/udp). */
export function udpSend(ns: string, to: string, port: number, text: string): void {
  sh('ip', ['netns', 'exec', ns, 'bash', '-c', `printf %s "$1" > /dev/udp/${to}/${port}`, 'bash', text]);
}

/** Writes a sysctl inside `ns` (`key` as a path under /proc/sys, e.g. net/ipv4/ip_forward). */
export function sysctl(ns: string, key: string, value: string | number): void {
  sh('ip', ['netns', 'exec', ns, 'sh', '-c', 'printf %s "$1" > "/proc/sys/$2"', 'sh', String(value), key]);
}

/** A veth pair with one end in each namespace, both down; returns the two ends' names. */
export function vethPair(nsA: string, nsB: string): [string, string] {
  const a = uniqueName('va');
  const b = uniqueName('vb');
  sh('ip', ['link', 'add', a, 'netns', nsA, 'type', 'veth', 'peer', 'name', b, 'netns', nsB]);
  return [a, b];
}

/** Waits until a link reports operstate UP (a veth does once both ends are up). */
export async function waitLinkUp(ns: string, dev: string): Promise<void> {
  await waitFor(`${dev} up in ${ns}`, () => (JSON.parse(sh('ip', ['-n', ns, '-j', 'link', 'show', dev])) as { operstate: string }[])[0]?.operstate === 'UP', 5000);
}
