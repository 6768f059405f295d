// Where a daemon started in the background (no -f) writes: its stdout (pino's JSON lines) and
// stderr (fatal messages, Node's own last words) both go to /var/log/wireguard-ts/IFNAME.log,
// appended to, so its errors are kept without a terminal. A missing directory is created 0700
// and a missing file 0600 (the lines name peers by public key and address; never a private
// key). The file is opened O_APPEND, so logrotate's copytruncate rotates it in place.
// WG_TS_LOG_DIR chooses another directory.
import { constants, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const DEFAULT_LOG_DIR = '/var/log/wireguard-ts';
export const LOG_DIR_ENV = 'WG_TS_LOG_DIR';

export function daemonLogPath(ifname: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(env[LOG_DIR_ENV] || DEFAULT_LOG_DIR, `${ifname}.log`);
}

/**
 * Opens IFNAME's log for the background daemon's stdout and stderr. When it cannot (not root, a
 * read-only /var/log), says so on our stderr and answers 'ignore': the daemon runs all the same.
 */
export function openDaemonLog(ifname: string): number | 'ignore' {
  const path = daemonLogPath(ifname);
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // O_NOFOLLOW: a symlink planted in place of the log is refused, not written through.
    return openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    process.stderr.write(`wireguard-ts: cannot open the log file ${path} (${(err as Error).message}): the daemon's errors will not be kept\n`);
    return 'ignore';
  }
}
