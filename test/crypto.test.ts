import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hkdf } from '@noble/hashes/hkdf.js';
import { blake2s as nobleBlake2s } from '@noble/hashes/blake2.js';
import { hmac as nobleHmac } from '@noble/hashes/hmac.js';
import { dh, publicKeyOf } from '../src/crypto/x25519.js';
import { seal, open, xseal, xopen, CounterNonce, TAG_LEN } from '../src/crypto/aead.js';
import { hash, mac, hmac, hmacFrom, hmacKeyState, macFrom, macKeyState, HMAC_STATE_BYTES, KEY_STATE_BYTES } from '../src/crypto/blake2s.js';
import { kdf } from '../src/crypto/kdf.js';
import { ctEqual, isZero, zero } from '../src/crypto/memory.js';
import { hex, toHex, vectors } from './helpers.js';

interface Vectors {
  x25519: { scalar: string; u: string; out: string }[];
  x25519_dh: Record<string, string>;
  chacha20poly1305: Record<string, string>;
  xchacha20poly1305: Record<string, string>;
  blake2s: { input_ascii: string; out: string }[];
  blake2s_selftest: { out: string };
}
const V = vectors<Vectors>('crypto.json');

test('X25519 RFC 7748 section 5.2', () => {
  for (const v of V.x25519) {
    const out = new Uint8Array(32);
    assert.equal(dh(out, hex(v.scalar), hex(v.u)), true);
    assert.equal(toHex(out), v.out);
  }
});

test('X25519 RFC 7748 section 6.1 key agreement', () => {
  const d = V.x25519_dh;
  const pub = new Uint8Array(32);
  publicKeyOf(pub, hex(d.alice_private!));
  assert.equal(toHex(pub), d.alice_public);
  publicKeyOf(pub, hex(d.bob_private!));
  assert.equal(toHex(pub), d.bob_public);
  const s1 = new Uint8Array(32);
  const s2 = new Uint8Array(32);
  assert.ok(dh(s1, hex(d.alice_private!), hex(d.bob_public!)));
  assert.ok(dh(s2, hex(d.bob_private!), hex(d.alice_public!)));
  assert.equal(toHex(s1), d.shared);
  assert.equal(toHex(s2), d.shared);
});

test('X25519 rejects an all-zero shared secret (low-order points)', () => {
  const priv = hex(V.x25519_dh.alice_private!);
  const out = new Uint8Array(32);
  assert.equal(dh(out, priv, new Uint8Array(32)), false);
  const one = new Uint8Array(32);
  one[0] = 1;
  assert.equal(dh(out, priv, one), false);
});

function aeadCase(v: Record<string, string>, sealFn: typeof seal, openFn: typeof open): void {
  const plain = new TextEncoder().encode(v.plaintext_ascii);
  const out = new Uint8Array(plain.length + TAG_LEN);
  sealFn(out, plain, hex(v.aad!), hex(v.nonce!), hex(v.key!));
  assert.equal(toHex(out), v.ciphertext! + v.tag!);
  const back = new Uint8Array(plain.length);
  assert.equal(openFn(back, out, hex(v.aad!), hex(v.nonce!), hex(v.key!)), true);
  assert.deepEqual(back, plain);
  out[5]! ^= 1;
  assert.equal(openFn(back, out, hex(v.aad!), hex(v.nonce!), hex(v.key!)), false);
  assert.equal(openFn(back.subarray(0, 0), out.subarray(0, 15), undefined, hex(v.nonce!), hex(v.key!)), false);
}

test('ChaCha20-Poly1305 RFC 8439 section 2.8.2', () => aeadCase(V.chacha20poly1305, seal, open));
test('XChaCha20-Poly1305 draft-irtf-cfrg-xchacha A.3.1', () => aeadCase(V.xchacha20poly1305, xseal, xopen));

test('ChaCha20-Poly1305 seals in place', () => {
  const key = hex(V.chacha20poly1305.key!);
  const nonce = new CounterNonce().set(7, 1);
  assert.equal(toHex(nonce), '000000000700000001000000');
  const buf = new Uint8Array(64 + TAG_LEN);
  buf.fill(0xab, 0, 64);
  const reference = new Uint8Array(64 + TAG_LEN);
  seal(reference, buf.slice(0, 64), undefined, nonce, key);
  seal(buf, buf.subarray(0, 64), undefined, nonce, key);
  assert.deepEqual(buf, reference);
  assert.ok(open(buf.subarray(0, 64), buf, undefined, nonce, key));
  assert.ok(buf.subarray(0, 64).every((b) => b === 0xab));
});

test('BLAKE2s-256 RFC 7693 Appendix B', () => {
  for (const v of V.blake2s) {
    const out = new Uint8Array(32);
    hash(out, new TextEncoder().encode(v.input_ascii));
    assert.equal(toHex(out), v.out);
  }
});

