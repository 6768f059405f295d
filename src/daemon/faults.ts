// The daemon's last line of defence: errors that no local handler caught (a throw in a timer or
// an event callback, a promise nobody awaited). Node's default ends the process on either.
//
// A contained error is an operational failure of one socket, stream or file: a system call's
// errno, a stream used after it ended. It touched nothing but that object, so it is logged and
// the daemon goes on serving every other peer. Anything else (a TypeError, a RangeError, a thrown
// string) is a bug that may have stopped halfway through changing shared state: going on could
// send packets under a half-updated configuration, so the daemon logs it and exits non-zero,
// for its supervisor (systemd, wg-quick's user) to start a clean one. Contained errors that keep
// coming (more than FAULT_BUDGET a minute) mean something loops and are treated the same way.
//
// The log lines carry the error's name, message, code and stack only (errorFields): never the
// error object's other properties, which could hold a buffer or a key.
import type { Logger } from 'pino';
import { errorFields } from '../log.js';

/** Exit status after an uncontained fault (sysexits.h EX_SOFTWARE: an internal software error). */
export const FAULT_EXIT_CODE = 70;
/** Contained faults allowed within FAULT_WINDOW_MS; one more ends the daemon. */
export const FAULT_BUDGET = 20;
const FAULT_WINDOW_MS = 60_000;

/** Codes of errors that belong to one stream or socket even without a system call named. */
const STREAM_CODES = new Set([
  'ECONNRESET', 'EPIPE', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_SOCKET_CLOSED',
]);

/** Whether an uncaught error is contained (see above). */
export function isContained(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const { code, syscall } = err as NodeJS.ErrnoException;
  if (typeof code !== 'string') return false;
  return typeof syscall === 'string' || STREAM_CODES.has(code);
}

/**
 * Installs the process-level handlers. `exit` is process.exit but for tests; it is called after
 * the fatal line is written (pino writes synchronously on the way out).
 */
export function installFaultHandlers(log: Logger, exit: (code: number) => void = (code) => process.exit(code)): void {
  const recent: number[] = [];
  const fault = (err: unknown, origin: string): void => {
    const now = performance.now();
    while (recent.length > 0 && recent[0]! <= now - FAULT_WINDOW_MS) recent.shift();
    const fields = errorFields(err);
    if (isContained(err) && recent.length < FAULT_BUDGET) {
      recent.push(now);
      log.error({ err: fields, origin }, 'uncaught error, contained to one connection or file: the daemon goes on');
      return;
    }
    const why = isContained(err) ? `more than ${FAULT_BUDGET} uncaught errors in a minute` : 'uncaught error';
    log.fatal({ err: fields, origin }, `${why}: exiting`);
    process.stderr.write(`wireguard-ts: ${why} (${origin}): ${fields.type}: ${fields.message}; exiting\n`);
    exit(FAULT_EXIT_CODE);
  };
  process.on('uncaughtException', (err, origin) => fault(err, origin));
  process.on('unhandledRejection', (reason) => fault(reason, 'unhandledRejection'));
}
