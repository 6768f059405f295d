// ChaCha20-Poly1305 with WireGuard's nonce (4 zero bytes then a 64-bit little-endian counter)
// and XChaCha20-Poly1305 for cookie replies. Each function writes into the caller's buffers and
// returns a status, so the data plane can seal and open packets in place without allocating.
import { sodium } from './sodium.js';

export const TAG_LEN = 16;
export const NONCE_LEN = 12;
export const XNONCE_LEN = 24;

/** A 12-byte nonce buffer with a writer for WireGuard counters; one per thread. */
export class CounterNonce {
  readonly bytes = new Uint8Array(NONCE_LEN);
  private readonly view = new DataView(this.bytes.buffer);

  set(lo: number, hi: number): Uint8Array {
    this.view.setUint32(4, lo, true);
    this.view.setUint32(8, hi, true);
    return this.bytes;
  }
}

/** `out` must be `plain.length + TAG_LEN` long; it may start at the same address as `plain`. */
export function seal(out: Uint8Array, plain: Uint8Array, ad: Uint8Array | undefined, nonce: Uint8Array, key: Uint8Array): void {
  sodium.crypto_aead_chacha20poly1305_ietf_encrypt(out, plain, ad, nonce, key);
}

/** Returns false when the tag does not verify. `out` is `sealed.length - TAG_LEN` long. */
export function open(out: Uint8Array, sealed: Uint8Array, ad: Uint8Array | undefined, nonce: Uint8Array, key: Uint8Array): boolean {
  if (sealed.length < TAG_LEN) return false;
  return sodium.crypto_aead_chacha20poly1305_ietf_decrypt(out, sealed, ad, nonce, key) >= 0;
}

export function xseal(out: Uint8Array, plain: Uint8Array, ad: Uint8Array | undefined, nonce: Uint8Array, key: Uint8Array): void {
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(out, plain, ad, nonce, key);
}

export function xopen(out: Uint8Array, sealed: Uint8Array, ad: Uint8Array | undefined, nonce: Uint8Array, key: Uint8Array): boolean {
  if (sealed.length < TAG_LEN) return false;
  return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(out, sealed, ad, nonce, key) >= 0;
}
