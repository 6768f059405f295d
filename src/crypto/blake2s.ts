// BLAKE2s (RFC 7693) in the three shapes WireGuard uses: HASH (32-byte digest), MAC (keyed,
// 16 bytes) and HMAC-BLAKE2s. A handshake runs about sixty of these on inputs under 200 bytes,
// where node:crypto's per-call OpenSSL context (~5 µs) and @noble/hashes' keyed setup (~18 µs)
// cost more than the hashing itself, so this is a small allocation-free implementation whose
// state lives in typed arrays created once. The state is module-level: every worker thread has
// its own module instance, and no function here yields, so calls never interleave.

export const HASH_LEN = 32;
export const MAC_LEN = 16;
const BLOCK = 64;

const IV = Uint32Array.of(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);
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
  private readonly h = new Uint32Array(8);
  private readonly v = new Uint32Array(16);
  private readonly m = new Uint32Array(16);
  private readonly buf = new Uint8Array(BLOCK);
  private readonly out = new Uint8Array(HASH_LEN);
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

  update(data: Uint8Array): this {
    let i = 0;
    const n = data.length;
    while (i < n) {
      if (this.bufLen === BLOCK) {
        this.total += BLOCK;
        this.compress(false);
        this.bufLen = 0;
      }
      const take = Math.min(BLOCK - this.bufLen, n - i);
      this.buf.set(data.subarray(i, i + take), this.bufLen);
      this.bufLen += take;
      i += take;
    }
    return this;
  }

  /** Writes the digest into `out` (which may alias an input) and wipes the state. */
  digestInto(out: Uint8Array): void {
    this.total += this.bufLen;
    this.buf.fill(0, this.bufLen);
    this.compress(true);
    const o = this.out;
    for (let i = 0; i < 8; i++) {
      const w = this.h[i]!;
      o[4 * i] = w;
      o[4 * i + 1] = w >>> 8;
      o[4 * i + 2] = w >>> 16;
      o[4 * i + 3] = w >>> 24;
    }
    out.set(o.subarray(0, this.outLen));
    this.h.fill(0);
    this.buf.fill(0);
    o.fill(0);
  }

  private compress(last: boolean): void {
    const { h, v, m, buf } = this;
    for (let i = 0; i < 16; i++) {
      m[i] = buf[4 * i]! | (buf[4 * i + 1]! << 8) | (buf[4 * i + 2]! << 16) | (buf[4 * i + 3]! << 24);
    }
    v.set(h);
    v.set(IV, 8);
    v[12]! ^= this.total >>> 0;
    v[13]! ^= Math.floor(this.total / 0x100000000);
    if (last) v[14] = ~v[14]!;
    for (let r = 0; r < 10; r++) {
      const s = r * 16;
      g(v, m, 0, 4, 8, 12, SIGMA[s]!, SIGMA[s + 1]!);
      g(v, m, 1, 5, 9, 13, SIGMA[s + 2]!, SIGMA[s + 3]!);
      g(v, m, 2, 6, 10, 14, SIGMA[s + 4]!, SIGMA[s + 5]!);
      g(v, m, 3, 7, 11, 15, SIGMA[s + 6]!, SIGMA[s + 7]!);
      g(v, m, 0, 5, 10, 15, SIGMA[s + 8]!, SIGMA[s + 9]!);
      g(v, m, 1, 6, 11, 12, SIGMA[s + 10]!, SIGMA[s + 11]!);
      g(v, m, 2, 7, 8, 13, SIGMA[s + 12]!, SIGMA[s + 13]!);
      g(v, m, 3, 4, 9, 14, SIGMA[s + 14]!, SIGMA[s + 15]!);
    }
    for (let i = 0; i < 8; i++) h[i]! ^= v[i]! ^ v[i + 8]!;
  }
}

function g(v: Uint32Array, m: Uint32Array, a: number, b: number, c: number, d: number, x: number, y: number): void {
  let va = v[a]!, vb = v[b]!, vc = v[c]!, vd = v[d]!;
  va = (va + vb + m[x]!) | 0;
  vd ^= va;
  vd = (vd >>> 16) | (vd << 16);
  vc = (vc + vd) | 0;
  vb ^= vc;
  vb = (vb >>> 12) | (vb << 20);
  va = (va + vb + m[y]!) | 0;
  vd ^= va;
  vd = (vd >>> 8) | (vd << 24);
  vc = (vc + vd) | 0;
  vb ^= vc;
  vb = (vb >>> 7) | (vb << 25);
  v[a] = va;
  v[b] = vb;
  v[c] = vc;
  v[d] = vd;
}

const state = new Blake2s();
const pad = new Uint8Array(BLOCK);
const inner = new Uint8Array(HASH_LEN);

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

/** out = HMAC-BLAKE2s-256(key, a || b), key at most 64 bytes. `out` may alias an input. */
export function hmac(out: Uint8Array, key: Uint8Array, a: Uint8Array, b?: Uint8Array): void {
  if (key.length > BLOCK) throw new RangeError('HMAC keys longer than a block are not used by WireGuard');
  pad.fill(0x36);
  for (let i = 0; i < key.length; i++) pad[i]! ^= key[i]!;
  state.init(HASH_LEN).update(pad).update(a);
  if (b) state.update(b);
  state.digestInto(inner);
  pad.fill(0x5c);
  for (let i = 0; i < key.length; i++) pad[i]! ^= key[i]!;
  state.init(HASH_LEN).update(pad).update(inner).digestInto(out);
  pad.fill(0);
  inner.fill(0);
}
