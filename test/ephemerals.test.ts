// The pool of ephemeral key pairs made ahead of time (src/handshake/ephemerals.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EphemeralPool } from '../src/handshake/ephemerals.js';
import { publicKeyOf } from '../src/crypto/x25519.js';
import { isZero } from '../src/crypto/memory.js';

test('ephemeral pool: bounded refills, each pair valid and handed out once, then fresh pairs on demand; wipe', () => {
  const pool = new EphemeralPool(3);
  for (let i = 0; i < 3; i++) assert.equal(pool.refill(), true);
  assert.equal(pool.refill(), false);
  assert.equal(pool.size, 3);
  const seen = new Set<string>();
  const priv = new Uint8Array(32);
  const pub = new Uint8Array(32);
  const expect = new Uint8Array(32);
  for (let i = 0; i < 5; i++) {
    pool.take(priv, pub);
    publicKeyOf(expect, priv);
    assert.deepEqual(pub, expect);
    seen.add(Buffer.from(priv).toString('hex'));
  }
  assert.equal(seen.size, 5);
  assert.equal(pool.size, 0);
  // What was handed out is wiped from the pool.
  assert.ok(isZero((pool as unknown as { pairs: Uint8Array }).pairs));
  pool.refill();
  pool.wipe();
  assert.equal(pool.size, 0);
  assert.ok(isZero((pool as unknown as { pairs: Uint8Array }).pairs));
});
