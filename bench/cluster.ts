// The cluster's control plane, on a throw-away PostgreSQL (test/pg-fixture.ts):
//
// - propagation: a client added through the store (as add-client on another node does) until
//   it is on the devices of two listening nodes, p50/p99 over CHANGES changes (target p99 <= 1 s);
// - database load per change, from pg_stat_database over those changes (with the nodes'
//   heartbeats and reads included: that is what a change costs the cluster);
// - join: a new node starting on a store of JOIN_CLIENTS clients until its device has every
//   one (target <= 30 s). Its device is a real wireguard-ts daemon in a namespace of its own
//   (root: a TUN device), counted with `wg show IFNAME peers` at the end.
//
// The propagation nodes' device double keeps peers in a map, since what a change costs there is
// the store, the feed and the reconciler (a real device adds one peer in microseconds).
// test/uapi-fake.ts moves a prefix between peers by scanning all of them (quadratic at 100k),
// which would measure the fake, not the cluster.
//
// node dist/bench/cluster.js [--changes N] [--clients N]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import pino from 'pino';
import { createClient } from '../src/server/clients.js';
import { startServerDaemon, type ServerDaemon } from '../src/server/daemon.js';
import { keyHex, newKeyPair, newPresharedKey } from '../src/server/keys.js';
import { openPostgresStore } from '../src/store/postgres.js';
import type { NewClient, ServerRecord } from '../src/store/repository.js';
import { startUapiServer } from '../src/uapi/server.js';
import type { DeviceState, PeerState, SetRequest, UapiDevice } from '../src/uapi/types.js';
import { startPostgres } from '../test/pg-fixture.js';
import { Cleanup, SOCKET_DIR, sh } from '../test/interop/harness.js';
import { startDaemonAlone } from '../test/interop/topology.js';
import { requireRoot } from './pairings.js';
import { newPeer, peerOpsOf } from '../test/uapi-fake.js';

class MapDevice implements UapiDevice {
  readonly peers = new Map<string, PeerState>();
  private readonly state: DeviceState = { listenPort: 0, fwmark: 0 };

  deviceState(): DeviceState {
    return this.state;
  }

  peerStates(): Iterator<PeerState> {
    return this.peers.values();
  }

  apply(req: SetRequest): number {
    if (req.replacePeers) this.peers.clear();
    for (const op of peerOpsOf(req.peers)) {
      const key = Buffer.from(op.publicKey).toString('hex');
      if (op.remove) {
        this.peers.delete(key);
        continue;
      }
      const peer = this.peers.get(key) ?? newPeer(op.publicKey);
      peer.allowedIps = op.allowedIps.map((a) => ({ addr: a.addr, cidr: a.cidr }));
      this.peers.set(key, peer);
    }
    return 0;
  }
}

const { values } = parseArgs({ options: { changes: { type: 'string', default: '1000' }, clients: { type: 'string', default: '100000' } } });
const CHANGES = Number(values.changes);
const JOIN_CLIENTS = Number(values.clients);

interface BenchNode { device: MapDevice; daemon: ServerDaemon; close(): Promise<void> }

async function startNode(url: string, name: string, dir: string): Promise<BenchNode> {
  const socketDir = join(dir, name);
  const ifname = `wgbench${name}`;
  const device = new MapDevice();
  const uapi = await startUapiServer(ifname, device, { socketDir });
  const daemon = await startServerDaemon({ ifname, stateDir: join(dir, `${name}-state`), socketDir, webBehindTls: false, log: pino({ level: 'silent' }), store: url, node: name });
  return { device, daemon, close: async () => { await daemon.close(); await uapi.close(); } };
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

type Stats = Record<'xact_commit' | 'tup_returned' | 'tup_fetched' | 'tup_inserted' | 'tup_updated' | 'tup_deleted' | 'blks_hit' | 'blks_read', number>;

async function dbStats(url: string): Promise<Stats> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query(`select xact_commit, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, blks_hit, blks_read
      from pg_stat_database where datname = current_database()`);
    return Object.fromEntries(Object.entries(r.rows[0] as Record<string, string>).map(([k, v]) => [k, Number(v)])) as Stats;
  } finally {
    await c.end();
  }
}

