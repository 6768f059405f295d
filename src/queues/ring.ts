// Single-producer / single-consumer ring of uint32 slot indices over a SharedArrayBuffer, and
// the doorbell a consumer parks on.
//
// Roles: exactly one thread calls the producer methods (push, pushBatch) and exactly one calls
// the consumer methods (pop, popBatch, waitForData*). Each thread attaches with
// `Ring.fromShared(desc)`. Several producers feeding one consumer (workers -> main thread for
// handshake messages) get one ring each and share the consumer's Doorbell: the consumer parks
// once on that doorbell and any producer wakes it. That keeps every ring wait-free and
// single-writer per word, which an MPSC ring would not be.
//
// Never blocking the producer: a full ring takes what fits and the rest is the caller's to drop
// (free the slots) and count; `dropped` keeps a per-ring tally for metrics. The main thread may
// produce freely and consume only with `waitForDataAsync` (Atomics.waitAsync), never with
// `waitForData`, which parks the calling thread.
//
// Parking: waking a parked thread costs ~22 µs, so the consumer first spins on the ring for a
// while, then announces `sleeping = 1` on the doorbell, re-checks, and parks with Atomics.wait
// on that word. A producer publishes its tail and then reads `sleeping`; only when it is set
// does it pay for Atomics.notify, once per batch. Atomics are sequentially consistent, so at
// least one side sees the other's store: the consumer finds the data or the producer finds the
// sleeper (Dekker). The producer clears the word with an exchange so only one of several
// producers notifies, and a consumer that has not reached Atomics.wait yet returns at once.
//
// Counters head and tail run freely over int32 and wrap; `(tail - head) | 0` is the fill level
// as long as the capacity is at most 2^30. Each side keeps its own counter locally and caches
// the other's, reloading it only when the cached value says full / empty (fewer cache misses
// on the other side's line).

/** Default consumer spin before parking, in ring polls (~10-20 µs, about one wake-up's cost). */
export const SPIN_POLLS = 2000;
const MAX_CAPACITY = 1 << 30;

// Ring control words, each written by one side, 64 bytes apart so they never share a line.
const HEAD = 0; // consumer
const TAIL = 16; // producer
const DROPPED = 17; // producer
const DATA_BYTE_OFFSET = 128;

const SLEEPING = 0;
const DOORBELL_BYTES = 64;

type WaitAsyncResult =
  | { async: false; value: 'not-equal' | 'timed-out' }
  | { async: true; value: Promise<'ok' | 'timed-out'> };
// Atomics.waitAsync exists in Node >= 16 but is newer than the ES2022 lib this repo compiles against.
const waitAsync = (Atomics as unknown as {
  waitAsync(ta: Int32Array, index: number, value: number, timeoutMs?: number): WaitAsyncResult;
}).waitAsync;

/** A consumer's parking word, shareable by every ring that feeds that consumer. */
export class Doorbell {
  readonly buffer: SharedArrayBuffer;
  /** How many times this thread's consumer actually parked (a local count, for metrics). */
  parks = 0;
  /** How many of those parks ended by timeout rather than by a producer (local, for metrics). */
  timeouts = 0;
  private readonly word: Int32Array;

