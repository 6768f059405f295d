import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import assert from 'node:assert/strict';
import {
  AllowedIPs, ALLOWEDIPS_MAX_PEERS, lookupV4In, lookupV6In, tablesFromShared, type AllowedIPsTables,
} from '../src/allowedips/allowedips.js';
import { V4, V6 } from '../src/allowedips/lookup.js';
import { seededRandom } from './helpers.js';

const ip4 = (a: number, b: number, c: number, d: number): Uint8Array => Uint8Array.of(a, b, c, d);

function ip6(a: number, b: number, c: number, d: number): Uint8Array {
  const out = new Uint8Array(16);
  const v = new DataView(out.buffer);
  [a, b, c, d].forEach((w, i) => v.setUint32(i * 4, w >>> 0));
  return out;
}

const lookup = (t: AllowedIPs, addr: Uint8Array): number =>
  addr.length === 4 ? t.lookupV4(addr, 0) : t.lookupV6(addr, 0);

const fmt = (e: { addr: Uint8Array; cidr: number }): string => `${Buffer.from(e.addr).toString('hex')}/${e.cidr}`;

/**
 * Walks both tries of a table (live or published) and checks the shape invariants: children extend
 * their parent's prefix on the side they hang, keys carry no host bits, glue nodes join exactly
 * two subtrees, and the reachable node / prefix counts are the expected ones.
 */
function checkTables(tables: AllowedIPsTables, wantNodes: number, wantOwned: number): void {
  let nodes = 0, owned = 0;
  for (const [trie, L] of [[tables.v4, V4], [tables.v6, V6]] as const) {
    const d = trie.nodes, bits = L.words * 32;
    const bit = (n: number, c: number): number => (d[n * L.stride + (c >>> 5)] >>> (31 - (c & 31))) & 1;
    const cidr = (n: number): number => d[n * L.stride + L.meta] & 0xff;
    const stack = trie.root === -1 ? [] : [trie.root];
    while (stack.length > 0) {
      const n = stack.pop()!;
      nodes++;
      const c = cidr(n);
      const children = [d[n * L.stride + L.child], d[n * L.stride + L.child + 1]];
      assert.ok(c <= bits);
      for (let b = c; b < bits; b++) assert.equal(bit(n, b), 0, 'host bits in a node key');
      if (d[n * L.stride + L.meta] >> 8 !== 0) owned++;
      else assert.ok(children[0] !== -1 && children[1] !== -1, 'glue node without two children');
      children.forEach((ch, side) => {
        if (ch === -1) return;
        assert.ok(cidr(ch) > c, 'child prefix not longer than parent');
        for (let b = 0; b < c; b++) assert.equal(bit(ch, b), bit(n, b), 'child outside parent prefix');
        assert.equal(bit(ch, c), side, 'child on the wrong side');
        stack.push(ch);
      });
    }
  }
  assert.equal(nodes, wantNodes);
  assert.equal(owned, wantOwned);
}

const checkInvariants = (t: AllowedIPs): void => checkTables(t.exportTables(), t.nodeCount, t.count);

