// The state lock: one writer at a time per interface's state (a CLI command, or the daemon
// writing the export), held with flock(2) on <dir>/IFNAME.lock through koffi.
//
// flock instead of "create a pid file": the kernel releases the lock when its holder dies
// (kill -9 included), so there is no stale lock to detect, no pid that may have been reused,
// and no window in which two processes both find a lock stale and both take it. The file is
// never deleted (deleting a flock'd file lets a second process lock a new inode). Waiting is a
// LOCK_NB retry loop on a timer, so a waiting daemon keeps serving.
//
// What the lock does not guard: rows of the store. SQLite's own write lock (sqlite.ts) orders
// store transactions, between processes too.
import { closeSync, openSync } from 'node:fs';
import { EAGAIN, EINTR, errno as lastErrno, libc } from '../net/libc.js';
import { ServerError } from './state.js';

const LOCK_EX = 2;
const LOCK_NB = 4;
/** flock's "held by someone else" (EWOULDBLOCK is EAGAIN on Linux). */
const EWOULDBLOCK = EAGAIN;
const RETRY_MS = 20;
export const LOCK_TIMEOUT_MS = 30_000;

/** Runs `fn` holding the lock file `path` (created 0600 when missing); the directory must exist. */
export async function withLock<T>(path: string, fn: () => Promise<T>, timeoutMs = LOCK_TIMEOUT_MS): Promise<T> {
  let fd: number;
  try {
    fd = openSync(path, 'a', 0o600);
  } catch (err) {
    throw new ServerError(`cannot open the lock ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if ((libc.flock(fd, LOCK_EX | LOCK_NB) as number) === 0) break;
      const errno = lastErrno();
      if (errno === EINTR) continue;
      if (errno !== EWOULDBLOCK) throw new ServerError(`cannot lock ${path}: errno ${errno}`);
      if (Date.now() > deadline) throw new ServerError(`another wireguard-ts command has been changing this server for ${timeoutMs / 1000} s (${path}); try again when it is done`);
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
    return await fn();
  } finally {
    closeSync(fd); // releases the lock
  }
}