  private constructor(buffer: SharedArrayBuffer) {
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength !== DOORBELL_BYTES) {
      throw new TypeError('a doorbell is a 64-byte SharedArrayBuffer');
    }
    this.buffer = buffer;
    this.word = new Int32Array(buffer);
  }

  static create(): Doorbell {
    return new Doorbell(new SharedArrayBuffer(DOORBELL_BYTES));
  }

  static fromShared(buffer: SharedArrayBuffer): Doorbell {
    return new Doorbell(buffer);
  }

  /** Producer side, after publishing: wakes the consumer if it announced it is parked. Never blocks. */
  ring(): void {
    const w = this.word;
    if (Atomics.load(w, SLEEPING) !== 0 && Atomics.exchange(w, SLEEPING, 0) !== 0) {
      Atomics.notify(w, SLEEPING, 1);
    }
  }

  /**
   * Consumer side, worker threads only: polls `ready` up to `spins` times, then parks until a
   * producer rings or `timeoutMs` passes. Returns `ready()` at the end.
   */
  wait(ready: () => boolean, timeoutMs: number, spins: number): boolean {
    for (let i = 0; i < spins; i++) if (ready()) return true;
    if (this.announce(ready)) return true;
    if (Atomics.wait(this.word, SLEEPING, 1, timeoutMs) === 'timed-out') this.timeouts++;
    Atomics.store(this.word, SLEEPING, 0);
    return ready();
  }

  /** Consumer side without blocking (main thread): no spinning, resolves when rung or timed out. */
  async waitAsync(ready: () => boolean, timeoutMs: number): Promise<boolean> {
    if (ready() || this.announce(ready)) return true;
    const r = waitAsync(this.word, SLEEPING, 1, timeoutMs);
    if ((r.async ? await r.value : r.value) === 'timed-out') this.timeouts++;
    Atomics.store(this.word, SLEEPING, 0);
    return ready();
  }

  // Sets `sleeping` and looks once more, closing the race with a producer that published just
  // before reading the word. True: data arrived, do not park.
  private announce(ready: () => boolean): boolean {
    Atomics.store(this.word, SLEEPING, 1);
    if (ready()) {
      Atomics.store(this.word, SLEEPING, 0);
      return true;
    }
    this.parks++;
    return false;
  }
}

/** Everything another thread needs to attach to a ring (structured-clonable). */
export interface RingDesc {
  buffer: SharedArrayBuffer;
  doorbell: SharedArrayBuffer;
}

export class Ring {
  readonly desc: RingDesc;
  readonly capacity: number;
  readonly doorbell: Doorbell;
  /** Consumer polls before parking in `waitForData`; tune per thread. */
  spinPolls = SPIN_POLLS;
  private readonly ctl: Int32Array;
  private readonly data: Uint32Array;
  private readonly mask: number;
  // Producer-local.
  private tail: number;
  private headCache: number;
  // Consumer-local.
  private head: number;
  private tailCache: number;
  // Created once so waiting allocates nothing.
  private readonly ready = (): boolean => {
    if (this.tailCache !== this.head) return true;
    this.tailCache = Atomics.load(this.ctl, TAIL);
    return this.tailCache !== this.head;
  };

  private constructor(desc: RingDesc, doorbell: Doorbell) {
    const { buffer } = desc;
    if (!(buffer instanceof SharedArrayBuffer)) throw new TypeError('ring buffer must be a SharedArrayBuffer');
    const capacity = (buffer.byteLength - DATA_BYTE_OFFSET) / 4;
    checkCapacity(capacity);
    this.desc = { buffer, doorbell: doorbell.buffer };
    this.capacity = capacity;
    this.doorbell = doorbell;
    this.ctl = new Int32Array(buffer, 0, DATA_BYTE_OFFSET / 4);
    this.data = new Uint32Array(buffer, DATA_BYTE_OFFSET, capacity);
    this.mask = capacity - 1;
    this.tail = this.tailCache = Atomics.load(this.ctl, TAIL);
    this.head = this.headCache = Atomics.load(this.ctl, HEAD);
  }

  /** A ring of `capacity` (power of two) entries; pass the consumer's doorbell to share it. */
  static create(capacity: number, doorbell: Doorbell = Doorbell.create()): Ring {
    checkCapacity(capacity);
    return new Ring({ buffer: new SharedArrayBuffer(DATA_BYTE_OFFSET + capacity * 4), doorbell: doorbell.buffer }, doorbell);
  }

  /** Attaches to a ring made elsewhere; pass a doorbell to reuse this thread's object for it. */
  static fromShared(desc: RingDesc, doorbell?: Doorbell): Ring {
    if (doorbell !== undefined && doorbell.buffer !== desc.doorbell) {
      throw new Error('doorbell does not belong to this ring');
    }
    return new Ring(desc, doorbell ?? Doorbell.fromShared(desc.doorbell));
  }

