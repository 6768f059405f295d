// Shared plumbing of the interop tests: installs the real tools when missing, creates network
// namespaces and veth pairs with unique names, runs wireguard-go under our control, waits for
// conditions instead of sleeping, and tears everything down even when a test fails.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const isRoot = process.getuid?.() === 0;

/** Runs a command and returns its stdout; a failure throws with the command's stderr in it. */
export function sh(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, env: opts.env });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.error?.message || ''}`.trim());
  return r.stdout;
}

/** Runs a command, returning its status and output instead of throwing. */
export function tryRun(cmd: string, args: string[]): { status: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

const has = (bin: string): boolean => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;

/** Installs Debian's wireguard-go, wireguard-tools, iperf3 and ping if missing (needs root). */
export function ensureTools(): void {
  const need: string[] = [];
  if (!has('wireguard-go')) need.push('wireguard-go');
  if (!has('wg')) need.push('wireguard-tools');
  if (!has('iperf3')) need.push('iperf3');
  if (!has('ping')) need.push('iputils-ping');
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
 * Starts wireguard-go in the foreground in the current namespace (its UDP socket lives here),
 * waits for its UAPI socket, and registers its shutdown.
 */
export async function startWireguardGo(cleanup: Cleanup, ifname = uniqueName('wggo')): Promise<WireguardGo> {
  const proc = spawn('wireguard-go', ['-f', ifname], {
    env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1', LOG_LEVEL: 'error' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let exited = false;
  proc.on('exit', () => (exited = true));
  cleanup.add(async () => {
    if (exited) return;
    proc.kill('SIGTERM');
    await waitFor('wireguard-go to exit', () => exited, 3000).catch(() => proc.kill('SIGKILL'));
  });
  await waitFor(`wireguard-go socket for ${ifname}`, () => exited || existsSync(`${SOCKET_DIR}/${ifname}.sock`), 5000);
  if (exited) throw new Error(`wireguard-go ${ifname} exited at start`);
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
