/**
 * Anti-replay sliding window for transport-data counters, bit for bit the Linux kernel's
 * `counter_validate` (drivers/net/wireguard/receive.c, RFC 6479): a ring of 128 64-bit words
 * (8192 bits) of which one word is always being recycled, so the guaranteed window is
 * 8192 − 64 = 8128 counters behind the greatest one accepted.
 *
 * State lives in caller memory (an Int32Array/Uint32Array, typically over a SharedArrayBuffer
 * holding every keypair's window) so that all data-plane workers check counters for the same
 * keypair against one window. Layout, in 32-bit words from `offset`:
 *
 *   [0]        lock word: 0 = free, 1 = held
 *   [1], [2]   greatest accepted counter + 1, low and high half (0 = nothing accepted yet)
 *   [3]        unused, keeps the bitmap on a 16-byte boundary relative to `offset`
 *   [4..260)   bitmap; kernel 64-bit word k is our words 2k (bits 0–31) and 2k+1 (bits 32–63)
 *
 * Invariant: words [1..260) are read or written only while the lock word is held, and the lock
 * is taken with Atomics.compareExchange and released with Atomics.store, so every plain access
 * inside the critical section is ordered after the previous holder's (the JS memory model's
 * synchronizes-with edge on the lock word). The critical section never allocates, never
 * throws and runs a bounded loop (at most 128 word pairs cleared), so a spin lock suffices,
 * like the kernel's spin_lock_bh. A worker terminated while holding the lock would leave it
 * held: workers must not be terminated mid-packet; a keypair's window is discarded with it.
 *
 * Counters are 64-bit but taken as two uint32 halves so the hot path allocates no BigInt.
 */

const LOCK = 0;
const COUNTER_LO = 1;
const COUNTER_HI = 2;
const BITMAP = 4;

/** Kernel bitmap words (BITS_PER_LONG = 64): a power of two, so ring indices are masked. */
const RING_WORDS64 = 128;
const RING_MASK64 = RING_WORDS64 - 1;
/** Our 32-bit bitmap words: two per kernel word. */
const BITMAP_WORDS32 = RING_WORDS64 * 2;
const BITMAP_MASK32 = BITMAP_WORDS32 - 1;

/** COUNTER_BITS_TOTAL − BITS_PER_LONG: how far behind the greatest counter a packet may be. */
export const COUNTER_WINDOW_SIZE = RING_WORDS64 * 64 - 64;

/** Counters at or above this are rejected; the keypair is worn out (2^64 − 2^13 − 1). */
export const REJECT_AFTER_MESSAGES = (1n << 64n) - (1n << 13n) - 1n;
/** REJECT_AFTER_MESSAGES split into halves for the hot path: 0xFFFFFFFF_FFFFDFFF. */
const REJECT_HI = Number(REJECT_AFTER_MESSAGES >> 32n);
const REJECT_LO = Number(REJECT_AFTER_MESSAGES & 0xffffffffn);

/** 32-bit words of state one window needs in the caller's storage. */
export const REPLAY_STATE_WORDS = BITMAP + BITMAP_WORDS32;

function sharedWords(n: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(n * 4));
}

export class ReplayWindow {
  /** A view of exactly this window's words, whatever the caller's array type or offset. */
  private readonly s: Int32Array;

  /**
   * Attach to REPLAY_STATE_WORDS words of `storage` starting at word `offset`. Attaching
   * does not reset: all-zero words are a fresh window, and several workers attach to the same
   * words to share one window. Without `storage` the window gets memory of its own, shared
   * memory even so: V8's Atomics on a plain ArrayBuffer cost about twice as much (measured).
   */
  constructor(storage: Int32Array | Uint32Array = sharedWords(REPLAY_STATE_WORDS), offset = 0) {
    if (!(storage instanceof Int32Array || storage instanceof Uint32Array)) {
      throw new TypeError('ReplayWindow storage must be an Int32Array or Uint32Array');
    }
    const fits = offset >= 0 && offset + REPLAY_STATE_WORDS <= storage.length;
    if (!Number.isSafeInteger(offset) || !fits) {
      throw new RangeError(
        `ReplayWindow needs ${REPLAY_STATE_WORDS} words at offset ${offset}, ` +
          `storage has ${storage.length}`,
      );
    }
    // Atomics.compareExchange works on both, but one element type keeps the hot path monomorphic.
    this.s = new Int32Array(storage.buffer, storage.byteOffset + offset * 4, REPLAY_STATE_WORDS);
  }

