// Handshake rate limiter: HalfSipHash known answers (the kernel's siphash selftest), the token
// bucket's burst and refill under a fake clock, /64 grouping, gc, a full table, and a
// differential run against a naive Map-based model of ratelimiter.c on seeded random traffic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_MAX_ENTRIES,
  PACKET_COST,
  RateLimiter,
  TOKEN_MAX,
  hsiphash,
} from '../src/handshake/ratelimiter.js';
import { seededRandom } from './helpers.js';

const MS = 1e6; // ns
const S = 1e9; // ns
const T0 = 5 * S; // an arbitrary monotonic start

function v4(a: number, b: number, c: number, d: number): Uint8Array {
  return Uint8Array.of(a, b, c, d);
}

function v6(words: readonly number[]): Uint8Array {
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[i * 2] = w >>> 8;
    out[i * 2 + 1] = w & 0xff;
  });
  return out;
}

function burst(rl: RateLimiter, addr: Uint8Array, len: 4 | 16, now: number, n: number): boolean[] {
  return Array.from({ length: n }, () => rl.allow(addr, 0, len, now));
}

test('constants are the kernel values', () => {
  assert.equal(PACKET_COST, 50_000_000);
  assert.equal(TOKEN_MAX, 250_000_000);
  assert.equal(DEFAULT_MAX_ENTRIES, 65536);
});

test('hsiphash matches the kernel selftest vectors (HalfSipHash-1-3, 32-bit)', () => {
  const k0 = 0x03020100;
  const k1 = 0x07060504;
  assert.equal(hsiphash(k0, k1, 1, 0x03020100, 0), 0x7e059ea6); // test_vectors_hsiphash[4]
  assert.equal(hsiphash(k0, k1, 2, 0x03020100, 0x07060504), 0x577999b1); // [8]
});

test('a new source gets a burst of 5, then is refused', () => {
  const rl = new RateLimiter();
  assert.deepEqual(burst(rl, v4(192, 0, 2, 1), 4, T0, 7), [true, true, true, true, true, false, false]);
  assert.equal(rl.size, 1);
});

test('credit refills at 20 packets per second and never beyond the burst', () => {
  const rl = new RateLimiter();
  const a = v4(10, 1, 2, 3);
  burst(rl, a, 4, T0, 5);
  assert.equal(rl.allow(a, 0, 4, T0 + 50 * MS - 1), false);
  // The refused attempt kept its accrued credit (the kernel stores it), so 1 ns later is enough.
  assert.equal(rl.allow(a, 0, 4, T0 + 50 * MS), true);
  assert.equal(rl.allow(a, 0, 4, T0 + 50 * MS), false);
  // Steady 20/s for 10 s: every packet passes.
  let t = T0 + 50 * MS;
  for (let i = 0; i < 200; i++) {
    t += 50 * MS;
    assert.equal(rl.allow(a, 0, 4, t), true, `packet ${i}`);
  }
  // 40/s: half of them pass.
  let passed = 0;
  for (let i = 0; i < 400; i++) {
    t += 25 * MS;
    if (rl.allow(a, 0, 4, t)) passed++;
  }
  assert.equal(passed, 200);
  // A long silence refills only up to the burst.
  t += 3600 * S;
  assert.deepEqual(burst(rl, a, 4, t, 6), [true, true, true, true, true, false]);
});

test('IPv4 sources are separate per address', () => {
  const rl = new RateLimiter();
  burst(rl, v4(10, 0, 0, 1), 4, T0, 5);
  assert.equal(rl.allow(v4(10, 0, 0, 1), 0, 4, T0), false);
  assert.equal(rl.allow(v4(10, 0, 0, 2), 0, 4, T0), true);
  assert.equal(rl.size, 2);
});

test('IPv6 sources in one /64 share a bucket; another /64 does not', () => {
  const rl = new RateLimiter();
  const a = v6([0x2001, 0xdb8, 0x1, 0x2, 0, 0, 0, 1]);
  const sameNet = v6([0x2001, 0xdb8, 0x1, 0x2, 0xdead, 0xbeef, 0xffff, 0xffff]);
  const otherNet = v6([0x2001, 0xdb8, 0x1, 0x3, 0, 0, 0, 1]);
  assert.deepEqual(burst(rl, a, 16, T0, 3), [true, true, true]);
  assert.deepEqual(burst(rl, sameNet, 16, T0, 3), [true, true, false]);
  assert.equal(rl.allow(otherNet, 0, 16, T0), true);
  assert.equal(rl.size, 2);
});

test('an IPv4 address and an IPv6 /64 with the same leading bytes are different sources', () => {
  const rl = new RateLimiter();
  burst(rl, v4(0x20, 0x01, 0x0d, 0xb8), 4, T0, 5);
  assert.equal(rl.allow(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 0, 16, T0), true);
  assert.equal(rl.size, 2);
});

