/**
 * Handshake rate limiter, after the kernel's drivers/net/wireguard/ratelimiter.c: one token
 * bucket per source, 20 packets/s with a burst of 5. IPv4 sources are keyed by the full
 * address; IPv6 sources by their /64, since one host usually owns a whole /64 and would
 * otherwise mint fresh buckets at will.
 *
 * Tokens are nanoseconds of credit, as in the kernel: a packet costs PACKET_COST, credit
 * accrues one per elapsed nanosecond and is capped at TOKEN_MAX, so the burst is part of the
 * cap rather than of the rate.
 *
 * Storage is an open-addressing table (linear probing, no tombstones: deletion shifts the
 * rest of the cluster back) in typed arrays allocated once, so `allow` allocates nothing.
 * Buckets are found through HalfSipHash-1-3 under a random key (the kernel's hsiphash), so a
 * sender cannot choose addresses that pile up in one probe run. The table holds at most
 * `maxEntries` sources; when it is full, new sources are refused until `gc` frees idle ones,
 * which is what the kernel does (an attacker filling it only locks out sources that are new).
 *
 * Clock values are passed in (nanoseconds of a monotonic clock as a number; float64 keeps
 * nanosecond precision for 104 days of uptime and stays far finer than PACKET_COST after).
 */

export const PACKETS_PER_SECOND = 20;
export const PACKETS_BURSTABLE = 5;
export const PACKET_COST = 1e9 / PACKETS_PER_SECOND;
export const TOKEN_MAX = PACKET_COST * PACKETS_BURSTABLE;
/** An entry idle for longer than this is dropped by `gc`. */
export const RATELIMITER_IDLE_NS = 1e9;
/** The kernel's max_entries on a machine with more than 1 GiB of RAM (8192 buckets × 8). */
export const DEFAULT_MAX_ENTRIES = 65536;

const EMPTY = 0;
const V4 = 4;
const V6 = 6;

export interface RateLimiterOptions {
  /** Most sources tracked at once (default DEFAULT_MAX_ENTRIES). */
  maxEntries?: number;
  /** Hash key, 64 bits as two uint32 words; random by default. Tests pass one to be repeatable. */
  key?: readonly [number, number];
}

export class RateLimiter {
  readonly maxEntries: number;
  private readonly mask: number;
  private readonly family: Uint8Array;
  /** IPv4: the address. IPv6: the first 32 bits of the /64. Big-endian word order. */
  private readonly keyHi: Uint32Array;
  /** IPv6: the second 32 bits of the /64. IPv4: 0. */
  private readonly keyLo: Uint32Array;
  private readonly lastNs: Float64Array;
  private readonly tokens: Float64Array;
  private readonly k0: number;
  private readonly k1: number;
  private count = 0;