async function main(): Promise<void> {
  requireRoot();
  const db = startPostgres();
  const dir = mkdtempSync(join(tmpdir(), 'wgts-bench-cluster-'));
  try {
    // ---- propagation and load ----
    const url = await db.createDatabase('propagation');
    const store = await openPostgresStore(url);
    const server: ServerRecord = { privateKey: newKeyPair().privateKey, address: '10.8.0.1/16', listenPort: 51820, mtu: 1420, extra: [], createdAt: Date.now() };
    await store.createServer(server);
    const nodes = [await startNode(url, 'b', dir), await startNode(url, 'c', dir)];
    // PostgreSQL publishes a backend's statistics within a second of its transaction.
    const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 1500));
    await settle();
    const before = await dbStats(url);
    const startedAt = Date.now();
    const delays: number[] = [];
    for (let i = 0; i < CHANGES; i++) {
      const t0 = performance.now();
      const c = await createClient(store, server, { name: `p${i}` });
      const key = keyHex(c.publicKey);
      while (!nodes.every((n) => n.device.peers.has(key))) await new Promise((r) => setImmediate(r));
      delays.push(performance.now() - t0);
    }
    const seconds = (Date.now() - startedAt) / 1000;
    await settle();
    const after = await dbStats(url);
    delays.sort((a, b) => a - b);
    console.log(`propagation, add on one node -> on the devices of two others, ${CHANGES} changes one after another:`);
    console.log(`  p50 ${percentile(delays, 50).toFixed(1)} ms  p99 ${percentile(delays, 99).toFixed(1)} ms  max ${delays.at(-1)!.toFixed(1)} ms  (target p99 <= 1000 ms)`);
    console.log(`database load per change (two listening nodes, heartbeats included, ${seconds.toFixed(1)} s):`);
    for (const k of Object.keys(before) as (keyof Stats)[]) console.log(`  ${k.padEnd(13)} ${((after[k] - before[k]) / CHANGES).toFixed(1)}`);
    for (const n of nodes) await n.close();
    await store.close();

    // ---- join ----
    const joinUrl = await db.createDatabase('join');
    const big = await openPostgresStore(joinUrl);
    const bigServer: ServerRecord = { ...server, address: '10.0.0.1/8', createdAt: Date.now() };
    const base = (10 << 24) >>> 0;
    const clients: NewClient[] = Array.from({ length: JOIN_CLIENTS }, (_, i) => {
      const address = base + 2 + i;
      return {
        name: `c${i}`, publicKey: newKeyPair().publicKey, presharedKey: newPresharedKey(), address, extra: [], enabled: true,
        allowedIps: [`${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${address & 255}/32`],
      };
    });
    const importStart = Date.now();
    await big.importState(bigServer, clients);
    console.log(`join: ${JOIN_CLIENTS} clients written in ${((Date.now() - importStart) / 1000).toFixed(1)} s`);
    const cleanup = new Cleanup();
    try {
      const joinStart = performance.now();
      const device = await startDaemonAlone(cleanup, 'ours');
      const joiner = await startServerDaemon({
        ifname: device.ifname, stateDir: join(dir, 'new-state'), socketDir: SOCKET_DIR, webBehindTls: false,
        log: pino({ level: 'silent' }), store: joinUrl, node: 'new',
      });
      cleanup.add(() => joiner.close());
      const joinMs = performance.now() - joinStart;
      const peers = sh('wg', ['show', device.ifname, 'peers']).split('\n').filter(Boolean).length;
      if (peers !== JOIN_CLIENTS) throw new Error(`the new node's device has ${peers} peers, not ${JOIN_CLIENTS}`);
      console.log(`  a new node (daemon start included) configured with all ${JOIN_CLIENTS} in ${(joinMs / 1000).toFixed(1)} s (target <= 30 s)`);
    } finally {
      await cleanup.run();
      await big.close();
    }
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
