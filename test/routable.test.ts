// Cluster-routable receiver indices (src/device/routable.ts): the keyed permutation is a
// bijection that every node holding the key inverts and nobody else can predict, keypair slots
// come out of the index as for random ones, and the limits on initiations for unknown indices
// hold per client and globally.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { IndexPermutation, PeersById, RoutedInitiations, ROUTED_INITIATIONS_PER_S, ID_BITS, SESSION_BITS, routingId } from '../src/device/routable.js';
import { Keypairs } from '../src/device/keypairs.js';
import { Reclaimer } from '../src/device/reclaim.js';
import { Tables } from '../src/queues/tables.js';
import { REKEY_TIMEOUT } from '../src/handshake/constants.js';

const keyed = (key: Uint8Array): IndexPermutation => {
  const p = new IndexPermutation();
  p.setKey(key);
  return p;
};

test('the permutation is a bijection: 200,000 consecutive and 200,000 random inputs give distinct outputs that invert', () => {
  const p = keyed(randomBytes(32));
  const seen = new Set<number>();
  const inputs = [...Array.from({ length: 200_000 }, (_, i) => i), ...Array.from({ length: 200_000 }, () => randomBytes(4).readUInt32LE())];
  let distinctInputs = 0;
  const seenIn = new Set<number>();
  for (const x of inputs) {
    if (seenIn.has(x)) continue;
    seenIn.add(x);
    distinctInputs++;
    const y = p.forward(x);
    assert.ok(Number.isInteger(y) && y >= 0 && y < 2 ** 32, `32-bit output ${y}`);
    assert.equal(p.inverse(y), x);
    seen.add(y);
  }
  assert.equal(seen.size, distinctInputs, 'no two inputs share an output');
  for (const y of [0, 1, 0x7fffffff, 0x80000000, 0xffffffff]) assert.equal(p.forward(p.inverse(y)), y);
});

test('an index names its routing id to every node with the key, and looks unrelated to it otherwise', () => {
  const key = randomBytes(32);
  const a = keyed(key);
  const b = keyed(Uint8Array.from(key));
  const other = keyed(randomBytes(32));
  let differ = 0;
  const ids = new Set<number>();
  for (let i = 0; i < 10_000; i++) {
    const id = (i * 104729) & ((1 << ID_BITS) - 1);
    const session = i & ((1 << SESSION_BITS) - 1);
    const index = a.index(id, session);
    assert.equal(b.idOf(index), id, 'another node with the same key reads the id');
    if (other.index(id, session) !== index) differ++;
    ids.add(index >>> SESSION_BITS);
  }
  assert.ok(differ >= 9_990, `another key gives other indices (${differ}/10000 differ)`);
  // Sequential ids would share their top bits if the index were not scrambled.
  assert.ok(ids.size > 9_000, `the index's top bits are not the id (${ids.size} distinct)`);
  // One client's sessions spread over the whole space.
  const sessions = new Set(Array.from({ length: 1 << SESSION_BITS }, (_, s) => a.index(7, s) >>> 24));
  assert.ok(sessions.size > 200, `sessions of one id spread (${sessions.size} distinct top bytes)`);
});

test('setKey(null) forgets the tables; the routing id is deterministic and uses every byte of the key', () => {
  const p = keyed(randomBytes(32));
  p.setKey(null);
  assert.equal(p.keyed, false);
  assert.equal(p.forward(0x12345678), 0x12345678, 'zeroed round tables: an even number of plain swaps');
  const k = randomBytes(32);
  assert.equal(routingId(k), routingId(Uint8Array.from(k)));
  assert.ok(routingId(k) >= 0 && routingId(k) < 1 << ID_BITS);
  const last = Uint8Array.from(k);
  last[31]! ^= 1;
  assert.notEqual(routingId(last), routingId(k), 'a change in the last byte changes the id');
});

test('PeersById keeps chains per id through adds and removals', () => {
  const byId = new PeersById(16);
  byId.add(5, 1);
  byId.add(5, 2);
  byId.add(5, 3);
  byId.add(9, 4);
  assert.deepEqual(byId.slots(5).sort(), [1, 2, 3]);
  byId.remove(5, 2);
  assert.deepEqual(byId.slots(5).sort(), [1, 3]);
  byId.remove(5, 3);
  byId.remove(5, 1);
  assert.deepEqual(byId.slots(5), []);
  assert.deepEqual(byId.slots(9), [4]);
});

test('routable keypair indices: the slot is in the low bits, the id reads back, every index unique; plain ones stay random', () => {
  const capacity = 64;
  const t = Tables.create(4, capacity, 1);
  const p = keyed(randomBytes(32));
  const kps = new Keypairs(t, new Reclaimer(t.epochs), p);
  const indices = new Set<number>();
  for (let i = 1; i < capacity; i++) {
    const id = i % 3;
    const index = kps.reserve(i % 4, id);
    assert.ok(index >= 0, `slot ${i} reserved`);
    assert.equal(p.idOf(index), id, 'the index names the peer');
    assert.equal(kps.slotOf(index), index & t.keypairs.mask);
    indices.add(index);
  }
  assert.equal(indices.size, capacity - 1);
  assert.equal(kps.reserve(0, 1), -1, 'the table is full');
  const plainTables = Tables.create(4, capacity, 1);
  const plain = new Keypairs(plainTables, new Reclaimer(plainTables.epochs));
  const uppers = new Set<number>();
  for (let i = 1; i < capacity; i++) {
    const index = plain.reserve(0);
    assert.equal(index & 63, i, 'without a permutation: slots in order in the low bits');
    uppers.add(index >>> 6);
  }
  assert.ok(uppers.size > capacity - 3, 'random bits above them');
});

test('initiations for unknown indices: one per client per REKEY_TIMEOUT, at most ROUTED_INITIATIONS_PER_S in all', () => {
  const limits = new RoutedInitiations();
  const t0 = 1_000_000;
  assert.equal(limits.allow(t0 - 1000, t0), false, 'an initiation went to the client 1 s ago');
  assert.equal(limits.allow(t0 - REKEY_TIMEOUT * 1000 - 1, t0), true, 'the last one is older than REKEY_TIMEOUT');
  let allowed = 1;
  for (let i = 0; i < 1000; i++) if (limits.allow(-Infinity, t0)) allowed++;
  assert.equal(allowed, ROUTED_INITIATIONS_PER_S, 'a burst of forged indices gets the budget and no more');
  let later = 0;
  for (let ms = 1; ms <= 2000; ms++) if (limits.allow(-Infinity, t0 + ms)) later++;
  assert.ok(later >= 2 * ROUTED_INITIATIONS_PER_S - 1 && later <= 2 * ROUTED_INITIATIONS_PER_S, `${later} in the next 2 s`);
});
