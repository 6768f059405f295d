// Grouping a send batch into UDP GSO runs (src/net/gso.ts), against the kernel's rules, plus a
// seeded check that the runs always cover the batch exactly and never break a rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EndpointTable, endpointEquals, parseEndpoint } from '../src/net/endpoint.js';
import { gsoRunLength, MAX_PAYLOAD_V4, MAX_PAYLOAD_V6, UDP_MAX_SEGMENTS } from '../src/net/gso.js';
import { seededRandom } from './helpers.js';

/** Rows 0..2 are three endpoints: v4, another v4 port, v6. */
function endpoints(): EndpointTable {
  const t = new EndpointTable(3);
  parseEndpoint('192.0.2.1:51820', t, 0);
  parseEndpoint('192.0.2.1:51821', t, 1);
  parseEndpoint('[2001:db8::1]:51820', t, 2);
  return t;
}

/** The runs of a whole batch, as lists of run lengths. */
function runs(lens: number[], rows: number[], to = endpoints()): number[] {
  const l = Int32Array.from(lens);
  const r = Uint32Array.from(rows);
  const out: number[] = [];
  for (let k = 0; k < lens.length;) {
    const n = gsoRunLength(l, k, lens.length, to, r);
    out.push(n);
    k += n;
  }
  return out;
}

const same = (n: number, row = 0): number[] => Array<number>(n).fill(row);

test('GSO runs: equal datagrams to one endpoint form one run; a lone datagram is a run of 1', () => {
  assert.deepEqual(runs([1452, 1452, 1452], same(3)), [3]);
  assert.deepEqual(runs([1452], same(1)), [1]);
});

test('GSO runs: a different endpoint (address, port or family) starts a new run', () => {
  assert.deepEqual(runs([100, 100, 100, 100, 100], [0, 0, 1, 1, 2]), [2, 2, 1]);
  assert.deepEqual(runs([100, 100, 100], [0, 1, 0]), [1, 1, 1]);
});

test('GSO runs: a shorter last datagram joins and ends the run; a short one in the middle ends it too', () => {
  assert.deepEqual(runs([1452, 1452, 700], same(3)), [3]);
  assert.deepEqual(runs([1452, 700, 1452, 1452], same(4)), [2, 2]);
  assert.deepEqual(runs([700, 700, 700, 32], same(4)), [4]);
});

test('GSO runs: a longer datagram cannot follow (every segment but the last has the first one\'s size)', () => {
  assert.deepEqual(runs([700, 1452, 1452], same(3)), [1, 2]);
  assert.deepEqual(runs([32, 1452], same(2)), [1, 1]);
});

test(`GSO runs: at most ${UDP_MAX_SEGMENTS} segments per run`, () => {
  assert.deepEqual(runs(Array<number>(130).fill(100), same(130)), [64, 64, 2]);
  assert.deepEqual(runs(Array<number>(64).fill(100), same(64)), [64]);
});

test('GSO runs: the whole payload of a run fits one IP packet (IPv4 65507 bytes, IPv6 65527)', () => {
  const v4 = Math.floor(MAX_PAYLOAD_V4 / 1452);
  assert.equal(v4, 45);
  assert.deepEqual(runs(Array<number>(100).fill(1452), same(100)), [v4, v4, 100 - 2 * v4]);
  // Exactly at the limit still fits; one byte more does not.
  assert.deepEqual(runs([MAX_PAYLOAD_V4 - 1000, 1000], same(2)), [2]);
  assert.deepEqual(runs([MAX_PAYLOAD_V4 - 999, 1000], same(2)), [1, 1]);
  assert.deepEqual(runs([32755, 32752], same(2)), [2]);
  assert.deepEqual(runs([32755, 32753], same(2)), [1, 1]);
  // IPv6 allows 20 bytes more.
  assert.deepEqual(runs([32765, 32762], same(2, 2)), [2]);
  assert.deepEqual(runs([32765, 32763], same(2, 2)), [1, 1]);
  assert.equal(MAX_PAYLOAD_V6 - MAX_PAYLOAD_V4, 20);
});

test('GSO runs: without rows, datagram k goes to row k', () => {
  const to = new EndpointTable(4);
  for (let k = 0; k < 4; k++) parseEndpoint(k < 3 ? '192.0.2.1:1' : '192.0.2.2:1', to, k);
  const lens = Int32Array.of(500, 500, 500, 500);
  assert.equal(gsoRunLength(lens, 0, 4, to), 3);
  assert.equal(gsoRunLength(lens, 3, 4, to), 1);
});

test('GSO runs: seeded random batches are covered exactly and every run obeys the kernel rules', () => {
  const rnd = seededRandom(42);
  const to = endpoints();
  for (let round = 0; round < 500; round++) {
    const count = 1 + Math.floor(rnd() * 128);
    const lens = Int32Array.from({ length: count }, () => (rnd() < 0.7 ? 1452 : rnd() < 0.5 ? 32 : 32 + Math.floor(rnd() * 1500)));
    const rows = Uint32Array.from({ length: count }, () => (rnd() < 0.8 ? 0 : Math.floor(rnd() * 3)));
    for (let k = 0; k < count;) {
      const n = gsoRunLength(lens, k, count, to, rows);
      assert.ok(n >= 1 && n <= UDP_MAX_SEGMENTS && k + n <= count);
      let total = 0;
      for (let j = k; j < k + n; j++) {
        assert.ok(endpointEquals(to, rows[k]!, to, rows[j]!));
        assert.ok(j === k + n - 1 ? lens[j]! <= lens[k]! : lens[j] === lens[k]);
        total += lens[j]!;
      }
      assert.ok(total <= (to.family[rows[k]!] === 4 ? MAX_PAYLOAD_V4 : MAX_PAYLOAD_V6));
      k += n;
    }
  }
});

test('GSO runs: the same endpoint from another sticky source starts a new run (one pktinfo per message)', () => {
  const to = new EndpointTable(4);
  for (let k = 0; k < 4; k++) parseEndpoint('192.0.2.1:51820', to, k);
  // Rows 2 and 3 leave from 192.0.2.9 (v4-mapped), rows 0 and 1 from the routed address.
  for (const k of [2, 3]) to.src.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 9], 16 * k);
  const lens = Int32Array.from([1452, 1452, 1452, 1452]);
  assert.equal(gsoRunLength(lens, 0, 4, to), 2);
  assert.equal(gsoRunLength(lens, 2, 4, to), 2);
  to.clearSource(3);
  assert.equal(gsoRunLength(lens, 2, 4, to), 1, 'a cleared source is another path');
});