  /**
   * Check the counter `hi * 2^32 + lo` of a packet that has already been authenticated, and
   * mark it seen. True: first time this counter is seen and it is inside the window. False: a
   * duplicate, older than the window, or at/after REJECT_AFTER_MESSAGES.
   */
  validate(lo: number, hi: number): boolean {
    // Coerce before taking the lock: a conversion that throws must not leave it held.
    lo >>>= 0;
    hi >>>= 0;
    if (hi === REJECT_HI && lo >= REJECT_LO) return false;
    // The kernel works on their_counter + 1 so that a stored 0 means "nothing accepted yet".
    // No carry out of 64 bits: the counter is below REJECT_AFTER_MESSAGES here.
    const tLo = (lo + 1) >>> 0;
    const tHi = tLo === 0 ? hi + 1 : hi;

    const s = this.s;
    this.lock(s);
    const cLo = s[COUNTER_LO] >>> 0;
    const cHi = s[COUNTER_HI] >>> 0;
    // The kernel also refuses once its stored counter passes REJECT_AFTER_MESSAGES; that state
    // is unreachable because only counters below the limit are ever stored (+1).
    if (tHi > cHi || (tHi === cHi && tLo > cLo)) {
      this.advance(s, cLo, cHi, tLo, tHi);
    } else {
      // Too old when t + WINDOW < c, i.e. c − t > WINDOW (64-bit subtraction, c ≥ t).
      const borrow = tLo > cLo ? 1 : 0;
      if (cHi - tHi - borrow !== 0 || ((cLo - tLo) >>> 0) > COUNTER_WINDOW_SIZE) {
        Atomics.store(s, LOCK, 0);
        return false;
      }
    }
    const word = BITMAP + ((tLo >>> 5) & BITMAP_MASK32);
    const bit = 1 << (tLo & 31);
    const old = s[word];
    s[word] = old | bit;
    Atomics.store(s, LOCK, 0);
    return (old & bit) === 0;
  }

  /** Same as validate, for tests and tools; anything outside uint64 is rejected. */
  validateBig(counter: bigint): boolean {
    if (counter < 0n || counter >= 1n << 64n) return false;
    return this.validate(Number(counter & 0xffffffffn), Number(counter >> 32n));
  }

  /** Forget every counter, as for a new keypair. Safe while other workers validate. */
  reset(): void {
    const s = this.s;
    this.lock(s);
    s.fill(0, COUNTER_LO);
    Atomics.store(s, LOCK, 0);
  }

  /** Spin: the holder runs a few dozen instructions, far less than parking would cost. */
  private lock(s: Int32Array): void {
    while (Atomics.compareExchange(s, LOCK, 0, 1) !== 0) {
      // spin
    }
  }

  /**
   * Move the window's head from c to t (t > c): clear the kernel words that the ring reuses
   * between c's word and t's word, at most the whole ring, then store t.
   */
  private advance(s: Int32Array, cLo: number, cHi: number, tLo: number, tHi: number): void {
    const dLo = (tLo - cLo) >>> 0;
    const dHi = tHi - cHi - (tLo < cLo ? 1 : 0);
    // Words to clear = (t >> 6) − (c >> 6) = ((c & 63) + (t − c)) >> 6, capped at the ring;
    // any distance of a full ring or more clears everything, so large ones need no exact math.
    const top =
      dHi !== 0 || dLo >= RING_WORDS64 * 64 ? RING_WORDS64 : ((cLo & 63) + dLo) >>> 6;
    const current = (cLo >>> 6) & RING_MASK64;
    for (let i = 1; i <= top; i++) {
      const w = BITMAP + (((current + i) & RING_MASK64) << 1);
      s[w] = 0;
      s[w + 1] = 0;
    }
    s[COUNTER_LO] = tLo;
    s[COUNTER_HI] = tHi;
  }
}

