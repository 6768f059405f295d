// A cluster without root: three server daemons (src/server/daemon.ts), each over a fake device
// behind a real UAPI socket, sharing one throw-away PostgreSQL (pg-fixture.ts). A change made
// anywhere reaches every device through LISTEN/NOTIFY (add, disable, enable, allowed IPs,
// expiry, remove); nodes heartbeat and show down when silent; a dropped feed connection catches
// up from its last sequence; PostgreSQL restarted under the nodes leaves their devices as they
// were and the nodes converge after; a reader behind the feed's pruning resyncs in full.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import pino from 'pino';
import { hash as argon2Hash } from '@node-rs/argon2';
import { chromium } from 'playwright-core';
import { DOWN_AFTER_MS, clusterStatus } from '../src/cluster/nodes.js';
import { createClient } from '../src/server/clients.js';
import { startServerDaemon, type ServerDaemon } from '../src/server/daemon.js';
import { keyHex, newKeyPair } from '../src/server/keys.js';
import { hashSecret } from '../src/server/meta.js';
import { Reconciler } from '../src/server/reconciler.js';
import { openPostgresStore } from '../src/store/postgres.js';
import type { Repository, ServerRecord } from '../src/store/repository.js';
import { startUapiServer } from '../src/uapi/server.js';
import { FakeDevice } from './uapi-fake.js';
import { skipWithoutPostgres, startPostgres, type TestPostgres } from './pg-fixture.js';
import { CHROMIUM, CHROMIUM_FLAGS, noChromium } from './browser.js';

const skip = skipWithoutPostgres;
const BIN = fileURLToPath(new URL('../../bin/wireguard-ts', import.meta.url));
let pgServer: TestPostgres | undefined;
let dbs = 0;

before(() => {
  if (!skip) pgServer = startPostgres();
});
after(() => pgServer?.close());

interface Node {
  name: string;
  device: FakeDevice;
  daemon: ServerDaemon;
  close(): Promise<void>;
}

async function startNode(url: string, name: string, dir: string, web = false): Promise<Node> {
  const socketDir = join(dir, name);
  const ifname = `wgcl${process.pid % 1000}${name}`;
  const device = new FakeDevice();
  const uapi = await startUapiServer(ifname, device, { socketDir });
  const daemon = await startServerDaemon({
    ifname, stateDir: join(dir, `${name}-state`), socketDir, webBehindTls: false, log: pino({ level: 'silent' }), store: url, node: name,
    ...(web ? { web: { host: '127.0.0.1', port: 0 } } : {}),
  });
  return { name, device, daemon, close: async () => { await daemon.close(); await uapi.close(); } };
}