test('kernel selftest: longest-prefix match, replacement, masking', () => {
  const t = new AllowedIPs();
  const [a, b, c, d, e, f, g, h] = [0, 1, 2, 3, 4, 5, 6, 7];
  t.insert(a, ip4(192, 168, 4, 0), 24);
  t.insert(b, ip4(192, 168, 4, 4), 32);
  t.insert(c, ip4(192, 168, 0, 0), 16);
  t.insert(d, ip4(192, 95, 5, 64), 27);
  t.insert(c, ip4(192, 95, 5, 65), 27); // replaces the previous entry; needs masking
  t.insert(d, ip6(0x26075300, 0x60006b00, 0, 0xc05f0543), 128);
  t.insert(c, ip6(0x26075300, 0x60006b00, 0, 0), 64);
  t.insert(e, ip4(0, 0, 0, 0), 0);
  t.insert(e, ip6(0, 0, 0, 0), 0);
  t.insert(f, ip6(0, 0, 0, 0), 0); // replaces the previous entry
  t.insert(g, ip6(0x24046800, 0, 0, 0), 32);
  t.insert(h, ip6(0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef), 64); // needs masking
  t.insert(a, ip6(0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef), 128);
  t.insert(c, ip6(0x24446800, 0x40e40800, 0xdeaebeef, 0xdefbeef), 128);
  t.insert(b, ip6(0x24446800, 0xf0e40800, 0xeeaebeef, 0), 98);
  t.insert(g, ip4(64, 15, 112, 0), 20);
  t.insert(h, ip4(64, 15, 123, 211), 25); // needs masking
  t.insert(a, ip4(10, 0, 0, 0), 25);
  t.insert(b, ip4(10, 0, 0, 128), 25);
  t.insert(a, ip4(10, 1, 0, 0), 30);
  t.insert(b, ip4(10, 1, 0, 4), 30);
  t.insert(c, ip4(10, 1, 0, 8), 29);
  t.insert(d, ip4(10, 1, 0, 16), 29);
  checkInvariants(t);

  const cases: Array<[number, Uint8Array]> = [
    [a, ip4(192, 168, 4, 20)], [a, ip4(192, 168, 4, 0)], [b, ip4(192, 168, 4, 4)],
    [c, ip4(192, 168, 200, 182)], [c, ip4(192, 95, 5, 68)], [e, ip4(192, 95, 5, 96)],
    [d, ip6(0x26075300, 0x60006b00, 0, 0xc05f0543)], [c, ip6(0x26075300, 0x60006b00, 0, 0xc02e01ee)],
    [f, ip6(0x26075300, 0x60006b01, 0, 0)], [g, ip6(0x24046800, 0x40040806, 0, 0x1006)],
    [g, ip6(0x24046800, 0x40040806, 0x1234, 0x5678)], [f, ip6(0x240467ff, 0x40040806, 0x1234, 0x5678)],
    [f, ip6(0x24046801, 0x40040806, 0x1234, 0x5678)], [h, ip6(0x24046800, 0x40040800, 0x1234, 0x5678)],
    [h, ip6(0x24046800, 0x40040800, 0, 0)], [h, ip6(0x24046800, 0x40040800, 0x10101010, 0x10101010)],
    [a, ip6(0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef)],
    [g, ip4(64, 15, 116, 26)], [g, ip4(64, 15, 127, 3)], [g, ip4(64, 15, 123, 1)],
    [h, ip4(64, 15, 123, 128)], [h, ip4(64, 15, 123, 129)],
    [a, ip4(10, 0, 0, 52)], [b, ip4(10, 0, 0, 220)], [a, ip4(10, 1, 0, 2)],
    [b, ip4(10, 1, 0, 6)], [c, ip4(10, 1, 0, 10)], [d, ip4(10, 1, 0, 20)],
  ];
  for (const [want, addr] of cases) assert.equal(lookup(t, addr), want, Buffer.from(addr).toString('hex'));

  const hosts = [ip4(1, 0, 0, 0), ip4(64, 0, 0, 0), ip4(128, 0, 0, 0), ip4(192, 0, 0, 0), ip4(255, 0, 0, 0)];
  for (const x of hosts) t.insert(a, x, 32);
  t.removeByPeer(a);
  for (const x of hosts) assert.notEqual(lookup(t, x), a);
  checkInvariants(t);
});

