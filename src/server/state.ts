// The state directory of the server mode (default /var/lib/wireguard-ts):
//
//   <dir>/                  0700
//   <dir>/IFNAME.conf       0600  the server's wg-quick file (config.ts)
//   <dir>/IFNAME.clients/   0700
//     NAME.key              0600  a client's private key, for show-client
//   <dir>/IFNAME.lock              held while a command changes IFNAME's state
//
// Every file that holds a key is created with its final mode (open with O_EXCL and mode 0600),
// never chmod-ed afterwards, so no other user can open it in between. A rewrite goes to a
// temporary file renamed over the old one: a crash leaves the old file or the new one.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, formatServerConfig, parseServerConfig, type ServerConfig } from './config.js';

export const DEFAULT_STATE_DIR = '/var/lib/wireguard-ts';

/** A failure the user can act on: printed as a message, never with a stack trace. */
export class ServerError extends Error {}

export interface StatePaths {
  dir: string;
  config: string;
  clients: string;
  lock: string;
}

export function statePaths(dir: string, ifname: string): StatePaths {
  return { dir, config: join(dir, `${ifname}.conf`), clients: join(dir, `${ifname}.clients`), lock: join(dir, `${ifname}.lock`) };
}

const reason = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

function ensureDir(path: string): void {
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ServerError(`cannot create the state directory ${path}: ${reason(err)}${process.getuid?.() !== 0 ? ' (run as root, or pass --state-dir)' : ''}`);
  }
  if (!statSync(path).isDirectory()) throw new ServerError(`${path} is not a directory`);
}

export function ensureStateDir(p: StatePaths): void {
  ensureDir(p.dir);
}

/** Writes `text` to a new 0600 file at `path` (which must not exist). */
function writeNew(path: string, text: string): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Replaces `path` with `text` atomically; the file is 0600 from its first byte. */
function replaceFile(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  rmSync(tmp, { force: true });
  writeNew(tmp, text);
  renameSync(tmp, path);
}

/** The server's configuration, or undefined when there is none yet. */
export function loadConfig(p: StatePaths): ServerConfig | undefined {
  let text: string;
  try {
    text = readFileSync(p.config, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ServerError(`cannot read ${p.config}: ${reason(err)}`);
  }
  try {
    return parseServerConfig(text, p.config);
  } catch (err) {
    if (err instanceof ConfigError) throw new ServerError(err.message);
    throw err;
  }
}

export function saveConfig(p: StatePaths, config: ServerConfig): void {
  try {
    replaceFile(p.config, formatServerConfig(config));
  } catch (err) {
    throw new ServerError(`cannot write ${p.config}: ${reason(err)}`);
  }
}

const keyPath = (p: StatePaths, name: string): string => join(p.clients, `${name}.key`);

export function saveClientKey(p: StatePaths, name: string, privateKey: string): void {
  try {
    ensureDir(p.clients);
    replaceFile(keyPath(p, name), privateKey + '\n');
  } catch (err) {
    throw err instanceof ServerError ? err : new ServerError(`cannot write ${keyPath(p, name)}: ${reason(err)}`);
  }
}

export function loadClientKey(p: StatePaths, name: string): string {
  try {
    return readFileSync(keyPath(p, name), 'utf8').trim();
  } catch (err) {
    throw new ServerError(`cannot read the private key of client ${name} (${keyPath(p, name)}): ${reason(err)}`);
  }
}

export function removeClientKey(p: StatePaths, name: string): void {
  rmSync(keyPath(p, name), { force: true });
}

/**
 * Runs `fn` holding IFNAME's lock file, so two commands never interleave their read-modify-write
 * of the configuration. A lock left by a process that no longer exists is taken over. Without a
 * state directory there is no state to protect (and `down` or a typo must not create one).
 */
export async function withLock<T>(p: StatePaths, fn: () => Promise<T>): Promise<T> {
  if (!existsSync(p.dir)) return fn();
  for (let attempt = 0; ; attempt++) {
    try {
      writeNew(p.lock, `${process.pid}\n`);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 2) throw new ServerError(`cannot create the lock ${p.lock}: ${reason(err)}`);
    }
    let pid: number;
    try {
      pid = Number(readFileSync(p.lock, 'utf8').trim());
    } catch {
      continue; // released in between
    }
    // An empty file is a holder between its open and its write: busy, not stale.
    if (!(Number.isInteger(pid) && pid > 0) || isAlive(pid)) {
      throw new ServerError(`another wireguard-ts command${pid > 0 ? ` (pid ${pid})` : ''} is changing this server; try again when it is done`);
    }
    rmSync(p.lock, { force: true });
  }
  try {
    return await fn();
  } finally {
    rmSync(p.lock, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