// RFC 7693 Appendix E: hashes of deterministic sequences over several output and input
// lengths, keyed and unkeyed, folded into one digest. It covers the keyed, shortened BLAKE2s
// that MAC uses, and cross-checks our HASH (node:crypto) against the same engine.
test('BLAKE2s RFC 7693 Appendix E self-test', () => {
  const seq = (len: number, seed: number): Uint8Array => {
    const out = new Uint8Array(len);
    let a = Math.imul(0xdead4bad, seed) >>> 0;
    let b = 1;
    for (let i = 0; i < len; i++) {
      const t = (a + b) >>> 0;
      a = b;
      b = t;
      out[i] = (t >>> 24) & 0xff;
    }
    return out;
  };
  const h = nobleBlake2s.create({ dkLen: 32 });
  for (const outlen of [16, 20, 28, 32]) {
    for (const inlen of [0, 3, 64, 65, 255, 1024]) {
      const input = seq(inlen, inlen);
      const plain = nobleBlake2s(input, { dkLen: outlen });
      if (outlen === 32) {
        const ours = new Uint8Array(32);
        hash(ours, input);
        assert.deepEqual(ours, plain);
      }
      h.update(plain);
      const key = seq(outlen, outlen);
      const keyed = nobleBlake2s(input, { dkLen: outlen, key });
      if (outlen === 16) {
        const ours = new Uint8Array(16);
        mac(ours, key, input);
        assert.deepEqual(ours, keyed);
      }
      h.update(keyed);
    }
  }
  assert.equal(toHex(h.digest()), V.blake2s_selftest.out);
});

test('HMAC-BLAKE2s matches an independent HMAC construction', () => {
  const key = hex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
  const data = new TextEncoder().encode('WireGuard');
  const out = new Uint8Array(32);
  hmac(out, key, data);
  assert.deepEqual(out, nobleHmac(nobleBlake2s, key, data));
});

test('MAC and HMAC from a saved key state equal keyed BLAKE2s and HMAC from the key, at every block boundary', () => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => 0xa0 ^ i);
  const macState = new Uint8Array(KEY_STATE_BYTES);
  const hmacStates = new Uint8Array(HMAC_STATE_BYTES);
  macKeyState(macState, key);
  hmacKeyState(hmacStates, key);
  for (const len of [1, 31, 63, 64, 65, 116, 127, 128, 129, 200]) {
    const data = Uint8Array.from({ length: len }, (_, i) => (i * 31 + len) & 0xff);
    const m = new Uint8Array(16);
    macFrom(m, macState, data);
    assert.deepEqual(m, nobleBlake2s(data, { dkLen: 16, key }), `mac ${len}`);
    const h = new Uint8Array(32);
    // Split in two, as a KDF passes T(i-1) and i.
    hmacFrom(h, hmacStates, data.subarray(0, len >> 1), data.subarray(len >> 1));
    assert.deepEqual(h, nobleHmac(nobleBlake2s, key, data), `hmac ${len}`);
  }
  // Without data BLAKE2s would finish on the key block itself, which the saved state is past.
  assert.throws(() => macFrom(new Uint8Array(16), macState, new Uint8Array(0)), RangeError);
  assert.throws(() => hmacFrom(new Uint8Array(32), hmacStates, new Uint8Array(0)), RangeError);
});

test('KDF1/2/3 equal HKDF-BLAKE2s (salt = chaining key, empty info)', () => {
  for (const inputLen of [0, 32, 77]) {
    const key = Uint8Array.from({ length: 32 }, (_, i) => i * 7 + inputLen);
    const input = Uint8Array.from({ length: inputLen }, (_, i) => 255 - i);
    const expected = hkdf(nobleBlake2s, input, key, new Uint8Array(0), 96);
    const t1 = new Uint8Array(32);
    const t2 = new Uint8Array(32);
    const t3 = new Uint8Array(32);
    kdf(key, input, t1, t2, t3);
    assert.deepEqual([t1, t2, t3], [expected.subarray(0, 32), expected.subarray(32, 64), expected.subarray(64, 96)]);
    const only = new Uint8Array(32);
    kdf(key, input, only);
    assert.deepEqual(only, t1);
    // The chaining key is usually replaced by T1 in place.
    const chain = key.slice();
    kdf(chain, input, chain, t2);
    assert.deepEqual(chain, t1);
  }
});

test('constant-time helpers', () => {
  assert.equal(ctEqual(hex('0102'), hex('0102')), true);
  assert.equal(ctEqual(hex('0102'), hex('0103')), false);
  assert.equal(ctEqual(hex('0102'), hex('01')), false);
  const k = hex('ff00');
  assert.equal(isZero(k), false);
  zero(k);
  assert.equal(isZero(k), true);
});