  constructor(options: RateLimiterOptions = {}) {
    const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1 || maxEntries > 1 << 28) {
      throw new RangeError(`RateLimiter maxEntries must be an integer in [1, 2^28], got ${maxEntries}`);
    }
    this.maxEntries = maxEntries;
    // Load factor at most 1/2 keeps probe runs short and guarantees an empty slot to stop on.
    let capacity = 16;
    while (capacity < maxEntries * 2) capacity *= 2;
    this.mask = capacity - 1;
    this.family = new Uint8Array(capacity);
    this.keyHi = new Uint32Array(capacity);
    this.keyLo = new Uint32Array(capacity);
    this.lastNs = new Float64Array(capacity);
    this.tokens = new Float64Array(capacity);
    let key = options.key;
    if (key === undefined) {
      const random = new Uint32Array(2);
      globalThis.crypto.getRandomValues(random);
      key = [random[0]!, random[1]!];
    }
    this.k0 = key[0] >>> 0;
    this.k1 = key[1] >>> 0;
  }

  /** Sources currently tracked. */
  get size(): number {
    return this.count;
  }

  /**
   * Account one handshake message from the source address in `addr[offset .. offset+len)`
   * (4 bytes: IPv4, 16 bytes: IPv6) at `nowNs`. True: process it. False: drop it (over the
   * rate, table full, or not an address).
   */
  allow(addr: Uint8Array, offset: number, len: 4 | 16, nowNs: number): boolean {
    if ((len !== 4 && len !== 16) || !Number.isInteger(offset) || offset < 0 || offset + len > addr.length) {
      return false;
    }
    const fam = len === 4 ? V4 : V6;
    const hi = be32(addr, offset);
    const lo = fam === V4 ? 0 : be32(addr, offset + 4);

    const mask = this.mask;
    let i = this.hash(fam, hi, lo) & mask;
    for (;;) {
      const f = this.family[i]!;
      if (f === EMPTY) break;
      if (f === fam && this.keyHi[i] === hi && this.keyLo[i] === lo) {
        // A clock that steps back earns no credit (the kernel's u64 would wrap instead).
        const elapsed = nowNs > this.lastNs[i]! ? nowNs - this.lastNs[i]! : 0;
        const tokens = Math.min(TOKEN_MAX, this.tokens[i]! + elapsed);
        this.lastNs[i] = nowNs;
        const ok = tokens >= PACKET_COST;
        this.tokens[i] = ok ? tokens - PACKET_COST : tokens;
        return ok;
      }
      i = (i + 1) & mask;
    }

    if (this.count >= this.maxEntries) return false;
    this.family[i] = fam;
    this.keyHi[i] = hi;
    this.keyLo[i] = lo;
    this.lastNs[i] = nowNs;
    this.tokens[i] = TOKEN_MAX - PACKET_COST;
    this.count++;
    return true;
  }

  /**
   * Drop sources idle for more than RATELIMITER_IDLE_NS. Call about once a second from the
   * periodic tick (the kernel's gc work runs every second); it walks the whole table.
   */
  gc(nowNs: number): void {
    if (this.count === 0) return;
    const mask = this.mask;
    // Start just after an empty slot: no probe run wraps past it, and backward shifts only
    // move entries towards the scan position, never behind it, so each is examined once.
    let start = 0;
    while (this.family[start] !== EMPTY) start++;
    let i = (start + 1) & mask;
    for (let n = 0; n < mask; n++) {
      // After a deletion the slot holds a shifted-in entry, which must be examined too.
      while (this.family[i] !== EMPTY && nowNs - this.lastNs[i]! > RATELIMITER_IDLE_NS) this.remove(i);
      i = (i + 1) & mask;
    }
  }

  /** Forget every source. */
  clear(): void {
    this.family.fill(EMPTY);
    this.count = 0;
  }

  /** Backward-shift deletion: later members of the probe run move up so lookups still find them. */
  private remove(hole: number): void {
    const mask = this.mask;
    let j = hole;
    for (;;) {
      j = (j + 1) & mask;
      const f = this.family[j]!;
      if (f === EMPTY) break;
      const home = this.hash(f, this.keyHi[j]!, this.keyLo[j]!) & mask;
      // Entry j may fill the hole only if its home is not cyclically within (hole, j].
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      this.family[hole] = f;
      this.keyHi[hole] = this.keyHi[j]!;
      this.keyLo[hole] = this.keyLo[j]!;
      this.lastNs[hole] = this.lastNs[j]!;
      this.tokens[hole] = this.tokens[j]!;
      hole = j;
    }
    this.family[hole] = EMPTY;
    this.count--;
  }

  private hash(fam: number, hi: number, lo: number): number {
    return hsiphash(this.k0, this.k1, fam === V4 ? 1 : 2, hi, lo);
  }
}

function be32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/**
 * HalfSipHash-1-3 of one or two 32-bit words under the 64-bit key (k0, k1): the kernel's
 * hsiphash_1u32 / hsiphash_2u32 on 32-bit machines. The length byte in the final block keeps
 * a one-word input (IPv4) apart from a two-word one (IPv6 /64).
 */
export function hsiphash(k0: number, k1: number, words: 1 | 2, m0: number, m1: number): number {
  let v0 = k0 | 0;
  let v1 = k1 | 0;
  let v2 = 0x6c796765 ^ k0;
  let v3 = 0x74656462 ^ k1;
  const lengthBlock = (words * 4) << 24;
  // Message words and the length block get one SipRound each (c = 1), then three more
  // finalize (d = 3); finalization rounds absorb a zero word, which changes nothing.
  for (let r = 0; r < words + 4; r++) {
    const m = r < words ? (r === 0 ? m0 : m1) : r === words ? lengthBlock : 0;
    if (r === words + 1) v2 ^= 0xff;
    v3 ^= m;
    v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
    v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
    v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
    v0 ^= m;
  }
  return (v1 ^ v3) >>> 0;
}