test('kernel selftest: removal of single prefixes', () => {
  const t = new AllowedIPs();
  const [a, b] = [0, 1];
  const v6a = ip6(0x24446801, 0x40e40800, 0xdeaebeef, 0xdefbeef);
  const v6b = ip6(0x24446800, 0xf0e40800, 0xeeaebeef, 0);
  const v6bHost = ip6(0x24446800, 0xf0e40800, 0xeeaebeef, 0x10101010);
  t.insert(a, ip4(1, 0, 0, 0), 32);
  t.insert(a, ip4(192, 0, 0, 0), 24);
  t.insert(a, v6a, 128);
  t.insert(a, v6b, 98);
  assert.equal(lookup(t, ip4(1, 0, 0, 0)), a);
  assert.equal(lookup(t, ip4(192, 0, 0, 1)), a);
  assert.equal(lookup(t, v6a), a);
  assert.equal(lookup(t, v6bHost), a);

  assert.equal(t.remove(a, ip4(192, 0, 0, 0), 32), false, 'must be an exact match to remove');
  assert.equal(lookup(t, ip4(192, 0, 0, 1)), a);
  assert.equal(t.remove(b, ip4(192, 0, 0, 0), 24), false, 'a different peer has no effect');
  assert.equal(lookup(t, ip4(192, 0, 0, 1)), a);
  assert.throws(() => t.remove(b, ip4(192, 0, 0, 0), 33), RangeError);
  assert.equal(lookup(t, ip4(192, 0, 0, 1)), a);
  assert.equal(t.remove(a, ip4(192, 0, 0, 0), 24), true);
  assert.equal(lookup(t, ip4(192, 0, 0, 1)), -1);
  assert.equal(t.remove(a, ip4(1, 0, 0, 0), 32), true);
  assert.equal(lookup(t, ip4(1, 0, 0, 0)), -1);

  assert.equal(t.remove(a, v6a, 96), false, 'must be an exact match to remove');
  assert.equal(lookup(t, v6a), a);
  assert.equal(t.remove(b, v6a, 128), false, 'a different peer has no effect');
  assert.equal(lookup(t, v6a), a);
  assert.throws(() => t.remove(a, v6a, 129), RangeError);
  assert.equal(lookup(t, v6a), a);
  assert.equal(t.remove(a, v6a, 128), true);
  assert.equal(lookup(t, v6a), -1);
  assert.equal(t.remove(b, v6b, 98), false, 'must match the peer to remove');
  assert.equal(lookup(t, v6bHost), a);
  assert.equal(t.remove(a, v6b, 98), true);
  assert.equal(lookup(t, v6bHost), -1);
  assert.equal(t.count, 0);
  assert.equal(t.nodeCount, 0);
});

test('kernel selftest: removing a peer that owns nested prefixes, deep v6 chains', () => {
  const t = new AllowedIPs();
  t.insert(0, ip4(192, 168, 0, 0), 16);
  t.insert(0, ip4(192, 168, 0, 0), 24);
  t.removeByPeer(0);
  assert.equal(lookup(t, ip4(192, 168, 0, 1)), -1);
  assert.equal(t.nodeCount, 0);

  // The kernel's case: for i < 64, ff..ff followed by (~0 << i), and (~0 << i) followed by zeros.
  // Every key shares a long prefix with its neighbours, so the trie grows ~128 levels deep.
  const inserted: Uint8Array[] = [];
  for (let i = 0; i < 64; i++) {
    const part = ~0n << BigInt(i) & 0xffffffffffffffffn;
    const hi = new Uint8Array(16).fill(0xff);
    new DataView(hi.buffer).setBigUint64(8, part);
    const lo = new Uint8Array(16);
    new DataView(lo.buffer).setBigUint64(0, part);
    inserted.push(hi, lo);
  }
  inserted.push(new Uint8Array(16));
  inserted.forEach((x, i) => t.insert(i, x, 128));
  checkInvariants(t);
  const distinct = new Map(inserted.map((x, i) => [Buffer.from(x).toString('hex'), i]));
  assert.equal(t.count, distinct.size);
  for (const [hex, peer] of distinct) assert.equal(lookup(t, Buffer.from(hex, 'hex')), peer);
  for (const peer of distinct.values()) t.removeByPeer(peer);
  assert.equal(t.count, 0);
  assert.equal(t.nodeCount, 0);
});

test('kernel selftest: a peer lists its prefixes masked, in insertion order', () => {
  const t = new AllowedIPs();
  t.insert(0, ip4(192, 95, 5, 93), 27);
  t.insert(0, ip6(0x26075300, 0x60006b00, 0, 0xc05f0543), 128);
  t.insert(0, ip4(10, 1, 0, 20), 29);
  t.insert(0, ip6(0x26075300, 0x6d8a6bf8, 0xdab1f1df, 0xc05f1523), 83);
  t.insert(0, ip6(0x26075300, 0x6d8a6bf8, 0xdab1f1df, 0xc05f1523), 21);
  assert.deepEqual(t.entriesForPeer(0).map(fmt), [
    { addr: ip4(192, 95, 5, 64), cidr: 27 },
    { addr: ip6(0x26075300, 0x60006b00, 0, 0xc05f0543), cidr: 128 },
    { addr: ip4(10, 1, 0, 16), cidr: 29 },
    { addr: ip6(0x26075300, 0x6d8a6bf8, 0xdab1e000, 0), cidr: 83 },
    { addr: ip6(0x26075000, 0, 0, 0), cidr: 21 },
  ].map(fmt));
});

