// The opt-in Prometheus endpoint (`--metrics [ADDR:]PORT`): GET /metrics over HTTP/1.1, the
// response streamed chunk by chunk as collector.ts writes it. Between slices of peers it waits
// for a slow client to drain (so memory stays bounded) or yields one event-loop turn (so the
// main thread's other work goes on); a client that disconnects stops its scrape.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import { CONTENT_TYPE } from './exposition.js';
import { writeMetrics, type MetricsSource } from './collector.js';

/** The port existing WireGuard exporters use. */
export const DEFAULT_METRICS_PORT = 9586;
/** Loopback unless an address is given: the page names every peer and has no authentication. */
export const DEFAULT_METRICS_HOST = '127.0.0.1';

export interface MetricsListen {
  host: string;
  port: number;
}

export interface MetricsServer {
  /** The port bound (the one asked for). */
  readonly port: number;
  /** Stops listening and cuts scrapes in progress. */
  close(): Promise<void>;
}

/**
 * Whether a command-line argument is meant as `[ADDR:]PORT` rather than an interface name:
 * all digits, or a colon anywhere (interface names cannot contain one).
 */
export function looksLikeListen(arg: string): boolean {
  return /^\d+$/.test(arg) || arg.includes(':');
}

/** `PORT`, `IPv4:PORT` or `[IPv6]:PORT` (addresses as literals); a message when invalid. */
export function parseListen(arg: string): MetricsListen | string {
  const m = /^(?:(?:\[([^\]]*)\]|([^:[\]]+)):)?(\d{1,5})$/.exec(arg);
  const host = m?.[1] ?? m?.[2] ?? DEFAULT_METRICS_HOST;
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535 || isIP(host) !== (m[1] === undefined ? 4 : 6)) {
    return `--metrics takes [ADDR:]PORT with an IP address (9586, 0.0.0.0:9586, [::1]:9586), got "${arg}"`;
  }
  return { host, port };
}

/** `--metrics-peers`: none (0), all (Infinity) or a number of peers; null when invalid. */
export function parsePeerLimit(arg: string): number | null {
  if (arg === 'none') return 0;
  if (arg === 'all') return Infinity;
  return /^\d{1,9}$/.test(arg) ? Number(arg) : null;
}

export interface MetricsServerOptions {
  /** Peers whose series a scrape includes (0: none, Infinity: all). */
  maxPeers: number;
  logger?: Logger;
}

/** Listens on `listen` and serves `source`; rejects with the reason when it cannot bind. */
export async function startMetricsServer(listen: MetricsListen, source: MetricsSource, o: MetricsServerOptions): Promise<MetricsServer> {
  const server = createServer((req, res) => void serve(req, res, source, o));
  await new Promise<void>((resolve, reject) => {
    const fail = (err: NodeJS.ErrnoException): void => {
      const where = listen.host.includes(':') ? `[${listen.host}]:${listen.port}` : `${listen.host}:${listen.port}`;
      reject(new Error(`cannot serve metrics on ${where}: ${err.code ?? err.message}`));
    };
    server.once('error', fail);
    server.listen(listen.port, listen.host, () => {
      server.off('error', fail);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function serve(req: IncomingMessage, res: ServerResponse, source: MetricsSource, o: MetricsServerOptions): Promise<void> {
  if (req.url?.split('?')[0] !== '/metrics') {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('metrics are at /metrics\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD' }).end();
    return;
  }
  res.writeHead(200, { 'Content-Type': CONTENT_TYPE });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  try {
    if (await writeMetrics(source, o.maxPeers, (chunk) => void res.write(chunk), () => pause(res))) res.end();
  } catch (err) {
    // Headers are out: the only way to say "failed" is to cut the response short.
    o.logger?.error({ err: (err as Error).message }, 'metrics scrape failed');
    res.destroy();
  }
}

/** What pause() needs of a response. */
interface Drainable {
  readonly writableNeedDrain: boolean;
  readonly destroyed: boolean;
  on(event: 'drain' | 'close', listener: () => void): unknown;
  off(event: 'drain' | 'close', listener: () => void): unknown;
}

/**
 * Waits for a full socket buffer to drain, then yields one event-loop turn either way: 'drain'
 * can come from a nextTick (the response uncorks there), so waiting for it alone could run
 * the whole scrape in microtasks without ever letting timers or I/O in.
 */
export async function pause(res: Drainable): Promise<boolean> {
  if (res.writableNeedDrain && !res.destroyed) {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });
  }
  await nextTurn();
  return !res.destroyed;
}
