// The opt-in Prometheus endpoint (`--metrics [ADDR:]PORT`): GET /metrics over HTTP/1.1, the
// response streamed chunk by chunk as collector.ts writes it. Between slices of peers it waits
// for a slow client to drain (so memory stays bounded) or yields one event-loop turn (so the
// main thread's other work goes on); a client that disconnects stops its scrape.
//
// A scrape in progress holds a list of every peer (the walk's snapshot), so scrapes are bounded:
// at most MAX_SCRAPES at once (more are answered 503), and each is cut when its client has taken
// no byte for SCRAPE_STALL_MS or when it has run SCRAPE_TIMEOUT_MS in all.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import { CONTENT_TYPE } from './exposition.js';
import { writeMetrics, type MetricsSource } from './collector.js';
import { errorFields } from '../log.js';

/** Scrapes served at once; Prometheus sends one per target at a time, so this leaves room for a few scrapers. */
export const MAX_SCRAPES = 4;
/**
 * Longest a scrape may run. Its three walks over a million peers should take ~20 s (each about a
 * `wg show` of them, 5-6 s); Prometheus itself gives up on a target after its scrape_timeout
 * (10 s by default, at most the scrape interval), so anything longer serves nobody.
 */
export const SCRAPE_TIMEOUT_MS = 120_000;
/** Longest a client may take no byte of a scrape (one that stopped reading, or vanished without a FIN). */
export const SCRAPE_STALL_MS = 15_000;

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
  /** Limits (defaults MAX_SCRAPES, SCRAPE_TIMEOUT_MS, SCRAPE_STALL_MS; tests shorten them). */
  maxScrapes?: number;
  timeoutMs?: number;
  stallMs?: number;
}

/** Listens on `listen` and serves `source`; rejects with the reason when it cannot bind. */
export async function startMetricsServer(listen: MetricsListen, source: MetricsSource, o: MetricsServerOptions): Promise<MetricsServer> {
  const scrapes = { running: 0 };
  const server = createServer((req, res) => void serve(req, res, source, o, scrapes));
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
  // After listening, an error (accept failing with EMFILE...) concerns one connection that could
  // not be taken, and would end the process without a listener; the server keeps listening.
  server.on('error', (err) => o.logger?.error({ err: errorFields(err) }, 'metrics socket error'));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function serve(req: IncomingMessage, res: ServerResponse, source: MetricsSource, o: MetricsServerOptions, scrapes: { running: number }): Promise<void> {
  if (req.url?.split('?')[0] !== '/metrics') {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('metrics are at /metrics\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD' }).end();
    return;
  }
  if (req.method === 'HEAD') {
    res.writeHead(200, { 'Content-Type': CONTENT_TYPE }).end();
    return;
  }
  if (scrapes.running >= (o.maxScrapes ?? MAX_SCRAPES)) {
    res.writeHead(503, { 'Content-Type': 'text/plain', 'Retry-After': '1' }).end('too many scrapes in progress\n');
    return;
  }
  scrapes.running++;
  const deadline = setTimeout(() => res.destroy(), o.timeoutMs ?? SCRAPE_TIMEOUT_MS);
  // No byte taken by the client for that long: the socket times out and is destroyed.
  res.setTimeout(o.stallMs ?? SCRAPE_STALL_MS, () => res.destroy());
  try {
    res.writeHead(200, { 'Content-Type': CONTENT_TYPE });
    if (await writeMetrics(source, o.maxPeers, (chunk) => void res.write(chunk), () => pause(res))) res.end();
  } catch (err) {
    // Headers are out: the only way to say "failed" is to cut the response short.
    o.logger?.error({ err: errorFields(err) }, 'metrics scrape failed');
    res.destroy();
  } finally {
    clearTimeout(deadline);
    scrapes.running--;
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