test('entriesForPeer order follows re-insertion and moves between peers', () => {
  const t = new AllowedIPs();
  t.insert(1, ip4(10, 0, 0, 1), 32);
  t.insert(1, ip4(10, 0, 0, 2), 32);
  t.insert(1, ip6(0xfd000000, 0, 0, 1), 128);
  t.insert(1, ip4(10, 0, 0, 3), 32);
  t.insert(2, ip4(10, 0, 0, 9), 32);
  t.insert(1, ip4(10, 0, 0, 1), 32); // same owner: moves to the tail, like list_move_tail
  t.insert(2, ip4(10, 0, 0, 2), 32); // new owner: leaves peer 1, joins peer 2's tail
  t.insert(1, ip4(10, 0, 0, 77), 24); // a new prefix over the /32s, stored as 10.0.0.0/24
  assert.deepEqual(t.entriesForPeer(1).map(fmt), ['fd000000000000000000000000000001/128', '0a000003/32', '0a000001/32', '0a000000/24']);
  assert.deepEqual(t.entriesForPeer(2).map(fmt), ['0a000009/32', '0a000002/32']);
  assert.equal(t.lookupV4(ip4(10, 0, 0, 2), 0), 2);
  assert.equal(t.lookupV4(ip4(10, 0, 0, 200), 0), 1);
  assert.equal(t.count, 6);
  assert.equal(t.remove(1, ip4(10, 0, 0, 250), 24), true, 'host bits are ignored on removal too');
  assert.equal(t.remove(1, ip4(10, 0, 0, 2), 32), false, 'moved away from peer 1');
  assert.deepEqual(t.entriesForPeer(1).map(fmt), ['fd000000000000000000000000000001/128', '0a000003/32', '0a000001/32']);
  assert.deepEqual(t.entriesForPeer(3), []);
  assert.deepEqual(t.entriesForPeer(ALLOWEDIPS_MAX_PEERS - 1), []);
  t.removeByPeer(1);
  assert.deepEqual(t.entriesForPeer(1), []);
  assert.deepEqual(t.entriesForPeer(2).map(fmt), ['0a000009/32', '0a000002/32']);
  checkInvariants(t);
  t.clear();
  assert.equal(t.count, 0);
  assert.equal(t.lookupV4(ip4(10, 0, 0, 9), 0), -1);
  assert.deepEqual(t.entriesForPeer(2), []);
});

test('lookups read the address in place from a packet buffer', () => {
  const t = new AllowedIPs();
  t.insert(5, ip4(172, 16, 0, 0), 12);
  t.insert(6, ip6(0x20010db8, 0, 0, 0), 32);
  const v4 = new Uint8Array(20);
  v4.set(ip4(172, 31, 255, 1), 16); // IPv4 header destination
  assert.equal(t.lookupV4(v4, 16), 5);
  assert.equal(t.lookupV4(v4, 12), -1);
  const v6 = new Uint8Array(40);
  v6.set(ip6(0x20010db8, 0xffff, 0, 1), 24); // IPv6 header destination
  assert.equal(t.lookupV6(v6, 24), 6);
  assert.equal(t.lookupV6(v6, 8), -1);
});

test('misuse throws; a bad peer or address never lands in the table', () => {
  const t = new AllowedIPs();
  assert.throws(() => t.insert(0, new Uint8Array(5), 8), TypeError);
  assert.throws(() => t.insert(0, new Uint8Array(0), 0), TypeError);
  assert.throws(() => t.insert(0, [10, 0, 0, 1] as unknown as Uint8Array, 8), TypeError);
  assert.throws(() => t.insert(0, ip4(10, 0, 0, 1), 33), RangeError);
  assert.throws(() => t.insert(0, ip4(10, 0, 0, 1), -1), RangeError);
  assert.throws(() => t.insert(0, ip4(10, 0, 0, 1), 8.5), RangeError);
  assert.throws(() => t.insert(0, new Uint8Array(16), 129), RangeError);
  assert.throws(() => t.insert(-1, ip4(10, 0, 0, 1), 8), RangeError);
  assert.throws(() => t.insert(1.5, ip4(10, 0, 0, 1), 8), RangeError);
  assert.throws(() => t.insert(ALLOWEDIPS_MAX_PEERS, ip4(10, 0, 0, 1), 8), RangeError);
  assert.throws(() => t.removeByPeer(-1), RangeError);
  assert.equal(t.count, 0);
  t.insert(ALLOWEDIPS_MAX_PEERS - 1, ip4(10, 0, 0, 1), 8);
  assert.equal(t.lookupV4(ip4(10, 9, 9, 9), 0), ALLOWEDIPS_MAX_PEERS - 1);
});

