// Logging with wireguard-go's LOG_LEVEL contract: verbose (or debug), error (the default) and
// silent. Disabled levels are no-ops in pino, so debug logging on the handshake path costs
// nothing when off. Nothing secret is ever passed to a log call: peers are named by slot or by
// public key, never by private or preshared key.
import { pino, type Logger } from 'pino';

export function levelFromEnv(value: string | undefined): pino.LevelWithSilent {
  switch (value) {
    case 'verbose':
    case 'debug':
      return 'debug';
    case 'silent':
      return 'silent';
    default:
      return 'error';
  }
}

export function createLogger(ifname: string, value = process.env.LOG_LEVEL): Logger {
  return pino({ level: levelFromEnv(value), base: { interface: ifname } });
}

/** What a log line says of an error. */
export interface ErrorFields {
  type: string;
  message: string;
  code?: string;
  stack?: string;
}

/**
 * The fields of an error worth a log line, and only those: pino's serializer would copy every
 * own property of the error object, which could hold anything (a buffer, a key).
 */
export function errorFields(err: unknown): ErrorFields {
  if (!(err instanceof Error)) return { type: typeof err, message: String(err) };
  const code = (err as NodeJS.ErrnoException).code;
  return { type: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}), ...(err.stack ? { stack: err.stack } : {}) };
}

/**
 * Logs an error that input can repeat at will (one per packet) at most once per `intervalMs`,
 * with how many were held back since the previous line: a peer cannot fill the disk with them.
 */
export function throttledErrors(log: Logger, msg: string, intervalMs = 1000): (err: unknown) => void {
  let last = -Infinity;
  let heldBack = 0;
  return (err) => {
    const t = performance.now();
    if (t - last < intervalMs) {
      heldBack++;
      return;
    }
    last = t;
    log.error({ err: errorFields(err), heldBack }, msg);
    heldBack = 0;
  };
}
