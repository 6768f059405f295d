// BLAKE2s (RFC 7693) in the three shapes WireGuard uses: HASH (32-byte digest), MAC (keyed,
// 16 bytes) and HMAC-BLAKE2s. A handshake runs about sixty of these on inputs under 200 bytes,
// where node:crypto's per-call OpenSSL context (~5 µs) and @noble/hashes' keyed setup (~18 µs)
// cost more than the hashing itself, so this is a small allocation-free implementation whose
// state lives in typed arrays created once. The state is module-level: every worker thread has
// its own module instance, and no function here yields, so calls never interleave.

export const HASH_LEN = 32;
export const MAC_LEN = 16;
const BLOCK = 64;
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;
/**
 * A chaining state saved after a key's first block (macKeyState): the block that keyed MAC
 * and HMAC compress before any data, the same for every message under a fixed key. Resuming
 * from it saves that compression, a third of a handshake message's mac1 and a quarter of an
 * HMAC.
 */
export const KEY_STATE_BYTES = 32;
/** HMAC's two saved states, inner then outer (hmacKeyState). */
export const HMAC_STATE_BYTES = 2 * KEY_STATE_BYTES;

const IV = Int32Array.of(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);
const SIGMA = Uint8Array.of(
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
  14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3,
  11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4,
  7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8,
  9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13,
  2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9,
  12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11,
  13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10,
  6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5,
  10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0,
);

/** One BLAKE2s computation at a time, on preallocated state. */
class Blake2s {
  private readonly h = new Int32Array(8);
  private readonly buf = new Uint8Array(BLOCK);
  /**
   * The message words: on a little-endian host (every one Node runs WireGuard on in practice)
   * a view of `buf` itself, so a compression reads them without assembling bytes.
   */
  private readonly m = LITTLE_ENDIAN ? new Int32Array(this.buf.buffer) : new Int32Array(16);
  private bufLen = 0;
  private total = 0;
  private outLen = HASH_LEN;

  init(outLen: number, key?: Uint8Array): this {
    const keyLen = key ? key.length : 0;
    this.h.set(IV);
    this.h[0]! ^= 0x01010000 ^ (keyLen << 8) ^ outLen;
    this.outLen = outLen;
    this.total = 0;
    this.bufLen = 0;
    if (key && keyLen > 0) {
      this.buf.fill(0);
      this.buf.set(key);
      this.bufLen = BLOCK;
    }
    return this;
  }

  /** As after init(outLen, key) and one block: from a state saveBlock() wrote at state[off..]. */
  resume(outLen: number, state: Uint8Array, off: number): this {
    const h = this.h;
    for (let i = 0; i < 8; i++) {
      const o = off + 4 * i;
      h[i] = state[o]! | (state[o + 1]! << 8) | (state[o + 2]! << 16) | (state[o + 3]! << 24);
    }
    this.outLen = outLen;
    this.total = BLOCK;
    this.bufLen = 0;
    return this;
  }

  /** Compresses the one full block buffered (a key or pad block), saves the state into out[off..] and wipes it. */
  saveBlock(out: Uint8Array, off: number): void {
    if (this.total !== 0 || this.bufLen !== BLOCK) throw new Error('saveBlock: not exactly one block buffered');
    this.total = BLOCK;
    this.compress(false);
    const h = this.h;
    for (let i = 0; i < KEY_STATE_BYTES; i++) out[off + i] = h[i >> 2]! >>> (8 * (i & 3));
    h.fill(0);
    this.m.fill(0);
    this.buf.fill(0);
  }

  update(data: Uint8Array): this {
    const buf = this.buf;
    const n = data.length;
    let len = this.bufLen;
    // A byte loop rather than buf.set(data.subarray(...)): inputs here are tens of bytes, where
    // creating the subarray view costs more than copying.
    for (let i = 0; i < n; i++) {
      if (len === BLOCK) {
        this.total += BLOCK;
        this.compress(false);
        len = 0;
      }
      buf[len++] = data[i]!;
    }
    this.bufLen = len;
    return this;
  }

  /** Writes the digest into `out` (which may alias an input) and wipes the state. */
  digestInto(out: Uint8Array): void {
    this.total += this.bufLen;
    this.buf.fill(0, this.bufLen);
    this.compress(true);
    const h = this.h;
    for (let i = 0; i < this.outLen; i++) out[i] = h[i >> 2]! >>> (8 * (i & 3));
    h.fill(0);
    this.m.fill(0);
    this.buf.fill(0);
  }

