// Secrets live in Uint8Arrays that this module can wipe; comparisons of MACs and keys are
// constant time so a forged message learns nothing from how long the check took.
import { sodium } from './sodium.js';

export function zero(buf: Uint8Array): void {
  sodium.sodium_memzero(buf);
}

export function randomFill(buf: Uint8Array): void {
  sodium.randombytes_buf(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Constant-time equality of two equal-length byte strings; unequal lengths are simply unequal. */
export function ctEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && sodium.sodium_memcmp(a, b);
}

/** Constant-time test for all-zero bytes (an unset preshared key, an all-zero DH result). */
export function isZero(a: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < a.length; i++) acc |= a[i]!;
  return acc === 0;
}
