// wireguard-ts command line, the contract of userspace WireGuard implementations that wg-quick
// relies on (as wireguard-go):
//
//   wireguard-ts [-f|--foreground] [--workers N] [--max-peers N] [--no-offload]
//                [--handshake-threads N] [--offload-depth N]
//                [--metrics [[ADDR:]PORT]] [--metrics-peers none|all|N] IFNAME
//
// creates the TUN device IFNAME and the UAPI socket /var/run/wireguard/IFNAME.sock. Without -f
// the process re-executes itself in the background and exits 0 only once the child reports
// that both exist (non-zero with the child's error otherwise). The daemon exits cleanly on
// SIGINT/SIGTERM, when its socket file is deleted and when the interface is deleted.
//
// In front of that contract sits the one-command VPN server (src/server): `wireguard-ts up`,
// `down`, `add-client NAME`... (`wireguard-ts help`); an interface cannot be named like one.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { parseArgs as parseArgsUtil } from 'node:util';
import { closeSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { DEFAULT_MAX_PEERS, DEFAULT_OFFLOAD_DEPTH, Device, MAX_PEERS_LIMIT } from './device/device.js';
import { startUapiServer } from './uapi/server.js';
import { maxSetBytes } from './uapi/protocol.js';
import { createLogger } from './log.js';
import { installFaultHandlers } from './daemon/faults.js';
import { openDaemonLog } from './daemon/logfile.js';
import { isValidName } from './tun/tun.js';
import { isServerCommand } from './server/options.js';
import type { ServerDaemon } from './server/daemon.js';
import { deviceSource } from './metrics/source.js';
import {
  DEFAULT_METRICS_HOST, DEFAULT_METRICS_PORT, looksLikeListen, parseListen, parsePeerLimit, startMetricsServer, type MetricsListen,
} from './metrics/server.js';

const USAGE = `Usage: wireguard-ts [-f/--foreground] [--workers N] [--max-peers N] [--no-offload]
                    [--handshake-threads N] [--offload-depth N]
                    [--metrics [[ADDR:]PORT]] [--metrics-peers none|all|N] INTERFACE-NAME
       wireguard-ts -v/--version
       wireguard-ts help              the VPN server commands (up, add-client...)
  --handshake-threads N       threads that take the DH work of answering initiations off the
                              main thread when its queue is deep (default: one per CPU; 0: none)
  --offload-depth N           queued handshake messages from which that happens (default ${DEFAULT_OFFLOAD_DEPTH}; 0: always)
  --metrics [[ADDR:]PORT]     serve Prometheus metrics at http://ADDR:PORT/metrics (default
                              ${DEFAULT_METRICS_HOST}:${DEFAULT_METRICS_PORT}). Loopback by default, unlike exporters that bind all
                              addresses: the page names every peer's public key, allowed IPs and
                              traffic without authentication, and would be open to the VPN's own
                              clients too. Give ADDR (0.0.0.0, [::], one address) to scrape remotely.
  --metrics-peers none|all|N  per-peer series for all peers (default), none, or the first N`;
/** Tests only (documented as such in the README): SIGUSR2 makes a worker throw. */
const TEST_WORKER_FAULT = process.env.WGTS_TEST_WORKER_FAULT === '1';
/** The background child reports readiness on this fd (a pipe to the parent). */
const READY_FD = 3;
const READY_ENV = 'WIREGUARD_TS_READY_FD';
const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

interface Args {
  foreground: boolean; workers: number; maxPeers: number; offload: boolean; ifname: string;
  handshakeThreads: number; offloadDepth: number; metrics?: MetricsListen; metricsPeers: number;
  /** Server mode (set by `wireguard-ts up`): the state directory whose store this daemon serves. */
  server?: string; web?: MetricsListen; webBehindTls: boolean;
}

// The integer options and the range each takes.
const INTS = {
  workers: { min: 1, max: 64, default: () => availableParallelism() },
  'max-peers': { min: 1, max: MAX_PEERS_LIMIT, default: () => DEFAULT_MAX_PEERS },
  'handshake-threads': { min: 0, max: 64, default: () => availableParallelism() },
  'offload-depth': { min: 0, max: 1_000_000, default: () => DEFAULT_OFFLOAD_DEPTH },
} as const;

const OPTIONS = {
  foreground: { type: 'boolean', short: 'f' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
  'no-offload': { type: 'boolean' },
  metrics: { type: 'string' },
  'metrics-peers': { type: 'string' },
  server: { type: 'string' },
  web: { type: 'string' },
  'web-behind-tls': { type: 'boolean' },
  ...Object.fromEntries(Object.keys(INTS).map((k) => [k, { type: 'string' }] as const)),
} as const;

function parseArgs(argv: string[]): Args | string {
  // --metrics takes an optional value, which parseArgs cannot express: a bare --metrics gets the default.
  const args = argv.flatMap((a, i) => (a === '--metrics' && !(argv[i + 1] !== undefined && looksLikeListen(argv[i + 1]!))
    ? [`--metrics=${DEFAULT_METRICS_HOST}:${DEFAULT_METRICS_PORT}`] : [a]));
  let parsed: ReturnType<typeof parseArgsUtil<{ args: string[]; options: typeof OPTIONS; allowPositionals: true }>>;
  try {
    parsed = parseArgsUtil({ args, options: OPTIONS, allowPositionals: true });
  } catch (err) {
    return `${(err as Error).message.split('\n')[0]}\n${USAGE}`;
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  if (v.help) return USAGE;
  if (v.version) return VERSION_TEXT;
  const ints: Record<string, number> = {};
  for (const [name, r] of Object.entries(INTS)) {
    const raw = v[name] as string | undefined;
    const n = raw === undefined ? r.default() : Number(raw);
    if (!Number.isInteger(n) || n < r.min || n > r.max || (raw !== undefined && !/^\d+$/.test(raw))) return `--${name} takes an integer from ${r.min} to ${r.max}, got "${raw ?? ''}"`;
    ints[name] = n;
  }
  const listen = (flag: string, raw: string | undefined): MetricsListen | string | undefined => {
    if (raw === undefined) return undefined;
    const l = parseListen(raw);
    return typeof l === 'string' ? l.replace('--metrics', flag) : l;
  };
  const metrics = listen('--metrics', v.metrics as string | undefined);
  if (typeof metrics === 'string') return metrics;
  const web = listen('--web', v.web as string | undefined);
  if (typeof web === 'string') return web;
  let metricsPeers = Infinity;
  if (v['metrics-peers'] !== undefined) {
    const n = parsePeerLimit(v['metrics-peers'] as string);
    if (n === null) return `--metrics-peers takes none, all or a number of peers, got "${v['metrics-peers']}"`;
    metricsPeers = n;
  }
  if (parsed.positionals.length !== 1) return USAGE;
  const ifname = parsed.positionals[0]!;
  if (!isValidName(ifname)) return `invalid interface name "${ifname}" (1-15 characters, no '/', ':' or '%')`;
  return {
    foreground: v.foreground === true, workers: ints.workers!, maxPeers: ints['max-peers']!, offload: v['no-offload'] !== true, ifname,
    handshakeThreads: ints['handshake-threads']!, offloadDepth: ints['offload-depth']!, metrics, metricsPeers,
    ...(v.server !== undefined ? { server: v.server as string } : {}), web, webBehindTls: v['web-behind-tls'] === true,
  };
}

/** What `--version` prints, in the shape of wireguard-go's. */
const VERSION_TEXT = `wireguard-ts v${VERSION}

Userspace WireGuard daemon for ${process.platform}-${process.arch} (Node.js ${process.version}).
Information available at https://www.wireguard.com.
`;

/** Re-executes in the background and waits for the child to report ready or fail. */
function detach(argv: string[], ifname: string): void {
  const out = openDaemonLog(ifname);
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--foreground', ...argv], {
    detached: true,
    stdio: ['ignore', out, out, 'pipe'],
    env: { ...process.env, [READY_ENV]: String(READY_FD) },
  });
  if (out !== 'ignore') closeSync(out);
  let report = '';
  const pipe = child.stdio[READY_FD] as NodeJS.ReadableStream;
  pipe.setEncoding('utf8');
  pipe.on('data', (chunk: string) => (report += chunk));
  pipe.on('end', () => {
    if (report.startsWith('ok')) {
      child.unref();
      process.exit(0);
    }
    process.stderr.write(report.replace(/^error: /, '') || 'wireguard-ts: the daemon exited during start-up\n');
    process.exit(1);
  });
}

function ready(message: string): void {
  if (process.env[READY_ENV] === undefined) return;
  delete process.env[READY_ENV];
  try {
    writeSync(READY_FD, message);
    closeSync(READY_FD);
  } catch {
    // The parent is gone: nobody to tell.
  }
}

/** Start-up failed (what was opened is closed): tells the waiting parent and the terminal, exits 1. */
function startFailed(reason: string): never {
  const msg = `wireguard-ts: ${reason}\n`;
  ready(`error: ${msg}`);
  process.stderr.write(msg);
  process.exit(1);
}

async function runForeground(args: Args): Promise<void> {
  const log = createLogger(args.ifname);
  installFaultHandlers(log);
  let device: Device;
  try {
    device = Device.open({ ifname: args.ifname, workers: args.workers, peerCapacity: args.maxPeers, offload: args.offload,
      handshakeThreads: args.handshakeThreads, handshakeOffloadDepth: args.offloadDepth, logger: log, testFaults: TEST_WORKER_FAULT,
      // A cluster node (a server on a shared store) answers its sibling nodes' clients at once.
      routableIndices: args.server !== undefined && process.env.WG_TS_STORE !== undefined });
  } catch (err) {
    startFailed(`cannot create interface ${args.ifname}: ${(err as Error).message}${process.getuid?.() !== 0 ? ' (are you root?)' : ''}`);
  }
  let uapi: Awaited<ReturnType<typeof startUapiServer>>;
  try {
    // Ready means packets flow: wait for the workers to load before answering on the socket.
    await device.pool.ready;
    uapi = await startUapiServer(args.ifname, device, {
      onError: (err) => log.error({ err: err instanceof Error ? err.stack : String(err) }, 'UAPI request failed inside the device'),
      logger: log,
      maxRequestBytes: maxSetBytes(args.maxPeers),
    });
  } catch (err) {
    await device.close();
    startFailed((err as Error).message);
  }
  let metrics: Awaited<ReturnType<typeof startMetricsServer>> | undefined;
  if (args.metrics) {
    try {
      metrics = await startMetricsServer(args.metrics, deviceSource(device, args.ifname), { maxPeers: args.metricsPeers, logger: log });
    } catch (err) {
      await uapi.close();
      await device.close();
      startFailed((err as Error).message);
    }
  }
  let server: ServerDaemon | undefined;
  if (args.server !== undefined) {
    try {
      const { startServerDaemon } = await import('./server/daemon.js');
      server = await startServerDaemon({
        ifname: args.ifname, stateDir: args.server, webBehindTls: args.webBehindTls, log, ...(args.web !== undefined ? { web: args.web } : {}),
        readPeers: () => device.peerStates(),
        // From the environment, not the command line: the URL may hold the database password.
        ...(process.env.WG_TS_STORE ? { store: process.env.WG_TS_STORE } : {}), ...(process.env.WG_TS_NODE ? { node: process.env.WG_TS_NODE } : {}),
      });
    } catch (err) {
      await metrics?.close();
      await uapi.close();
      await device.close();
      startFailed((err as Error).message);
    }
  }
  let stopping = false;
  const shutdown = async (why: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, 'shutting down');
    await server?.close();
    await metrics?.close();
    await uapi.close();
    await device.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  uapi.onSocketDeleted(() => void shutdown('UAPI socket deleted'));
  device.on('gone', () => void shutdown('interface deleted'));
  // For tests only: SIGUSR2 makes worker 0 throw, as a bug would, to exercise the supervisor.
  if (TEST_WORKER_FAULT) process.on('SIGUSR2', () => device.injectWorkerFault(0));
  log.info({ workers: args.workers, port: device.listenPort }, 'device started');
  ready('ok\n');
}

const argv = process.argv.slice(2);
if (isServerCommand(argv[0])) {
  const { runServerCli } = await import('./server/commands.js');
  process.exitCode = await runServerCli(argv);
} else if (argv[0] === 'loadgen') {
  const { runLoadgenCli } = await import('./loadgen/cli.js');
  process.exitCode = await runLoadgenCli(argv.slice(1));
} else {
  const args = parseArgs(argv);
  if (args === VERSION_TEXT) {
    process.stdout.write(args);
    process.exit(0);
  }
  if (typeof args === 'string') {
    process.stderr.write(args.endsWith('\n') ? args : args + '\n');
    process.exit(args === USAGE ? 1 : 2);
  }
  if (args.foreground) void runForeground(args);
  else detach(argv, args.ifname);
}