/** Reproducible 32-bit words for the differential test. */
function rng(seed: number): () => number {
  const r = seededRandom(seed);
  return () => (r() * 2 ** 32) >>> 0;
}

function maskWords(words: number[], cidr: number): number[] {
  return words.map((w, i) => {
    const keep = cidr - i * 32;
    return keep <= 0 ? 0 : keep >= 32 ? w : (w & (-1 << (32 - keep))) >>> 0;
  });
}

const toBytes = (words: number[]): Uint8Array => {
  const out = new Uint8Array(words.length * 4);
  const v = new DataView(out.buffer);
  words.forEach((w, i) => v.setUint32(i * 4, w));
  return out;
};

/** The kernel's horrible_allowedips: flat lists, lookup scans for the longest match. */
class NaiveAllowedIPs {
  /** Per family, keyed by words per address (1 or 4). */
  readonly lists = new Map<number, Array<{ words: number[]; mask: number[]; cidr: number; peer: number; seq: number }>>([[1, []], [4, []]]);
  private seq = 0;

  private find(words: number[], cidr: number): number {
    const key = maskWords(words, cidr);
    return this.lists.get(words.length)!.findIndex((e) => e.cidr === cidr && e.words.every((w, i) => w === key[i]));
  }

  insert(peer: number, words: number[], cidr: number): void {
    const list = this.lists.get(words.length)!;
    const i = this.find(words, cidr);
    if (i >= 0) {
      list[i].peer = peer;
      list[i].seq = this.seq++;
    } else {
      const mask = maskWords(words.map(() => 0xffffffff), cidr);
      list.push({ words: maskWords(words, cidr), mask, cidr, peer, seq: this.seq++ });
    }
  }

  remove(peer: number, words: number[], cidr: number): boolean {
    const i = this.find(words, cidr);
    const list = this.lists.get(words.length)!;
    if (i < 0 || list[i].peer !== peer) return false;
    list.splice(i, 1);
    return true;
  }

  removeByPeer(peer: number): void {
    for (const [n, list] of this.lists) this.lists.set(n, list.filter((e) => e.peer !== peer));
  }

  lookup(words: number[]): number {
    let best = -1, peer = -1;
    next: for (const e of this.lists.get(words.length)!) {
      if (e.cidr <= best) continue;
      for (let i = 0; i < words.length; i++) if (((words[i] & e.mask[i]) >>> 0) !== e.words[i]) continue next;
      best = e.cidr;
      peer = e.peer;
    }
    return peer;
  }

  entriesForPeer(peer: number): string[] {
    return [...this.lists.get(1)!, ...this.lists.get(4)!].filter((e) => e.peer === peer).sort((x, y) => x.seq - y.seq)
      .map((e) => fmt({ addr: toBytes(e.words), cidr: e.cidr }));
  }

  get count(): number {
    return this.lists.get(1)!.length + this.lists.get(4)!.length;
  }
}

