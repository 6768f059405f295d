// Shared plumbing of the interop tests: installs the real tools when missing, creates network
// namespaces and veth pairs with unique names, runs wireguard-go under our control, waits for
// conditions instead of sleeping, and tears everything down even when a test fails.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const isRoot = process.getuid?.() === 0;

/** Room for `wg show dump` of many thousands of peers (spawnSync's default cap is 1 MiB). */
const MAX_OUTPUT = 256 << 20;

/** Runs a command and returns its stdout; a failure throws with the command's stderr in it. */
export function sh(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, env: opts.env, maxBuffer: MAX_OUTPUT });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.error?.message || ''}`.trim());
  return r.stdout;
}

/** Runs a command, returning its status and output instead of throwing. */
export function tryRun(cmd: string, args: string[]): { status: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: MAX_OUTPUT });
  return { status: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

const has = (bin: string): boolean => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;

/** Installs Debian's wireguard-go, wireguard-tools, iperf3, ping and iptables if missing (needs root). */
export function ensureTools(): void {
  const need: string[] = [];
  if (!has('wireguard-go')) need.push('wireguard-go');
  if (!has('wg')) need.push('wireguard-tools');
  if (!has('iperf3')) need.push('iperf3');
  if (!has('ping')) need.push('iputils-ping');
  if (!has('iptables')) need.push('iptables');
  if (need.length === 0) return;
  sh('apt-get', ['update', '-qq']);
  sh('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...need], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

/** Polls `cond` every 20 ms until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(what: string, cond: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let counter = 0;
/** A name unique to this process, short enough for an interface (15 chars). */
export function uniqueName(prefix: string): string {
  return `${prefix}${process.pid % 10000}${(counter++).toString(36)}`.slice(0, 15);
}

/** Cleanup actions run in reverse order; each one is attempted even when another fails. */
export class Cleanup {
  private readonly actions: (() => void | Promise<void>)[] = [];

  add(action: () => void | Promise<void>): void {
    this.actions.push(action);
  }

  async run(): Promise<void> {
    while (this.actions.length > 0) {
      const action = this.actions.pop()!;
      try {
        await action();
      } catch {
        // Best effort: the rest must still run.
      }
    }
  }
}

export function createNetns(cleanup: Cleanup, prefix = 'wgts'): string {
  const name = uniqueName(prefix);
  sh('ip', ['netns', 'add', name]);
  cleanup.add(() => void tryRun('ip', ['netns', 'del', name]));
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

export function netnsExec(ns: string, cmd: string, args: string[]): string {
  return sh('ip', ['netns', 'exec', ns, cmd, ...args]);
}

export interface WireguardGo {
  ifname: string;
  proc: ChildProcess;
  /** `wg set IF ...` */
  set(...args: string[]): void;
  show(field: string): string;
  listenPort(): number;
  publicKey(): string;
}

export const SOCKET_DIR = '/var/run/wireguard';

/**
 * Spawns a daemon that serves `ifname` in the foreground, registers its shutdown (SIGTERM, then
 * SIGKILL) and waits for its UAPI socket. The one way every test and bench starts a daemon.
 */
export async function spawnDaemon(
  cleanup: Cleanup, label: string, command: string[], ifname: string,
  opts: { stdio?: 'ignore' | 'inherit'; logLevel?: string; startTimeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<{ proc: ChildProcess; exited: () => boolean }> {
  const proc = spawn(command[0]!, command.slice(1), {
    env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1', LOG_LEVEL: opts.logLevel ?? 'error', ...opts.env },
    stdio: ['ignore', opts.stdio ?? 'ignore', opts.stdio ?? 'ignore'],
  });
  let exited = false;
  proc.on('exit', () => (exited = true));
  cleanup.add(async () => {
    if (exited) return;
    proc.kill('SIGTERM');
    await waitFor(`${label} ${ifname} to exit`, () => exited, 5000).catch(() => proc.kill('SIGKILL'));
  });
  await waitFor(`${label} socket for ${ifname}`, () => exited || existsSync(`${SOCKET_DIR}/${ifname}.sock`), opts.startTimeoutMs ?? 10_000);
  if (exited) throw new Error(`${label} ${ifname} exited during start-up`);
  return { proc, exited: () => exited };
}

/**
 * Starts wireguard-go in the foreground in the current namespace (its UDP socket lives here),
 * waits for its UAPI socket, and registers its shutdown.
 */
export async function startWireguardGo(cleanup: Cleanup, ifname = uniqueName('wggo')): Promise<WireguardGo> {
  const { proc } = await spawnDaemon(cleanup, 'wireguard-go', ['wireguard-go', '-f', ifname], ifname, { startTimeoutMs: 5000 });
  const wg = (...args: string[]): string => sh('wg', args);
  return {
    ifname,
    proc,
    set: (...args) => void wg('set', ifname, ...args),
    show: (field) => wg('show', ifname, field),
    listenPort: () => Number(wg('show', ifname, 'listen-port').trim()),
    publicKey: () => wg('show', ifname, 'public-key').trim(),
  };
}

/** A fresh key pair from `wg genkey` / `wg pubkey`, in base64. */
export function wgKeyPair(): { privateKey: string; publicKey: string } {
  const privateKey = sh('wg', ['genkey']).trim();
  const publicKey = sh('wg', ['pubkey'], { input: privateKey + '\n' }).trim();
  return { privateKey, publicKey };
}

let keyDir: string | undefined;
/**
 * Writes a key to a 0600 file for `wg set ... private-key FILE` (wg cannot read /dev/stdin when
 * node hands it a socket instead of a pipe). The directory goes when the process exits.
 */
export function keyFile(key: string): string {
  if (keyDir === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'wgts-keys-'));
    keyDir = dir;
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  const path = join(keyDir, `${uniqueName('k')}.key`);
  writeFileSync(path, key + '\n', { mode: 0o600 });
  return path;
}

export interface PeerConfig {
  publicKey: string;
  presharedKey?: string;
  allowedIps?: string[];
  endpoint?: string;
  persistentKeepalive?: number;
}

export interface InterfaceConfig {
  privateKey: string;
  listenPort: number;
  fwmark?: number;
  peers: PeerConfig[];
}

/** A `wg setconf` file, laid out exactly as `wg showconf` prints one (so the two compare as text). */
export function wgConfig(c: InterfaceConfig): string {
  const head = ['[Interface]', `ListenPort = ${c.listenPort}`];
  if (c.fwmark) head.push(`FwMark = 0x${c.fwmark.toString(16)}`);
  head.push(`PrivateKey = ${c.privateKey}`, '');
  return [head.join('\n'), ...c.peers.map(peerSection)].join('\n');
}

/** One `[Peer]` section as `wg showconf` prints it. */
export function peerSection(p: PeerConfig): string {
  const lines = ['[Peer]', `PublicKey = ${p.publicKey}`];
  if (p.presharedKey) lines.push(`PresharedKey = ${p.presharedKey}`);
  if (p.allowedIps?.length) lines.push(`AllowedIPs = ${p.allowedIps.join(', ')}`);
  if (p.endpoint) lines.push(`Endpoint = ${p.endpoint}`);
  if (p.persistentKeepalive) lines.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
  return lines.join('\n') + '\n';
}

/** A public key no one holds (any 32 bytes are a valid X25519 public key to `wg`). */
export function randomPublicKey(): string {
  return randomBytes(32).toString('base64');
}

/** `n` peers with random keys, peer i owning 10.x.y.z/32 and fd00::1:hi:lo/128 (i in the low bits of both). */
export function numberedPeers(n: number): PeerConfig[] {
  return Array.from({ length: n }, (_, i) => ({
    publicKey: randomPublicKey(),
    allowedIps: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`, `fd00::1:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}/128`],
  }));
}

/** A kB field of /proc/PID/status (VmRSS, VmHWM...), in KiB. */
export function statusKb(pid: number, field: string): number {
  const m = new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} for process ${pid}`);
  return Number(m[1]);
}

/** The resident set of a process, in KiB. */
export function rssKb(pid: number): number {
  return statusKb(pid, 'VmRSS');
}
