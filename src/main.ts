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
import { deviceSource } from './metrics/source.js';
import {
  DEFAULT_METRICS_HOST, DEFAULT_METRICS_PORT, looksLikeListen, parseListen, parsePeerLimit, startMetricsServer, type MetricsListen,
} from './metrics/server.js';

const USAGE = `Usage: wireguard-ts [-f/--foreground] [--workers N] [--max-peers N] [--no-offload]
                    [--handshake-threads N] [--offload-depth N]
                    [--metrics [[ADDR:]PORT]] [--metrics-peers none|all|N] INTERFACE-NAME
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

interface Args {
  foreground: boolean; workers: number; maxPeers: number; offload: boolean; ifname: string;
  handshakeThreads: number; offloadDepth: number; metrics?: MetricsListen; metricsPeers: number;
}

function parseArgs(argv: string[]): Args | string {
  let foreground = false;
  let offload = true;
  // The integer options: their value so far and the range they take.
  const ints: Record<string, { value: number; min: number; max: number }> = {
    '--workers': { value: availableParallelism(), min: 1, max: 64 },
    '--max-peers': { value: DEFAULT_MAX_PEERS, min: 1, max: MAX_PEERS_LIMIT },
    '--handshake-threads': { value: availableParallelism(), min: 0, max: 64 },
    '--offload-depth': { value: DEFAULT_OFFLOAD_DEPTH, min: 0, max: 1_000_000 },
  };
  let ifname: string | undefined;
  let metrics: MetricsListen | undefined;
  let metricsPeers = Infinity;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-f' || a === '--foreground') foreground = true;
    else if (Object.hasOwn(ints, a)) {
      const opt = ints[a]!;
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < opt.min || n > opt.max) return `${a} takes an integer from ${opt.min} to ${opt.max}, got "${argv[i] ?? ''}"`;
      opt.value = n;
    } else if (a === '--metrics') {
      const value = argv[i + 1];
      const listen = value !== undefined && looksLikeListen(value) ? parseListen(argv[++i]!) : { host: DEFAULT_METRICS_HOST, port: DEFAULT_METRICS_PORT };
      if (typeof listen === 'string') return listen;
      metrics = listen;
    } else if (a === '--metrics-peers') {
      const n = parsePeerLimit(argv[++i] ?? '');
      if (n === null) return `--metrics-peers takes none, all or a number of peers, got "${argv[i] ?? ''}"`;
      metricsPeers = n;
    } else if (a === '--no-offload') offload = false;
    else if (a === '-h' || a === '--help') return USAGE;
    else if (a.startsWith('-')) return `unknown option ${a}\n${USAGE}`;
    else if (ifname === undefined) ifname = a;
    else return USAGE;
  }
  if (ifname === undefined) return USAGE;
  if (!isValidName(ifname)) return `invalid interface name "${ifname}" (1-15 characters, no '/', ':', '%' or spaces)`;
  return {
    foreground, workers: ints['--workers']!.value, maxPeers: ints['--max-peers']!.value, offload, ifname,
    handshakeThreads: ints['--handshake-threads']!.value, offloadDepth: ints['--offload-depth']!.value, metrics, metricsPeers,
  };
}

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

async function runForeground(args: Args): Promise<void> {
  const log = createLogger(args.ifname);
  installFaultHandlers(log);
  let device: Device;
  try {
    device = Device.open({ ifname: args.ifname, workers: args.workers, peerCapacity: args.maxPeers, offload: args.offload,
      handshakeThreads: args.handshakeThreads, handshakeOffloadDepth: args.offloadDepth, logger: log, testFaults: TEST_WORKER_FAULT });
  } catch (err) {
    const msg = `wireguard-ts: cannot create interface ${args.ifname}: ${(err as Error).message}${process.getuid?.() !== 0 ? ' (are you root?)' : ''}\n`;
    ready(`error: ${msg}`);
    process.stderr.write(msg);
    process.exit(1);
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
    const msg = `wireguard-ts: ${(err as Error).message}\n`;
    ready(`error: ${msg}`);
    process.stderr.write(msg);
    process.exit(1);
  }
  let metrics: Awaited<ReturnType<typeof startMetricsServer>> | undefined;
  if (args.metrics) {
    try {
      metrics = await startMetricsServer(args.metrics, deviceSource(device, args.ifname), { maxPeers: args.metricsPeers, logger: log });
    } catch (err) {
      await uapi.close();
      await device.close();
      const msg = `wireguard-ts: ${(err as Error).message}\n`;
      ready(`error: ${msg}`);
      process.stderr.write(msg);
      process.exit(1);
    }
  }
  let stopping = false;
  const shutdown = async (why: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, 'shutting down');
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
  if (typeof args === 'string') {
    process.stderr.write(args.endsWith('\n') ? args : args + '\n');
    process.exit(args === USAGE ? 1 : 2);
  }
  if (args.foreground) void runForeground(args);
  else detach(argv, args.ifname);
}