  // The working vector lives in sixteen locals, not an array, so V8 keeps it in registers; this
  // is what makes a compression ~4x cheaper than a G() helper over a typed array.
  private compress(last: boolean): void {
    const { h, m, buf } = this;
    if (!LITTLE_ENDIAN) {
      for (let i = 0; i < 16; i++) {
        m[i] = buf[4 * i]! | (buf[4 * i + 1]! << 8) | (buf[4 * i + 2]! << 16) | (buf[4 * i + 3]! << 24);
      }
    }
    let v0 = h[0]!, v1 = h[1]!, v2 = h[2]!, v3 = h[3]!, v4 = h[4]!, v5 = h[5]!, v6 = h[6]!, v7 = h[7]!;
    let v8 = IV[0]!, v9 = IV[1]!, v10 = IV[2]!, v11 = IV[3]!;
    let v12 = IV[4]! ^ this.total, v13 = IV[5]! ^ Math.floor(this.total / 0x100000000);
    let v14 = last ? ~IV[6]! : IV[6]!, v15 = IV[7]!;
    for (let s = 0; s < 160; s += 16) {
      v0 = (v0 + v4 + m[SIGMA[s + 0]!]!) | 0; v12 ^= v0; v12 = (v12 >>> 16) | (v12 << 16);
      v8 = (v8 + v12) | 0; v4 ^= v8; v4 = (v4 >>> 12) | (v4 << 20);
      v0 = (v0 + v4 + m[SIGMA[s + 1]!]!) | 0; v12 ^= v0; v12 = (v12 >>> 8) | (v12 << 24);
      v8 = (v8 + v12) | 0; v4 ^= v8; v4 = (v4 >>> 7) | (v4 << 25);
      v1 = (v1 + v5 + m[SIGMA[s + 2]!]!) | 0; v13 ^= v1; v13 = (v13 >>> 16) | (v13 << 16);
      v9 = (v9 + v13) | 0; v5 ^= v9; v5 = (v5 >>> 12) | (v5 << 20);
      v1 = (v1 + v5 + m[SIGMA[s + 3]!]!) | 0; v13 ^= v1; v13 = (v13 >>> 8) | (v13 << 24);
      v9 = (v9 + v13) | 0; v5 ^= v9; v5 = (v5 >>> 7) | (v5 << 25);
      v2 = (v2 + v6 + m[SIGMA[s + 4]!]!) | 0; v14 ^= v2; v14 = (v14 >>> 16) | (v14 << 16);
      v10 = (v10 + v14) | 0; v6 ^= v10; v6 = (v6 >>> 12) | (v6 << 20);
      v2 = (v2 + v6 + m[SIGMA[s + 5]!]!) | 0; v14 ^= v2; v14 = (v14 >>> 8) | (v14 << 24);
      v10 = (v10 + v14) | 0; v6 ^= v10; v6 = (v6 >>> 7) | (v6 << 25);
      v3 = (v3 + v7 + m[SIGMA[s + 6]!]!) | 0; v15 ^= v3; v15 = (v15 >>> 16) | (v15 << 16);
      v11 = (v11 + v15) | 0; v7 ^= v11; v7 = (v7 >>> 12) | (v7 << 20);
      v3 = (v3 + v7 + m[SIGMA[s + 7]!]!) | 0; v15 ^= v3; v15 = (v15 >>> 8) | (v15 << 24);
      v11 = (v11 + v15) | 0; v7 ^= v11; v7 = (v7 >>> 7) | (v7 << 25);
      v0 = (v0 + v5 + m[SIGMA[s + 8]!]!) | 0; v15 ^= v0; v15 = (v15 >>> 16) | (v15 << 16);
      v10 = (v10 + v15) | 0; v5 ^= v10; v5 = (v5 >>> 12) | (v5 << 20);
      v0 = (v0 + v5 + m[SIGMA[s + 9]!]!) | 0; v15 ^= v0; v15 = (v15 >>> 8) | (v15 << 24);
      v10 = (v10 + v15) | 0; v5 ^= v10; v5 = (v5 >>> 7) | (v5 << 25);
      v1 = (v1 + v6 + m[SIGMA[s + 10]!]!) | 0; v12 ^= v1; v12 = (v12 >>> 16) | (v12 << 16);
      v11 = (v11 + v12) | 0; v6 ^= v11; v6 = (v6 >>> 12) | (v6 << 20);
      v1 = (v1 + v6 + m[SIGMA[s + 11]!]!) | 0; v12 ^= v1; v12 = (v12 >>> 8) | (v12 << 24);
      v11 = (v11 + v12) | 0; v6 ^= v11; v6 = (v6 >>> 7) | (v6 << 25);
      v2 = (v2 + v7 + m[SIGMA[s + 12]!]!) | 0; v13 ^= v2; v13 = (v13 >>> 16) | (v13 << 16);
      v8 = (v8 + v13) | 0; v7 ^= v8; v7 = (v7 >>> 12) | (v7 << 20);
      v2 = (v2 + v7 + m[SIGMA[s + 13]!]!) | 0; v13 ^= v2; v13 = (v13 >>> 8) | (v13 << 24);
      v8 = (v8 + v13) | 0; v7 ^= v8; v7 = (v7 >>> 7) | (v7 << 25);
      v3 = (v3 + v4 + m[SIGMA[s + 14]!]!) | 0; v14 ^= v3; v14 = (v14 >>> 16) | (v14 << 16);
      v9 = (v9 + v14) | 0; v4 ^= v9; v4 = (v4 >>> 12) | (v4 << 20);
      v3 = (v3 + v4 + m[SIGMA[s + 15]!]!) | 0; v14 ^= v3; v14 = (v14 >>> 8) | (v14 << 24);
      v9 = (v9 + v14) | 0; v4 ^= v9; v4 = (v4 >>> 7) | (v4 << 25);
    }
    h[0] ^= v0 ^ v8; h[1] ^= v1 ^ v9; h[2] ^= v2 ^ v10; h[3] ^= v3 ^ v11;
    h[4] ^= v4 ^ v12; h[5] ^= v5 ^ v13; h[6] ^= v6 ^ v14; h[7] ^= v7 ^ v15;
  }
}

