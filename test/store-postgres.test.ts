// The store on PostgreSQL (src/store/postgres.ts) against a throw-away server (pg-fixture.ts):
// the SQLite migrations and queries as they are, three connections standing for three nodes
// allocating 3 x 100 addresses at once without a duplicate, the feed's order and NOTIFY, a
// pruned feed that says so, node heartbeats, and the clients search.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { FEED_CHANNEL, describeStore, openPostgresStore } from '../src/store/postgres.js';
import type { Repository, ServerRecord } from '../src/store/repository.js';
import { createClient } from '../src/server/clients.js';
import { newKeyPair } from '../src/server/keys.js';
import { skipWithoutPostgres, startPostgres, type TestPostgres } from './pg-fixture.js';
import { checkSearchAgainstReference } from './search-reference.js';

const skip = skipWithoutPostgres;
let server: TestPostgres | undefined;
let dbs = 0;

before(() => {
  if (!skip) server = startPostgres();
});
after(() => server?.close());

async function fresh(): Promise<{ url: string; open: () => Promise<Repository> }> {
  const url = await server!.createDatabase(`store${++dbs}`);
  return { url, open: () => openPostgresStore(url) };
}

const serverRecord = (address = '10.8.0.1/16'): ServerRecord => ({
  privateKey: newKeyPair().privateKey, address, listenPort: 51820, mtu: 1420, extra: [], createdAt: Date.now(),
});

test('the migrations and queries of SQLite work on PostgreSQL', { skip }, async () => {
  const { open } = await fresh();
  const store = await open();
  try {
    const s = serverRecord();
    assert.deepEqual(await store.createServer(s), { server: s, created: true });
    const other = serverRecord();
    assert.equal((await store.createServer(other)).created, false, 'a second node keeps the first key');
    assert.equal((await store.getServer())!.privateKey, s.privateKey);
    const a = await createClient(store, s, { name: 'alice' });
    const b = await createClient(store, s, { name: 'bob', dns: ['1.1.1.1'] });
    assert.equal(a.address, (10 << 24 | 8 << 16 | 2) >>> 0);
    assert.equal(b.address, a.address! + 1);
    await store.deleteClient(a.id);
    const c = await createClient(store, s, { name: 'carol' });
    assert.equal(c.address, a.address, 'the lowest free address is reused');
    await assert.rejects(createClient(store, s, { name: 'bob' }), (e: Error & { field?: string }) => e.field === 'name');
    assert.deepEqual((await store.getClientByName('bob'))!.dns, ['1.1.1.1']);
    const upd = await store.updateClient(b.id, { enabled: false, expiresAt: 123, allowedIps: ['10.8.0.3/32', '192.168.5.0/24'] });
    assert.equal(upd!.enabled, false);
    assert.deepEqual(upd!.allowedIps, ['10.8.0.3/32', '192.168.5.0/24']);
    const list = await store.listClients({ search: 'CAR', sort: 'name' });
    assert.deepEqual(list.items.map((x) => x.name), ['carol']);
    assert.equal(list.total, 1);
    await store.addTraffic(Date.now(), [{ clientId: b.id, rx: 10, tx: 20 }]);
    await store.addTraffic(Date.now(), [{ clientId: b.id, rx: 1, tx: 2 }]);
    const used = await store.monthlyUsage(new Date().toISOString().slice(0, 7));
    assert.deepEqual(used.get(b.id), { rx: 11, tx: 22 });
    const admin = await store.createAdmin('root', 'hash');
    await store.createSession('sid', admin.id, Date.now() + 1000);
    assert.deepEqual(await store.getSession('sid', Date.now()), { adminId: admin.id });
    await store.createToken('ci', 'th');
    assert.equal((await store.useToken('th', 5))!.name, 'ci');
    assert.equal(await store.revokeToken('ci', 6), true);
    assert.equal(await store.useToken('th', 7), undefined);
    const feed = await store.changesSince(0, 100);
    assert.deepEqual(feed.map((x) => x.kind), ['create', 'create', 'delete', 'create', 'update']);
    assert.deepEqual(feed.map((x) => x.seq), [...feed.map((x) => x.seq)].sort((x, y) => x - y));
    assert.equal(await store.lastChange(), feed.at(-1)!.seq);
  } finally {
    await store.close();
  }
});