const hexKey = (base64: string): string => keyHex(base64);
const has = (n: Node, publicKey: string): boolean => n.device.peers.has(hexKey(publicKey));

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<number> {
  const start = Date.now();
  while (!(await ok())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - start;
}

async function cluster(t: { after: (fn: () => Promise<void>) => void }): Promise<{ url: string; store: Repository; server: ServerRecord; nodes: Node[] }> {
  const url = await pgServer!.createDatabase(`cluster${++dbs}`);
  const dir = mkdtempSync(join(tmpdir(), 'wgts-cluster-'));
  const store = await openPostgresStore(url);
  const server: ServerRecord = { privateKey: newKeyPair().privateKey, address: '10.8.0.1/16', listenPort: 51820, mtu: 1420, extra: [], createdAt: Date.now() };
  await store.createServer(server);
  await createClient(store, server, { name: 'first' });
  const nodes: Node[] = [];
  t.after(async () => {
    for (const n of nodes) await n.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  for (const name of ['a', 'b', 'c']) nodes.push(await startNode(url, name, dir, name === 'a'));
  return { url, store, server, nodes };
}

test('a change made anywhere reaches every node live: add, disable, enable, allowed IPs, expiry, remove', { skip, timeout: 60_000 }, async (t) => {
  const { store, server, nodes } = await cluster(t);
  for (const n of nodes) assert.equal(n.device.peers.size, 1, `node ${n.name} starts with the store's client`);
  const alice = await createClient(store, server, { name: 'alice' });
  const took = await until('alice on every node', () => nodes.every((n) => has(n, alice.publicKey)));
  assert.ok(took < 1000, `propagated in ${took} ms`);
  await store.updateClient(alice.id, { enabled: false });
  await until('alice disabled everywhere', () => nodes.every((n) => !has(n, alice.publicKey)));
  await store.updateClient(alice.id, { enabled: true, allowedIps: ['10.8.0.3/32', '192.168.7.0/24'] });
  await until('alice back with her new allowed IPs', () => nodes.every((n) =>
    n.device.peers.get(hexKey(alice.publicKey))?.allowedIps.map((a) => `${a.addr.join(".")}/${a.cidr}`).join(',') === '10.8.0.3/32,192.168.7.0/24'));
  await store.updateClient(alice.id, { expiresAt: Date.now() - 1 });
  await until('alice expired everywhere', () => nodes.every((n) => !has(n, alice.publicKey)));
  await store.updateClient(alice.id, { expiresAt: null });
  await until('alice unexpired', () => nodes.every((n) => has(n, alice.publicKey)));
  await store.deleteClient(alice.id);
  await until('alice removed everywhere', () => nodes.every((n) => !has(n, alice.publicKey)));
  const last = await store.lastChange();
  await until('every node reports the feed head applied', async () => (await clusterStatus(store, Date.now())).every((n) => n.appliedSeq === last), 8000);
});

test('nodes heartbeat; cluster status lists them and a silent node shows down', { skip, timeout: 60_000 }, async (t) => {
  const { url, store, nodes } = await cluster(t);
  const status = await clusterStatus(store, Date.now());
  assert.deepEqual(status.map((n) => [n.name, n.up, n.peers]), [['a', true, 1], ['b', true, 1], ['c', true, 1]]);
  assert.deepEqual((await clusterStatus(store, Date.now() + DOWN_AFTER_MS + 1000)).map((n) => n.up), [false, false, false]);
  const r = spawnSync(process.execPath, [BIN, 'cluster', 'status', '--store', url], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^NODE\s+STATE\s+PEERS\s+SEEN\s+RECEIVED\s+SENT\s+FEED LAG\s+HEARTBEAT\n/);
  for (const n of nodes) assert.match(r.stdout, new RegExp(`^${n.name}\\s+up\\s+1\\s+0\\s+0 B\\s+0 B\\s+0\\s+\\d+ s ago$`, 'm'));
  assert.doesNotMatch(r.stdout + r.stderr, /postgres:\/\//, 'the URL is not echoed');
  const missing = spawnSync(process.execPath, [BIN, 'cluster', 'status', '--store', url.replace(/\/cluster\d+\?/, '/nosuchdb?').replace('wgts@', 'wgts:hunter2@')], { encoding: 'utf8' });
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^wireguard-ts: cannot open the store postgres:\/\/wgts:\*\*\*@localhost\/nosuchdb\?\S+: database "nosuchdb" does not exist; nothing was changed\n$/);
  assert.doesNotMatch(missing.stderr, /hunter2/);
  await store.createToken('t', hashSecret('wgts_cluster_test'));
  const res = await fetch(`http://127.0.0.1:${nodes[0]!.daemon.webPort}/api/v1/cluster`, { headers: { authorization: 'Bearer wgts_cluster_test' } });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { nodes: { name: string; up: boolean; lag: number }[] };
  assert.deepEqual(body.nodes.map((n) => [n.name, n.up, n.lag]), [['a', true, 0], ['b', true, 0], ['c', true, 0]]);
});

test('the web page lists the cluster nodes', { skip: skip || noChromium, timeout: 60_000 }, async (t) => {
  const { store, nodes } = await cluster(t);
  await store.createAdmin('admin', await argon2Hash('correct horse battery'));
  const profile = mkdtempSync(join(tmpdir(), 'wgts-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
  t.after(async () => {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  await page.goto(`http://127.0.0.1:${nodes[0]!.daemon.webPort}/`);
  await page.fill('#login input[name=username]', 'admin');
  await page.fill('#login input[name=password]', 'correct horse battery');
  await page.click('#login button[type=submit]');
  await page.locator('#nodes').waitFor();
  const rows = await page.locator('#node-rows tr').allInnerTexts();
  assert.deepEqual(rows.map((r) => r.split('\t').slice(0, 3)), [['a', 'up', '1'], ['b', 'up', '1'], ['c', 'up', '1']]);
});

test('a node whose feed connection drops catches up from its last sequence', { skip, timeout: 60_000 }, async (t) => {
  const { url, store, server, nodes } = await cluster(t);
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    // Cut every LISTEN connection, then change the store before the nodes reconnect: no
    // notification will ever say so, and the safety poll is 5 s away.
    await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where query ilike 'listen %' and pid <> pg_backend_pid()`);
    const bob = await createClient(store, server, { name: 'bob' });
    const took = await until('bob on every node', () => nodes.every((n) => has(n, bob.publicKey)), 10_000);
    assert.ok(took < 4000, `caught up in ${took} ms`);
  } finally {
    await admin.end();
  }
});

test('PostgreSQL restarted under the nodes: devices keep their peers, the nodes converge after', { skip, timeout: 90_000 }, async (t) => {
  const { store, server, nodes } = await cluster(t);
  const carol = await createClient(store, server, { name: 'carol' });
  await until('carol everywhere', () => nodes.every((n) => has(n, carol.publicKey)));
  pgServer!.stop();
  await new Promise((r) => setTimeout(r, 3000));
  for (const n of nodes) assert.equal(n.device.peers.size, 2, `node ${n.name} still serves its clients while the database is down`);
  pgServer!.start();
  // The test's own pool reconnects on its next query.
  const dave = await createClient(store, server, { name: 'dave' });
  const removed = await store.updateClient(carol.id, { enabled: false });
  assert.ok(removed);
  await until('the nodes converged', () => nodes.every((n) => has(n, dave.publicKey) && !has(n, carol.publicKey)), 40_000);
  const last = await store.lastChange();
  await until('heartbeats again', async () => (await clusterStatus(store, Date.now())).every((n) => n.up && n.appliedSeq === last), 15_000);
});

test('a reader behind the pruned feed resyncs in full and keeps unchanged peers', { skip }, async () => {
  const url = await pgServer!.createDatabase(`cluster${++dbs}`);
  const store = await openPostgresStore(url);
  try {
    const server: ServerRecord = { privateKey: newKeyPair().privateKey, address: '10.8.0.1/24', listenPort: 51820, mtu: 1420, extra: [], createdAt: Date.now() };
    await store.createServer(server);
    const kept = await createClient(store, server, { name: 'kept' });
    const sets: string[][] = [];
    const device = { set: async (lines: readonly string[]) => void sets.push([...lines]), peers: async () => [] };
    const r = new Reconciler(store, device, Date.now, () => undefined, 'applied@test');
    await r.fullSync(server);
    const gone = await createClient(store, server, { name: 'gone' });
    await store.deleteClient(gone.id);
    const late = await createClient(store, server, { name: 'late' });
    await store.pruneChanges(Date.now() + 1000);
    assert.ok(r.appliedSeq < (await store.prunedThrough()));
    sets.length = 0;
    await r.follow();
    assert.equal(r.appliedSeq, await store.lastChange());
    assert.equal(sets.length, 1);
    const text = sets[0]!.join('\n');
    assert.match(text, new RegExp(`public_key=${keyHex(late.publicKey)}`));
    assert.doesNotMatch(text, new RegExp(keyHex(kept.publicKey)), 'an unchanged peer is left alone (its session lives on)');
    assert.doesNotMatch(text, /replace_peers/);
  } finally {
    await store.close();
  }
});