  /** Entries waiting; exact for the consumer, a lower bound of free space for the producer. */
  size(): number {
    return (Atomics.load(this.ctl, TAIL) - Atomics.load(this.ctl, HEAD)) | 0;
  }

  /** Entries producers could not push, since creation. */
  dropped(): number {
    return Atomics.load(this.ctl, DROPPED) >>> 0;
  }

  /** Producer: appends `src[0..k)`, k = as many as fit of `n`, and wakes a parked consumer. */
  pushBatch(src: Uint32Array, n: number): number {
    checkBatch(src, n);
    const tail = this.tail;
    let free = this.capacity - ((tail - this.headCache) | 0);
    if (free < n) {
      this.headCache = Atomics.load(this.ctl, HEAD);
      free = this.capacity - ((tail - this.headCache) | 0);
    }
    const k = n < free ? n : free;
    if (k < n) Atomics.add(this.ctl, DROPPED, n - k);
    if (k === 0) return 0;
    const data = this.data;
    const mask = this.mask;
    for (let i = 0; i < k; i++) data[(tail + i) & mask] = src[i];
    this.tail = (tail + k) | 0;
    Atomics.store(this.ctl, TAIL, this.tail);
    this.doorbell.ring();
    return k;
  }

  /** Producer: appends one entry; false when full (counted as dropped). */
  push(value: number): boolean {
    const tail = this.tail;
    if (((tail - this.headCache) | 0) === this.capacity) {
      this.headCache = Atomics.load(this.ctl, HEAD);
      if (((tail - this.headCache) | 0) === this.capacity) {
        Atomics.add(this.ctl, DROPPED, 1);
        return false;
      }
    }
    this.data[tail & this.mask] = value;
    this.tail = (tail + 1) | 0;
    Atomics.store(this.ctl, TAIL, this.tail);
    this.doorbell.ring();
    return true;
  }

  /** Consumer: moves up to `max` entries into `dst[0..k)` and returns k (0 when empty). */
  popBatch(dst: Uint32Array, max: number): number {
    checkBatch(dst, max);
    const head = this.head;
    let avail = (this.tailCache - head) | 0;
    if (avail < max) {
      this.tailCache = Atomics.load(this.ctl, TAIL);
      avail = (this.tailCache - head) | 0;
    }
    const k = max < avail ? max : avail;
    if (k === 0) return 0;
    const data = this.data;
    const mask = this.mask;
    for (let i = 0; i < k; i++) dst[i] = data[(head + i) & mask];
    this.head = (head + k) | 0;
    Atomics.store(this.ctl, HEAD, this.head);
    return k;
  }

  /** Consumer: one entry, or -1 when empty. */
  pop(): number {
    if (!this.ready()) return -1;
    const value = this.data[this.head & this.mask];
    this.head = (this.head + 1) | 0;
    Atomics.store(this.ctl, HEAD, this.head);
    return value;
  }

  /** Consumer, worker threads only: true once data is there, false after `timeoutMs` without. */
  waitForData(timeoutMs: number): boolean {
    return this.ready() || this.doorbell.wait(this.ready, timeoutMs, this.spinPolls);
  }

  /** Consumer, main thread: like waitForData without blocking or spinning. */
  waitForDataAsync(timeoutMs: number): Promise<boolean> {
    return this.doorbell.waitAsync(this.ready, timeoutMs);
  }
}

function checkCapacity(capacity: number): void {
  if (!Number.isInteger(capacity) || capacity < 2 || capacity > MAX_CAPACITY || (capacity & (capacity - 1)) !== 0) {
    throw new RangeError(`ring capacity ${capacity} must be a power of two in 2..2^30`);
  }
}

/** Throws unless `n` is a whole count that fits `arr` (a batch of slot indices). */
export function checkBatch(arr: Uint32Array, n: number): void {
  if (!((n | 0) === n && n >= 0 && n <= arr.length)) {
    throw new RangeError(`batch of ${n} does not fit an array of ${arr.length}`);
  }
}
