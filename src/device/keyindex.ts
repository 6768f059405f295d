// Public keys (32 bytes) to small integers, without a string per key: the device's peers by
// public key (id = peer slot), and the set of keys in one `set` request while it is validated.
// A Map keyed by hex strings cost ~130 bytes and a 64-character string per peer, and building
// the string (Buffer.from(key).toString('hex')) was a tenth of a million-peer `setconf`.
//
// Open addressing with linear probing over an Int32Array of ids + 1 (0: empty), at most half
// full, grown by doubling (or sized up front: the device's is, so it never rehashes); deletion shifts the entries after the hole back (no tombstones), so
// a table that churns never degrades. The keys are copied into a table of our own by id (32
// bytes each), so the caller's buffers may be reused or wiped.
//
// Lookups take keys an attacker chooses (the static key of a handshake initiation), inserts
// only configured ones; the hash is seeded at random per table, so no one can aim a key at a
// long probe run.
import { randomInt } from 'node:crypto';

export const KEY_BYTES = 32;
/** Buckets hold id + 1, so an empty bucket is 0 and a fresh table is untouched zero pages. */
const EMPTY = 0;
const MIN_BUCKETS = 64;

export class KeyIndex {
  private buckets = new Int32Array(MIN_BUCKETS);
  private mask = MIN_BUCKETS - 1;
  /** Key of id i at keys[i*32 .. i*32+31]; grown by doubling up to `capacity` ids. */
  private keys: Uint8Array;
  private readonly seed = randomInt(0x7fffffff) | 1;
  size = 0;

  /** Ids from 0 to `capacity - 1`; room for `expected` keys before the first growth. */
  constructor(private readonly capacity: number, expected = 0) {
    this.keys = new Uint8Array(Math.min(capacity, Math.max(MIN_BUCKETS, expected)) * KEY_BYTES);
    if (expected * 2 > MIN_BUCKETS) this.rehash(2 ** Math.ceil(Math.log2(expected * 2)));
  }

  private hash(k: Uint8Array, off: number): number {
    let h = this.seed;
    for (let i = off; i < off + 16; i += 4) {
      h = Math.imul(h ^ (k[i]! | (k[i + 1]! << 8) | (k[i + 2]! << 16) | (k[i + 3]! << 24)), 0x85ebca6b);
      h ^= h >>> 15;
    }
    return Math.imul(h, 0xc2b2ae35) ^ (h >>> 13);
  }

  private equalAt(id: number, k: Uint8Array, off: number): boolean {
    const keys = this.keys;
    const base = id * KEY_BYTES;
    for (let i = 0; i < KEY_BYTES; i++) if (keys[base + i] !== k[off + i]) return false;
    return true;
  }

  /** The id of key k[off .. off+31], or -1. */
  get(k: Uint8Array, off = 0): number {
    const b = this.buckets, mask = this.mask;
    for (let i = this.hash(k, off) & mask; ; i = (i + 1) & mask) {
      const e = b[i]!;
      if (e === EMPTY) return -1;
      if (this.equalAt(e - 1, k, off)) return e - 1;
    }
  }

  /** Adds key k as `id`; the key must be absent and the id unused. */
  add(k: Uint8Array, id: number, off = 0): void {
    if (!(id >= 0 && id < this.capacity)) throw new RangeError(`key id out of range: ${id}`);
    if ((id + 1) * KEY_BYTES > this.keys.length) {
      let n = this.keys.length / KEY_BYTES;
      while (n <= id) n *= 2;
      const keys = new Uint8Array(Math.min(n, this.capacity) * KEY_BYTES);
      keys.set(this.keys);
      this.keys = keys;
    }
    this.keys.set(k.subarray(off, off + KEY_BYTES), id * KEY_BYTES);
    if ((this.size + 1) * 2 > this.buckets.length) this.rehash(this.buckets.length * 2);
    this.place(id);
    this.size++;
  }

  private place(id: number): void {
    const b = this.buckets, mask = this.mask;
    let i = this.hash(this.keys, id * KEY_BYTES) & mask;
    while (b[i] !== EMPTY) i = (i + 1) & mask;
    b[i] = id + 1;
  }

  private rehash(n: number): void {
    const old = this.buckets;
    this.buckets = new Int32Array(n);
    this.mask = n - 1;
    for (const e of old) if (e !== EMPTY) this.place(e - 1);
  }

  /** Removes the key held by `id` (which must be present); its key bytes are wiped. */
  delete(id: number): void {
    const b = this.buckets, mask = this.mask;
    let i = this.hash(this.keys, id * KEY_BYTES) & mask;
    while (b[i] !== id + 1) {
      if (b[i] === EMPTY) throw new Error(`key id ${id} is not in the index`);
      i = (i + 1) & mask;
    }
    // Backward-shift deletion: move later entries of the run into the hole when their home
    // bucket does not lie strictly between the hole and them (cyclically).
    let hole = i;
    for (let j = (i + 1) & mask; b[j] !== EMPTY; j = (j + 1) & mask) {
      const home = this.hash(this.keys, (b[j]! - 1) * KEY_BYTES) & mask;
      const between = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (!between) {
        b[hole] = b[j]!;
        hole = j;
      }
    }
    b[hole] = EMPTY;
    this.keys.fill(0, id * KEY_BYTES, (id + 1) * KEY_BYTES);
    this.size--;
  }

  /** Forgets every key. */
  clear(): void {
    this.buckets = new Int32Array(MIN_BUCKETS);
    this.mask = MIN_BUCKETS - 1;
    this.keys = new Uint8Array(Math.min(this.capacity, MIN_BUCKETS) * KEY_BYTES);
    this.size = 0;
  }
}
