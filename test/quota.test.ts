// The monthly quota across a month boundary, on the daemon's clock (the Reconciler takes `now`):
// a client over its quota stays off the device up to the last millisecond of the month, is put
// back by the first enforce() of the next month (the UTC calendar month of monthOf()), and its
// new month's usage starts from zero.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientState, createClient } from '../src/server/clients.js';
import { keyHex, newKeyPair } from '../src/server/keys.js';
import { Reconciler } from '../src/server/reconciler.js';
import { monthOf, type ServerRecord } from '../src/store/repository.js';
import { openSqliteStore } from '../src/store/sqlite.js';

test('a client over its monthly quota is off the device until the next month, then back', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wgts-quota-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = await openSqliteStore(join(dir, 'wg0.db'));
  t.after(() => store.close());
  const server: ServerRecord = { privateKey: newKeyPair().privateKey, address: '10.8.0.1/24', listenPort: 51820, mtu: 1420, extra: [], createdAt: 0 };
  await store.createServer(server);
  const capped = await createClient(store, server, { name: 'capped', quotaBytes: 1000 });
  const free = await createClient(store, server, { name: 'free' });

  const endOfJanuary = Date.UTC(2026, 0, 31, 23, 59, 59, 999);
  let now = Date.UTC(2026, 0, 31, 12);
  const sets: string[] = [];
  const device = { set: async (lines: readonly string[]) => void sets.push(lines.join('\n')), peers: async () => [] };
  const r = new Reconciler(store, device, () => now);
  await r.fullSync(server);
  assert.ok(r.isOnDevice(capped.id) && r.isOnDevice(free.id), 'under quota: both on the device');

  await store.addTraffic(now, [{ clientId: capped.id, rx: 600, tx: 400 }, { clientId: free.id, rx: 5000, tx: 5000 }]);
  await r.enforce();
  assert.ok(!r.isOnDevice(capped.id), 'at its quota: off the device');
  assert.match(sets.at(-1)!, new RegExp(`public_key=${keyHex(capped.publicKey)}\nremove=true`));
  assert.ok(r.isOnDevice(free.id), 'a client without a quota stays');

  now = endOfJanuary;
  await r.enforce();
  assert.ok(!r.isOnDevice(capped.id), 'still off in the last millisecond of the month');
  const used = (at: number) => (store.monthlyUsage(monthOf(at), [capped.id])).then((m) => (m.get(capped.id)?.rx ?? 0) + (m.get(capped.id)?.tx ?? 0));
  assert.equal(clientState(capped, now, await used(now)), 'over-quota');

  now = endOfJanuary + 1;
  await r.enforce();
  assert.ok(r.isOnDevice(capped.id), 'the next month: back on the device');
  assert.match(sets.at(-1)!, new RegExp(`public_key=${keyHex(capped.publicKey)}\n(?!remove)`));
  assert.equal(await used(now), 0, "the new month's usage starts from zero");
  assert.equal(clientState(capped, now, await used(now)), 'active');
});