test('differential: random inserts, moves and removals against a naive list', () => {
  const PEERS = 400;
  const rand = rng(0x5eed1234);
  const below = (n: number): number => rand() % n;
  const randomWords = (n: number): number[] => Array.from({ length: n }, () => rand());
  const t = new AllowedIPs();
  const h = new NaiveAllowedIPs();
  const bases: number[][] = [];

  // Like the kernel's randomized_test: random routes plus "mutations" that keep a random-length
  // prefix of an earlier route, so prefixes nest and share long paths.
  const prefixWords = (n: number): number[] => {
    if (bases.length === 0 || below(4) === 0) {
      const w = randomWords(n);
      bases.push(w);
      return w;
    }
    let base = bases[below(bases.length)];
    if (base.length !== n) base = randomWords(n);
    const keep = below(n * 32);
    const keepMask = maskWords(base.map(() => 0xffffffff), keep);
    return base.map((w, i) => ((w & keepMask[i]) | (rand() & ~keepMask[i])) >>> 0);
  };
  const randomCidr = (n: number): number => (below(50) === 0 ? 0 : 1 + below(n * 32));
  // Addresses near stored prefixes (host bits random) hit deep nodes; pure random ones hit short prefixes.
  const probe = (n: number): number[] => {
    const same = h.lists.get(n)!;
    if (same.length === 0 || below(3) === 0) return randomWords(n);
    const e = same[below(same.length)];
    const m = maskWords(e.words.map(() => 0xffffffff), e.cidr);
    return e.words.map((w, i) => ((w & m[i]) | (rand() & ~m[i])) >>> 0);
  };
  const compareLookups = (rounds: number, tables?: AllowedIPsTables): void => {
    for (let i = 0; i < rounds; i++) {
      for (const n of [1, 4]) {
        const words = probe(n);
        const bytes = toBytes(words);
        const want = h.lookup(words);
        const got = tables
          ? (n === 1 ? lookupV4In(tables.v4, bytes, 0) : lookupV6In(tables.v6, bytes, 0))
          : lookup(t, bytes);
        assert.equal(got, want, `lookup ${Buffer.from(bytes).toString('hex')}`);
      }
    }
  };

  const inserted = new Map([[1, 0], [4, 0]]);
  let moved = 0, removed = 0, peersRemoved = 0;
  for (let op = 0; op < 36_000; op++) {
    const n = below(2) === 0 ? 1 : 4;
    const r = below(100);
    const existing = h.lists.get(n)!;
    if (r < 12 && existing.length > 0) {
      // Re-insert an existing prefix (host bits scrambled) for another peer.
      const e = existing[below(existing.length)];
      const peer = below(PEERS);
      const m = maskWords(e.words.map(() => 0xffffffff), e.cidr);
      const words = e.words.map((w, i) => ((w & m[i]) | (rand() & ~m[i])) >>> 0);
      t.insert(peer, toBytes(words), e.cidr);
      h.insert(peer, words, e.cidr);
      moved++;
    } else if (r < 24 && existing.length > 0) {
      const e = existing[below(existing.length)];
      const peer = below(4) === 0 ? below(PEERS) : e.peer; // sometimes the wrong owner
      const cidr = below(8) === 0 ? randomCidr(e.words.length) : e.cidr; // sometimes not exact
      const want = h.remove(peer, e.words, cidr);
      assert.equal(t.remove(peer, toBytes(e.words), cidr), want);
      if (want) removed++;
    } else if (r < 25) {
      const peer = below(PEERS);
      t.removeByPeer(peer);
      h.removeByPeer(peer);
      peersRemoved++;
    } else {
      const words = prefixWords(n);
      const cidr = randomCidr(n);
      const peer = below(PEERS);
      t.insert(peer, toBytes(words), cidr);
      h.insert(peer, words, cidr);
      inserted.set(n, inserted.get(n)! + 1);
    }
    if (op % 1000 === 999) {
      assert.equal(t.count, h.count);
      compareLookups(150);
    }
  }
  assert.ok(inserted.get(1)! >= 10_000 && inserted.get(4)! >= 10_000, 'fewer than 10k random prefixes per family');
  assert.ok(moved > 1000 && removed > 1000 && peersRemoved > 100);
  assert.ok(h.lists.get(1)!.length >= 5_000 && h.lists.get(4)!.length >= 5_000, 'too few prefixes left');

  checkInvariants(t);
  compareLookups(10_000);
  const published = tablesFromShared(t.snapshot());
  checkTables(published, t.nodeCount, t.count);
  compareLookups(2_000, published);
  // Written in steps of a few nodes, byte for byte the same snapshot.
  for (const nodes of [1, 7, 4096]) {
    const w = t.snapshotWriter();
    let steps = 0;
    while (!w.step(nodes)) steps++;
    assert.ok(nodes > 1000 || steps > 1000, 'the writer stopped between steps');
    assert.deepEqual(new Int32Array(w.sab), new Int32Array(t.snapshot()));
  }
  for (let p = 0; p < PEERS; p++) assert.deepEqual(t.entriesForPeer(p).map(fmt), h.entriesForPeer(p));

  for (let p = 0; p < PEERS; p++) t.removeByPeer(p);
  assert.equal(t.count, 0);
  assert.equal(t.nodeCount, 0);
  const empty = t.exportTables();
  assert.equal(empty.v4.root, -1);
  assert.equal(empty.v6.root, -1);
});