test('the address is read at the given offset (e.g. inside an IP header)', () => {
  const rl = new RateLimiter();
  const header = new Uint8Array(20);
  header.set([198, 51, 100, 7], 12);
  for (let i = 0; i < 5; i++) assert.equal(rl.allow(header, 12, 4, T0), true);
  assert.equal(rl.allow(v4(198, 51, 100, 7), 0, 4, T0), false);
  assert.equal(rl.allow(Buffer.from([0, 0, 198, 51, 100, 7]), 2, 4, T0), false);
});

test('bad input is refused without throwing or creating an entry', () => {
  const rl = new RateLimiter();
  const addr = new Uint8Array(16);
  assert.equal(rl.allow(addr, 0, 8 as 4, T0), false);
  assert.equal(rl.allow(addr, -1, 4, T0), false);
  assert.equal(rl.allow(addr, 1.5, 4, T0), false);
  assert.equal(rl.allow(addr, NaN, 4, T0), false);
  assert.equal(rl.allow(addr, 13, 4, T0), false);
  assert.equal(rl.allow(addr, 1, 16, T0), false);
  assert.equal(rl.size, 0);
  assert.throws(() => new RateLimiter({ maxEntries: 0 }), RangeError);
});

test('gc drops sources idle for more than 1 s and keeps the others', () => {
  const rl = new RateLimiter({ maxEntries: 1000 });
  for (let i = 0; i < 300; i++) rl.allow(v4(10, 0, i >> 8, i & 0xff), 0, 4, T0);
  for (let i = 0; i < 100; i++) rl.allow(v4(10, 0, i >> 8, i & 0xff), 0, 4, T0 + 500 * MS);
  rl.gc(T0 + S); // idle exactly 1 s: kept, as in the kernel (strictly more than 1 s goes)
  assert.equal(rl.size, 300);
  rl.gc(T0 + S + 1);
  assert.equal(rl.size, 100);
  // Survivors keep their buckets (one token used at T0, one at T0+500 ms, 1.5 s of refill).
  for (let i = 0; i < 100; i++) {
    assert.deepEqual(burst(rl, v4(10, 0, 0, i), 4, T0 + S + 1, 6), [true, true, true, true, true, false]);
  }
  rl.gc(T0 + 10 * S);
  assert.equal(rl.size, 0);
  // A source that comes back after gc starts afresh.
  assert.deepEqual(burst(rl, v4(10, 0, 0, 5), 4, T0 + 10 * S, 6), [true, true, true, true, true, false]);
});

test('a full table refuses new sources but still serves known ones', () => {
  const rl = new RateLimiter({ maxEntries: 4 });
  for (let i = 1; i <= 4; i++) assert.equal(rl.allow(v4(10, 0, 0, i), 0, 4, T0), true);
  assert.equal(rl.size, 4);
  assert.equal(rl.allow(v4(10, 0, 0, 5), 0, 4, T0), false);
  assert.equal(rl.allow(v6([0xfd00, 0, 0, 0, 0, 0, 0, 1]), 0, 16, T0), false);
  assert.equal(rl.allow(v4(10, 0, 0, 1), 0, 4, T0), true);
  assert.equal(rl.size, 4);
  rl.allow(v4(10, 0, 0, 1), 0, 4, T0 + 2 * S);
  rl.gc(T0 + 2 * S);
  assert.equal(rl.size, 1);
  assert.equal(rl.allow(v4(10, 0, 0, 5), 0, 4, T0 + 2 * S), true);
  rl.clear();
  assert.equal(rl.size, 0);
});

test('differential: same answers as a naive model of ratelimiter.c on random traffic', () => {
  const random = seededRandom(0x5eed);
  const maxEntries = 48; // a small table: long probe runs, wraps, and many deletions
  const rl = new RateLimiter({ maxEntries, key: [0x12345678, 0x9abcdef0] });
  const model = new Map<string, { last: number; tokens: number }>();
  const modelAllow = (key: string, now: number): boolean => {
    const e = model.get(key);
    if (e !== undefined) {
      const tokens = Math.min(TOKEN_MAX, e.tokens + Math.max(0, now - e.last));
      e.last = now;
      const ok = tokens >= PACKET_COST;
      e.tokens = ok ? tokens - PACKET_COST : tokens;
      return ok;
    }
    if (model.size >= maxEntries) return false;
    model.set(key, { last: now, tokens: TOKEN_MAX - PACKET_COST });
    return true;
  };
  const addr = new Uint8Array(16);
  let now = T0;
  for (let step = 0; step < 60_000; step++) {
    now += Math.floor(random() * 30 * MS);
    if (random() < 0.002) {
      rl.gc(now);
      for (const [k, e] of model) if (now - e.last > S) model.delete(k);
    } else {
      const isV6 = random() < 0.5;
      const id = Math.floor(random() * 90);
      addr.fill(0);
      let key: string;
      if (isV6) {
        addr[0] = 0x20;
        addr[7] = id;
        addr[15] = Math.floor(random() * 256); // host part: must not matter
        key = `6/${id}`;
      } else {
        addr[3] = id;
        key = `4/${id}`;
      }
      assert.equal(rl.allow(addr, 0, isV6 ? 16 : 4, now), modelAllow(key, now), `step ${step} ${key}`);
    }
    assert.equal(rl.size, model.size, `size at step ${step}`);
  }
});
