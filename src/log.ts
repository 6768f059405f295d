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