test('a snapshot keeps answering while the writer changes', () => {
  const t = new AllowedIPs();
  for (let i = 0; i < 1000; i++) {
    t.insert(i, ip4(10, 0, i >> 8, i & 255), 32);
    t.insert(i, ip6(0xfd000000, 0, 0, i), 128);
  }
  const first = t.snapshot();
  const shared = tablesFromShared(first);
  assert.equal(shared.v6.nodes.byteOffset % 32, 0, 'v6 nodes aligned to their size');
  t.clear();
  for (let i = 0; i < 1000; i++) {
    assert.equal(lookupV4In(shared.v4, ip4(10, 0, i >> 8, i & 255), 0), i);
    assert.equal(lookupV6In(shared.v6, ip6(0xfd000000, 0, 0, i), 0), i);
  }
  assert.equal(lookupV4In(shared.v4, ip4(10, 0, 200, 0), 0), -1);
  assert.equal(t.lookupV4(ip4(10, 0, 0, 1), 0), -1);
  assert.throws(() => tablesFromShared(new SharedArrayBuffer(64)), TypeError);
  const empty = tablesFromShared(t.snapshot());
  checkTables(empty, 0, 0);
  assert.equal(lookupV4In(empty.v4, ip4(10, 0, 0, 1), 0), -1);
  assert.equal(lookupV6In(empty.v6, ip6(0xfd000000, 0, 0, 1), 0), -1);

  // A retired buffer is overwritten when the new copy fits, and replaced when it does not.
  t.insert(7, ip4(192, 168, 0, 0), 16);
  const small = t.snapshot(first);
  assert.equal(small, first);
  const reused = tablesFromShared(small);
  checkTables(reused, 1, 1);
  assert.equal(lookupV4In(reused.v4, ip4(192, 168, 3, 4), 0), 7);
  assert.equal(lookupV4In(reused.v4, ip4(10, 0, 0, 1), 0), -1);
  assert.equal(lookupV6In(reused.v6, ip6(0xfd000000, 0, 0, 1), 0), -1);
  for (let i = 0; i < 3000; i++) t.insert(i, ip6(0xfd000000, 0, 0, i), 128);
  const bigger = t.snapshot(first);
  assert.notEqual(bigger, first);
  assert.equal(lookupV6In(tablesFromShared(bigger).v6, ip6(0xfd000000, 0, 0, 2999), 0), 2999);
});

test('a worker thread looks up in a snapshot it received through postMessage', async () => {
  const t = new AllowedIPs();
  t.insert(3, ip4(10, 3, 0, 0), 16);
  t.insert(4, ip6(0xfd000000, 4, 0, 0), 64);
  const lookupModule = new URL('../src/allowedips/lookup.js', import.meta.url).href;
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.lookupModule).then(({ tablesFromShared, lookupV4In, lookupV6In }) => {
      parentPort.on('message', (sab) => {
        const t = tablesFromShared(sab);
        const v4 = Uint8Array.of(10, 3, 9, 9), v6 = new Uint8Array(16);
        v6.set([0xfd, 0, 0, 0, 0, 0, 0, 4], 0);
        parentPort.postMessage([lookupV4In(t.v4, v4, 0), lookupV6In(t.v6, v6, 0)]);
      });
      parentPort.postMessage('ready');
    });
  `, { eval: true, workerData: { lookupModule } });
  try {
    const replies: unknown[] = [];
    const next = (): Promise<unknown> => new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    replies.push(await next());
    worker.postMessage(t.snapshot());
    replies.push(await next());
    assert.deepEqual(replies, ['ready', [3, 4]]);
  } finally {
    await worker.terminate();
  }
});
