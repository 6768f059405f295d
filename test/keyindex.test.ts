// KeyIndex against a Map of hex strings (the structure it replaced) on seeded random churn:
// adds, deletes (backward-shift, no tombstones) and lookups of present and absent keys, across
// several growths of the bucket array.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyIndex } from '../src/device/keyindex.js';

/** xorshift32, so a failure reproduces. */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

test('KeyIndex agrees with a Map under random adds, deletes and lookups', () => {
  const next = rng(0x5eed);
  const capacity = 5000;
  const index = new KeyIndex(capacity);
  const reference = new Map<string, number>();
  const keyOf: (Uint8Array | undefined)[] = [];
  const freeIds: number[] = Array.from({ length: capacity }, (_, i) => capacity - 1 - i);
  const randomKey = (): Uint8Array => {
    const k = new Uint8Array(32);
    for (let i = 0; i < 32; i += 4) new DataView(k.buffer).setUint32(i, next());
    // Few distinct first bytes: long probe runs, so deletion's shifting is exercised.
    k[0] = next() & 3;
    return k;
  };
  const hex = (k: Uint8Array): string => Buffer.from(k).toString('hex');
  for (let round = 0; round < 40_000; round++) {
    const r = next() % 10;
    if (r < 5 && freeIds.length > 0) {
      const k = randomKey();
      const id = freeIds.pop()!;
      index.add(k, id);
      reference.set(hex(k), id);
      keyOf[id] = k;
    } else if (r < 8 && reference.size > 0) {
      const ids = [...reference.values()];
      const id = ids[next() % ids.length]!;
      index.delete(id);
      reference.delete(hex(keyOf[id]!));
      keyOf[id] = undefined;
      freeIds.push(id);
    } else {
      const k = randomKey();
      assert.equal(index.get(k), reference.get(hex(k)) ?? -1);
    }
    assert.equal(index.size, reference.size);
  }
  for (const [h, id] of reference) {
    const k = Buffer.from(h, 'hex');
    // A key at an offset inside a larger buffer, as parsed requests hand them over.
    const inside = new Uint8Array(40);
    inside.set(k, 5);
    assert.equal(index.get(inside, 5), id);
  }
  index.clear();
  assert.equal(index.size, 0);
  for (const h of reference.keys()) assert.equal(index.get(Buffer.from(h, 'hex')), -1);
});

test('KeyIndex refuses ids beyond its capacity', () => {
  const index = new KeyIndex(2);
  assert.throws(() => index.add(new Uint8Array(32), 2), RangeError);
});
