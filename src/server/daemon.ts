// The server mode inside the daemon that `up` starts (`wireguard-ts --server DIR IFNAME`): the
// store applied to the device and kept applied (reconciler.ts), traffic sampled into the store
// (traffic.ts) with expiry and quotas enforced after each sample, the wg-quick export refreshed
// after changes made through the API, and the web admin / HTTP API when `--web` is given.
//
// It runs in the device's process, on its main thread, and reaches the device only through
// UAPI, like `wg` would; the data plane never waits for it.
//
// On a cluster's store (PostgreSQL) the node also listens to the change feed (src/cluster/
// feed.ts) instead of polling it every FOLLOW_MS, polls only as a safety net, writes its
// heartbeat (src/cluster/nodes.ts), and rides out a database outage: the device keeps its
// peers, failures are logged once per outage, and the feed's reconnection catches up.
import { hostname } from 'node:os';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { buildApp } from '../http/app.js';
import type { HttpContext } from '../http/context.js';
import { ChangeFeed } from '../cluster/feed.js';
import { FIGURES_MS, HEARTBEAT_MS, deviceFigures, type DeviceFigures } from '../cluster/nodes.js';
import { describeLocation, openStoreAt } from '../store/open.js';
import type { PeerState } from '../uapi/types.js';
import { resolveEndpoint } from './clients.js';
import { uapiDevice } from './device.js';
import { exportConfig } from './export.js';
import { keyBase64 } from './keys.js';
import { withLock } from './lock.js';
import { APPLIED_META, nodeKey } from './meta.js';
import { Reconciler } from './reconciler.js';
import { ServerError, statePaths } from './state.js';
import { TrafficSampler } from './traffic.js';

/** How often the change feed is polled for changes made by other processes (CLI commands). */
const FOLLOW_MS = 200;
/** On a cluster's store, where NOTIFY says when to read, the poll is only a safety net. */
const CLUSTER_FOLLOW_MS = 5_000;
/** Changes older than this are pruned from the feed; a node away longer resyncs in full. */
const FEED_RETENTION_MS = 7 * 24 * 3_600_000;
const FEED_PRUNE_MS = 3_600_000;
/** Default traffic sampling period; WG_TS_TRAFFIC_INTERVAL (seconds) overrides it. */
const TRAFFIC_INTERVAL_S = 60;
/** A burst of API changes rewrites the export once. */
const EXPORT_DELAY_MS = 500;
/** A device reading older than this is refreshed (in the background) when a page asks for it. */
const PEERS_CACHE_MS = 1000;
/**
 * Peers indexed per turn of the event loop when a reading is refreshed: indexing 100k at once
 * held every request for 50-300 ms once a second (the p95 of every page in bench/api).
 */
const INDEX_SLICE = 2000;
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
  /** postgres://... of a cluster's store; absent: the state directory's SQLite file. */
  store?: string;
  /** This node's name in the cluster. */
  node?: string;
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
  const where = { ...(o.store !== undefined ? { url: o.store } : {}), file: paths.db };
  const cluster = o.store !== undefined ? { node: o.node ?? hostname() } : undefined;
  // While the feed's connection is down the outage is already logged; the timers' failures are not repeated.
  let feed: ChangeFeed | undefined;
  const report = (what: string) => (err: Error): void => {
    if (feed === undefined || feed.connected) log.error({ err: err.message }, what);
  };
  const store = await openStoreAt(where, { onPoolError: report('a store connection failed') });
  const timers: NodeJS.Timeout[] = [];
  let app: Awaited<ReturnType<typeof buildApp>> | undefined;
  const close = async (): Promise<void> => {
    for (const t of timers) clearInterval(t);
    await feed?.close();
    await app?.close();
    await store.close();
  };
  try {
    const server = await store.getServer();
    if (server === undefined) throw new ServerError(`there is no server in ${describeLocation(where)}`);
    const device = uapiDevice(o.ifname, o.socketDir, o.readPeers);
    const sampler: TrafficSampler = new TrafficSampler(store, device, (key) => reconciler.clientOf(key));
    const reconciler: Reconciler = new Reconciler(store, device, Date.now, (id) => sampler.reset(id), nodeKey(APPLIED_META, cluster?.node));
    await reconciler.fullSync(server);
    // Notifications that arrive while a read runs are merged into one more read after it.
    let following: Promise<void> | undefined;
    let again = false;
    const follow = (): void => {
      if (following !== undefined) {
        again = true;
        return;
      }
      following = reconciler.follow().catch(report('applying store changes failed')).finally(() => {
        following = undefined;
        if (again) {
          again = false;
          follow();
        }
      });
    };
    if (cluster !== undefined) {
      feed = new ChangeFeed(o.store!, { changed: follow, reconnected: follow }, log);
      await feed.start();
      const startedAt = Date.now();
      let figures: { at: number; value: DeviceFigures } | undefined;
      const beat = async (): Promise<void> => {
        const now = Date.now();
        if (figures === undefined || now - figures.at >= FIGURES_MS) figures = { at: now, value: deviceFigures(await device.peers(), now) };
        // The peer count is the reconciler's own, always current; the rest may be FIGURES_MS old.
        await store.saveNode({ name: cluster.node, startedAt, heartbeatAt: now, appliedSeq: reconciler.appliedSeq, ...figures.value, peers: reconciler.size });
      };
      await beat().catch(report('heartbeat failed'));
      timers.push(setInterval(() => void beat().catch(report('heartbeat failed')), HEARTBEAT_MS));
    }
    timers.push(setInterval(() => {
      if (feed === undefined || feed.connected) follow();
    }, cluster !== undefined ? CLUSTER_FOLLOW_MS : FOLLOW_MS));
    timers.push(setInterval(() => void sampler.sample(Date.now()).then(() => reconciler.enforce()).catch(report('traffic sample failed')), trafficIntervalMs()));
    timers.push(setInterval(() => void store.pruneChanges(Date.now() - FEED_RETENTION_MS).catch(report('pruning the change feed failed')), FEED_PRUNE_MS));

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
        refreshing ??= device.peers().then(async (list) => {
          const at = Date.now();
          const peers = new Map<string, PeerState>();
          for (let i = 0; i < list.length; i += INDEX_SLICE) {
            if (i > 0) await nextTurn();
            for (let j = i; j < Math.min(list.length, i + INDEX_SLICE); j++) peers.set(keyBase64(list[j]!.publicKey), list[j]!);
          }
          snapshot = { at, peers };
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
