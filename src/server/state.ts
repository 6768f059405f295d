// The state directory of the server mode (default /var/lib/wireguard-ts):
//
//   <dir>/                  0700
//   <dir>/IFNAME.db         0600  the store (src/store/sqlite.ts): the source of truth
//   <dir>/IFNAME.conf       0600  the server as a wg-quick file, rewritten after every change (an export)
//   <dir>/IFNAME.lock       0600  flock'd while a command changes IFNAME's state (lock.ts)
//   <dir>/IFNAME.clients/         clients' private keys of versions before the store; read once
//                                 by the import (import.ts) and left in place
//
// Keys are readable only by the service: a directory, store or export that the group or others
// may read gets a warning, as wg-quick warns about a world-accessible configuration.
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, parseServerConfig, type ServerConfig } from './config.js';

export const DEFAULT_STATE_DIR = '/var/lib/wireguard-ts';

/** A failure the user can act on: printed as a message, never with a stack trace. */
export class ServerError extends Error {}

export interface StatePaths {
  dir: string;
  db: string;
  config: string;
  clients: string;
  lock: string;
}

export function statePaths(dir: string, ifname: string): StatePaths {
  return {
    dir, db: join(dir, `${ifname}.db`), config: join(dir, `${ifname}.conf`),
    clients: join(dir, `${ifname}.clients`), lock: join(dir, `${ifname}.lock`),
  };
}

export const reason = (err: unknown): string => {
  const e = err as NodeJS.ErrnoException;
  // SQLite says SHMSIZE when a full disk leaves no room for its shared-memory index.
  if (e.code === 'ENOSPC' || e.code === 'SQLITE_FULL' || e.code === 'SQLITE_IOERR_SHMSIZE') return 'no space left on the device';
  // PostgreSQL's errors carry a severity; their code (SQLSTATE, "3D000") says less than their message.
  if ('severity' in e) return e.message;
  return e.code ?? e.message;
};

export function ensureStateDir(p: StatePaths): void {
  try {
    mkdirSync(p.dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ServerError(`cannot create the state directory ${p.dir}: ${reason(err)}${process.getuid?.() !== 0 ? ' (run as root, or pass --state-dir)' : ''}`);
  }
  if (!statSync(p.dir).isDirectory()) throw new ServerError(`${p.dir} is not a directory`);
}

/** Warnings for state that the group or others can read (none when everything is private). */
export function exposureWarnings(p: StatePaths): string[] {
  const out: string[] = [];
  for (const path of [p.dir, p.db, p.config]) {
    let mode: number;
    try {
      mode = statSync(path).mode;
    } catch {
      continue;
    }
    if ((mode & 0o077) !== 0) {
      out.push(`warning: ${path} is ${(mode & 0o007) !== 0 ? 'world' : 'group'} accessible (mode ${(mode & 0o777).toString(8)}) ` +
        `and holds private keys; chmod ${statSync(path).isDirectory() ? 700 : 600} ${path}`);
    }
  }
  return out;
}

/** The wg-quick file of a version before the store, or undefined when there is none. */
export function loadLegacyConfig(p: StatePaths): ServerConfig | undefined {
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

/** A client's private key from the clients folder of a version before the store. */
export function loadLegacyClientKey(p: StatePaths, name: string): string | undefined {
  try {
    return readFileSync(join(p.clients, `${name}.key`), 'utf8').trim();
  } catch {
    return undefined;
  }
}
