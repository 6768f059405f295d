// BLAKE2s in the three shapes WireGuard uses: HASH (32-byte digest), MAC (keyed, 16 bytes) and
// HMAC. node:crypto's OpenSSL blake2s256 serves HASH and HMAC; OpenSSL cannot key BLAKE2s or
// shorten its digest, so MAC comes from @noble/hashes. All write into the caller's buffer.
import { createHash, createHmac } from 'node:crypto';
import { blake2s } from '@noble/hashes/blake2.js';

export const HASH_LEN = 32;
export const MAC_LEN = 16;

/** out = BLAKE2s-256(a || b). */
export function hash(out: Uint8Array, a: Uint8Array, b?: Uint8Array): void {
  const h = createHash('blake2s256').update(a);
  if (b) h.update(b);
  out.set(h.digest());
}

/** out = keyed BLAKE2s-128(key, data). */
export function mac(out: Uint8Array, key: Uint8Array, data: Uint8Array): void {
  out.set(blake2s(data, { key, dkLen: MAC_LEN }));
}

/** out = HMAC-BLAKE2s-256(key, a || b). */
export function hmac(out: Uint8Array, key: Uint8Array, a: Uint8Array, b?: Uint8Array): void {
  const h = createHmac('blake2s256', key).update(a);
  if (b) h.update(b);
  out.set(h.digest());
}