test('the clients search finds what the naive reference finds, through renames and deletions', { skip }, async () => {
  const store = await (await fresh()).open();
  try {
    await checkSearchAgainstReference(store, 50);
  } finally {
    await store.close();
  }
});

test('three nodes adding 100 clients each at once never share an address', { skip, timeout: 120_000 }, async () => {
  const { open } = await fresh();
  const nodes = await Promise.all([open(), open(), open()]);
  try {
    const s = serverRecord('10.9.0.1/22');
    await nodes[0]!.createServer(s);
    const made = await Promise.all(nodes.map(async (store, n) => {
      const out: number[] = [];
      // Ten at a time per node: more writers in flight than a CLI would ever have.
      for (let batch = 0; batch < 10; batch++) {
        const batchMade = await Promise.all(Array.from({ length: 10 }, (_, i) => createClient(store, s, { name: `n${n}-${batch}-${i}` })));
        out.push(...batchMade.map((c) => c.address!));
      }
      return out;
    }));
    const all = made.flat();
    assert.equal(all.length, 300);
    assert.equal(new Set(all).size, 300, 'no address handed out twice');
    const first = (10 << 24 | 9 << 16 | 2) >>> 0;
    assert.deepEqual([...all].sort((a, b) => a - b), Array.from({ length: 300 }, (_, i) => first + i), 'the lowest 300 addresses, no gap');
    const feed = await nodes[1]!.changesSince(0, 1000);
    assert.equal(feed.length, 300);
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
  }
});

test('every change is announced on the channel after it commits, in order', { skip }, async () => {
  const { url, open } = await fresh();
  const store = await open();
  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  try {
    const heard: number[] = [];
    listener.on('notification', (n) => heard.push(Number(n.payload)));
    await listener.query(`listen ${FEED_CHANNEL}`);
    const s = serverRecord();
    await store.createServer(s);
    const a = await createClient(store, s, { name: 'a' });
    await store.updateClient(a.id, { enabled: false });
    await store.deleteClient(a.id);
    const deadline = Date.now() + 5000;
    while (heard.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(heard, (await store.changesSince(0, 10)).map((c) => c.seq));
  } finally {
    await listener.end();
    await store.close();
  }
});

test('pruning the feed keeps its head and records how far it went', { skip }, async () => {
  const { open } = await fresh();
  const store = await open();
  try {
    const s = serverRecord();
    await store.createServer(s);
    for (const name of ['a', 'b', 'c']) await createClient(store, s, { name });
    const last = await store.lastChange();
    await store.pruneChanges(Date.now() + 1000);
    assert.equal(await store.prunedThrough(), last - 1);
    assert.equal(await store.lastChange(), last);
    assert.deepEqual((await store.changesSince(0, 10)).map((c) => c.seq), [last]);
  } finally {
    await store.close();
  }
});

test('node heartbeats are upserted by name', { skip }, async () => {
  const { open } = await fresh();
  const store = await open();
  try {
    const n = { name: 'a', startedAt: 1, heartbeatAt: 2, appliedSeq: 3, peers: 4, online: 5, rx: 2 ** 40, tx: 7 };
    await store.saveNode(n);
    await store.saveNode({ ...n, heartbeatAt: 9 });
    await store.saveNode({ ...n, name: 'b' });
    assert.deepEqual(await store.listNodes(), [{ ...n, heartbeatAt: 9 }, { ...n, name: 'b' }]);
  } finally {
    await store.close();
  }
});

test('a store URL is shown without its password', () => {
  assert.equal(describeStore('postgres://wg:secret@db.example:5432/wg'), 'postgres://wg:***@db.example:5432/wg');
  assert.equal(describeStore('postgres://db.example/wg'), 'postgres://db.example/wg');
});