const state = new Blake2s();
const pad = new Uint8Array(BLOCK);
const inner = new Uint8Array(HASH_LEN);

/** HMAC's key block: `key` XOR `byte` repeated (0x36 inner, 0x5c outer). */
function padKey(byte: number, key: Uint8Array): Uint8Array {
  if (key.length > BLOCK) throw new RangeError('HMAC keys longer than a block are not used by WireGuard');
  pad.fill(byte);
  for (let i = 0; i < key.length; i++) pad[i]! ^= key[i]!;
  return pad;
}

/** out = BLAKE2s-256(a || b). `out` may alias `a` or `b`. */
export function hash(out: Uint8Array, a: Uint8Array, b?: Uint8Array): void {
  state.init(HASH_LEN).update(a);
  if (b) state.update(b);
  state.digestInto(out);
}

/** out = BLAKE2s-128 keyed with `key` over `data` (WireGuard's MAC). */
export function mac(out: Uint8Array, key: Uint8Array, data: Uint8Array): void {
  state.init(MAC_LEN, key).update(data).digestInto(out);
}

/** Saves into `out` (KEY_STATE_BYTES) the state of mac() keyed with `key`, for macFrom. */
export function macKeyState(out: Uint8Array, key: Uint8Array): void {
  state.init(MAC_LEN, key).saveBlock(out, 0);
}

/** mac() from a state macKeyState saved; `data` must not be empty (BLAKE2s finishes on the key block then). */
export function macFrom(out: Uint8Array, keyState: Uint8Array, data: Uint8Array): void {
  if (data.length === 0) throw new RangeError('macFrom needs data');
  state.resume(MAC_LEN, keyState, 0).update(data).digestInto(out);
}

/** Saves into `out` (HMAC_STATE_BYTES) HMAC's inner and outer states for `key` (at most 64 bytes), for hmacFrom. */
export function hmacKeyState(out: Uint8Array, key: Uint8Array): void {
  state.init(HASH_LEN).update(padKey(0x36, key)).saveBlock(out, 0);
  state.init(HASH_LEN).update(padKey(0x5c, key)).saveBlock(out, KEY_STATE_BYTES);
  pad.fill(0);
}

/**
 * HMAC-BLAKE2s-256(key, a || b) from the states hmacKeyState saved for the key; a || b must not
 * be empty (as macFrom). `out` may alias an input.
 */
export function hmacFrom(out: Uint8Array, keyStates: Uint8Array, a: Uint8Array, b?: Uint8Array): void {
  if (a.length === 0 && (b === undefined || b.length === 0)) throw new RangeError('hmacFrom needs data');
  state.resume(HASH_LEN, keyStates, 0).update(a);
  if (b) state.update(b);
  state.digestInto(inner);
  state.resume(HASH_LEN, keyStates, KEY_STATE_BYTES).update(inner).digestInto(out);
  inner.fill(0);
}

/** out = HMAC-BLAKE2s-256(key, a || b), key at most 64 bytes. `out` may alias an input. */
export function hmac(out: Uint8Array, key: Uint8Array, a: Uint8Array, b?: Uint8Array): void {
  state.init(HASH_LEN).update(padKey(0x36, key)).update(a);
  if (b) state.update(b);
  state.digestInto(inner);
  state.init(HASH_LEN).update(padKey(0x5c, key)).update(inner).digestInto(out);
  pad.fill(0);
  inner.fill(0);
}
