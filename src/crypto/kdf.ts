// WireGuard's KDF_n: HKDF (RFC 5869) over HMAC-BLAKE2s with the chaining key as salt, taking
// one, two or three 32-byte outputs. The pseudo-random key and T_i are wiped before returning.
import { hmac, hmacFrom, hmacKeyState, HASH_LEN, HMAC_STATE_BYTES } from './blake2s.js';
import { zero } from './memory.js';

const ONE = Uint8Array.of(1);
const TWO = Uint8Array.of(2);
const THREE = Uint8Array.of(3);
// Scratch for the pseudo-random key, its HMAC states (keyed once for its two or three uses)
// and each T_i, allocated once per thread: a handshake runs a dozen KDFs, and nothing here
// yields, so calls never interleave.
const scratch = new Uint8Array(2 * HASH_LEN + HMAC_STATE_BYTES);
const prk = scratch.subarray(0, HASH_LEN);
const t = scratch.subarray(HASH_LEN, 2 * HASH_LEN);
const prkStates = scratch.subarray(2 * HASH_LEN);

/**
 * Derives up to three keys: out1 = T1, out2 = T2, out3 = T3. Outputs may alias `key` (the
 * chaining key is usually replaced by T1).
 */
export function kdf(key: Uint8Array, input: Uint8Array, out1: Uint8Array, out2?: Uint8Array, out3?: Uint8Array): void {
  hmac(prk, key, input);
  hmacKeyState(prkStates, prk);
  hmacFrom(t, prkStates, ONE);
  out1.set(t);
  if (out2) {
    hmacFrom(t, prkStates, t, TWO);
    out2.set(t);
    if (out3) {
      hmacFrom(t, prkStates, t, THREE);
      out3.set(t);
    }
  }
  zero(scratch);
}
