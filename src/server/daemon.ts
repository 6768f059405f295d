// The server mode inside the daemon that `up` starts (`wireguard-ts --server DIR IFNAME`): the
// store applied to the device and kept applied (reconciler.ts), traffic sampled into the store
// (traffic.ts) with expiry and quotas enforced after each sample, the wg-quick export refreshed
// after changes made through the API, and the web admin / HTTP API when `--web` is given.
//
// It runs in the device's process, on its main thread, and reaches the device only through
// UAPI, like `wg` would; the data plane never waits for it.
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { buildApp } from '../http/app.js';
import type { HttpContext } from '../http/context.js';
import { openSqliteStore } from '../store/sqlite.js';
import type { PeerState } from '../uapi/types.js';
import { resolveEndpoint } from './clients.js';
import { uapiDevice } from './device.js';
import { exportConfig } from './export.js';
import { keyBase64 } from './keys.js';
import { withLock } from './lock.js';
import { Reconciler } from './reconciler.js';
import { ServerError, statePaths } from './state.js';
import { TrafficSampler } from './traffic.js';

/** How often the change feed is polled for changes made by other processes (CLI commands). */
const FOLLOW_MS = 200;
/** Default traffic sampling period; WG_TS_TRAFFIC_INTERVAL (seconds) overrides it. */
const TRAFFIC_INTERVAL_S = 60;
/** A burst of API changes rewrites the export once. */
const EXPORT_DELAY_MS = 500;
/** A device reading older than this is refreshed (in the background) when a page asks for it. */
const PEERS_CACHE_MS = 1000;
const WEB_ROOT = fileURLToPath(new URL('../../../web/', import.meta.url));

export interface ServerDaemonOptions {
  ifname: string;
  stateDir: string;
  web?: { host: string; port: number };
  webBehindTls: boolean;
  log: Logger;
  /** Where the UAPI socket is (tests). */
  socketDir?: string;
  /** The device's peer states, read in process (uapiDevice). */
  readPeers?: () => Iterable<PeerState>;
}

export interface ServerDaemon {
  /** The HTTP port bound, when --web was given (the one asked for, or the one picked for 0). */
  webPort?: number;
  close(): Promise<void>;
}

function trafficIntervalMs(): number {
  const v = Number(process.env.WG_TS_TRAFFIC_INTERVAL ?? TRAFFIC_INTERVAL_S);
  return Number.isFinite(v) && v > 0 ? v * 1000 : TRAFFIC_INTERVAL_S * 1000;
}

export async function startServerDaemon(o: ServerDaemonOptions): Promise<ServerDaemon> {
  const { log } = o;
  const paths = statePaths(o.stateDir, o.ifname);
  const store = await openSqliteStore(paths.db);
  const timers: NodeJS.Timeout[] = [];
  let app: Awaited<ReturnType<typeof buildApp>> | undefined;
  const close = async (): Promise<void> => {
    for (const t of timers) clearInterval(t);
    await app?.close();
    await store.close();
  };
  try {
    const server = await store.getServer();
    if (server === undefined) throw new ServerError(`there is no server in ${paths.db}`);
    const device = uapiDevice(o.ifname, o.socketDir, o.readPeers);
    const sampler: TrafficSampler = new TrafficSampler(store, device, (key) => reconciler.clientOf(key));
    const reconciler: Reconciler = new Reconciler(store, device, Date.now, (id) => sampler.reset(id));
    await reconciler.fullSync(server);
    const report = (what: string) => (err: Error): void => void log.error({ err: err.message }, what);
    timers.push(setInterval(() => void reconciler.follow().catch(report('applying store changes failed')), FOLLOW_MS));
    timers.push(setInterval(() => void sampler.sample(Date.now()).then(() => reconciler.enforce()).catch(report('traffic sample failed')), trafficIntervalMs()));

    if (o.web !== undefined) {
      let exportTimer: NodeJS.Timeout | undefined;
      const scheduleExport = (): void => {
        clearTimeout(exportTimer);
        exportTimer = setTimeout(() => void withLock(paths.lock, () => exportConfig(store, paths)).catch(report('export failed')), EXPORT_DELAY_MS);
      };
      // Pages never wait for a device reading (a UAPI get of 100k peers takes seconds): they get
      // the latest one (none at first: no live figures yet), and a stale one starts a refresh in
      // the background.
      let snapshot: { at: number; peers: Map<string, PeerState> } | undefined;
      let refreshing: Promise<void> | undefined;
      const refresh = (): Promise<void> => {
        refreshing ??= device.peers().then((list) => {
          snapshot = { at: Date.now(), peers: new Map(list.map((p) => [keyBase64(p.publicKey), p])) };
        }).finally(() => (refreshing = undefined));
        return refreshing;
      };
      const ctx: HttpContext = {
        store, server, ifname: o.ifname, endpoint: resolveEndpoint(server).endpoint, now: Date.now,
        peers: async () => {
          if (refreshing === undefined && (snapshot === undefined || Date.now() - snapshot.at > PEERS_CACHE_MS)) {
            void refresh().catch(report('reading the device failed'));
          }
          return snapshot?.peers ?? new Map();
        },
        changed: async () => {
          await reconciler.follow();
          scheduleExport();
        },
      };
      app = await buildApp(ctx, { behindTls: o.webBehindTls, webRoot: WEB_ROOT }, log);
      await app.listen({ host: o.web.host, port: o.web.port });
      const address = app.server.address();
      log.info({ web: address }, 'web admin listening');
      return { webPort: typeof address === 'object' && address !== null ? address.port : o.web.port, close };
    }
    return { close };
  } catch (err) {
    await close();
    throw err;
  }
}
