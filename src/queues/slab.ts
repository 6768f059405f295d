// Packet slab: N fixed-size packet slots in one SharedArrayBuffer, plus one 64-byte metadata
// record per slot in a second SharedArrayBuffer. Rings carry slot indices between threads; the
// bytes never move.
//
// Ownership (who may touch a slot):
// - Any thread may allocate and free. The free list is a lock-free stack (see below), so the
//   main thread never blocks on it either.
// - A slot has one owner at a time: the thread that allocated it, or the thread its index was
//   pushed to over a ring. Pushing an index hands the slot over; the pusher must not touch it
//   afterwards. Only the owner writes the bytes and the plain metadata words, and only the owner
//   frees it (exactly once: a double free throws).
// - The state word is the exception, for parallel crypto with ordered sending (kernel
//   queueing.h): the owner keeps the index on its per-peer queue and lends the slot to a crypto
//   worker; the worker writes the bytes and then sets Crypted or Dead; the owner reads the state
//   of its queue head and sends or drops it. Plain writes before an Atomics store are visible to
//   a thread that observes that store, so the bytes are ready once the state says so.
//
// Free list: a Treiber stack threaded through the slots' NEXT words. The head is one Int32 word
// holding `tag << idxBits | index`; every successful push or pop bumps the tag, so a pop that
// read a stale head fails its compare-exchange instead of linking a slot that was popped and
// pushed again in the meantime (ABA). With at most MAX_SLOTS slots the tag has at least 11 bits:
// an ABA slip would need a thread to stall between two loads while exactly a multiple of 2048
// batch operations complete and the same slot is back on top. Batches pop or push a whole chain
// with one compare-exchange, so a worker pays one contended atomic per batch, not per packet.
import { checkBatch } from './ring.js';

/** Default slot size: a 1420-byte MTU packet, header room, padding to 16 and the 16-byte tag fit with room to spare. */
export const SLOT_SIZE = 2048;
/** Default bytes kept free in front of a packet so the 16-byte transport header can be prepended in place. */
export const HEADROOM = 32;
/** Upper bound on slots, so the free-list head keeps enough tag bits (see above). */
export const MAX_SLOTS = 1 << 20;

/** Per-slot pipeline state (kernel PACKET_STATE_*). Stored atomically in the STATE word. */
export const SlotState = {
  Free: 0,
  /** Allocated; bytes not yet encrypted / decrypted. */
  Uncrypted: 1,
  Crypted: 2,
  /** Crypto failed or the packet was dropped; the owner frees it without sending. */
  Dead: 3,
} as const;
export type SlotState = (typeof SlotState)[keyof typeof SlotState];

/** Word offsets inside a slot's metadata record. */
export const Meta = {
  /** Packet length in bytes. */
  LENGTH: 0,
  /** Byte offset of the packet inside its slot (starts at the headroom). */
  OFFSET: 1,
  /** Peer slot index, -1 when unknown. */
  PEER: 2,
  /** SlotState, accessed with Atomics only. */
  STATE: 3,
  /** Endpoint table index, -1 when unknown. */
  ENDPOINT: 4,
  /** Free-list link, owned by the allocator. */
  NEXT: 5,
} as const;
/** Int32 words per slot record: one 64-byte cache line, so workers setting the state words of
 * neighbouring slots in parallel do not false-share. Words 6..15 are free for later fields. */
export const META_STRIDE = 16;
const STRIDE_SHIFT = 4;
// The free-list head sits in its own cache line in front of the records.
const HEAD_WORD = 0;
const META_HEADER_WORDS = 16;

export interface SlabOptions {
  slots: number;
  slotSize?: number;
  headroom?: number;
}

/** Everything a worker needs to attach to the same slab (structured-clonable). */
export interface SlabDesc {
  data: SharedArrayBuffer;
  meta: SharedArrayBuffer;
  slotSize: number;
  headroom: number;
}

function checkSlotCount(slots: number): void {
  if (!Number.isInteger(slots) || slots < 1 || slots > MAX_SLOTS) {
    throw new RangeError(`slot count ${slots} must be in 1..${MAX_SLOTS}`);
  }
}

export class Slab {
  readonly desc: SlabDesc;
  readonly slotCount: number;
  readonly slotSize: number;
  readonly headroom: number;
  /** All slot bytes; slot i starts at `base(i)`. One view per thread. */
  readonly bytes: Uint8Array;
  /** Metadata records; prefer the accessors, `Meta` gives the layout for bulk code. */
  readonly meta: Int32Array;
  private readonly views: (Uint8Array | undefined)[];
  private readonly nil: number;
  private readonly idxBits: number;
  private readonly idxMask: number;
  private readonly one = new Uint32Array(1);

  private constructor(desc: SlabDesc) {
    const { data, meta, slotSize, headroom } = desc;
    if (!(data instanceof SharedArrayBuffer) || !(meta instanceof SharedArrayBuffer)) {
      throw new TypeError('slab buffers must be SharedArrayBuffers');
    }
    if (!Number.isInteger(slotSize) || slotSize < 64 || slotSize % 16 !== 0) {
      throw new RangeError(`slot size ${slotSize} must be a multiple of 16, at least 64`);
    }
    if (!Number.isInteger(headroom) || headroom < 0 || headroom >= slotSize) {
      throw new RangeError(`headroom ${headroom} must be in [0, slotSize)`);
    }
    const slots = data.byteLength / slotSize;
    checkSlotCount(slots);
    if (meta.byteLength !== (META_HEADER_WORDS + slots * META_STRIDE) * 4) {
      throw new RangeError('slab metadata buffer does not match the slot count');
    }
    this.desc = { data, meta, slotSize, headroom };
    this.slotCount = slots;
    this.slotSize = slotSize;
    this.headroom = headroom;
    this.bytes = new Uint8Array(data);
    this.meta = new Int32Array(meta);
    this.views = new Array<Uint8Array | undefined>(slots);
    this.nil = slots;
    this.idxBits = 32 - Math.clz32(slots);
    this.idxMask = (1 << this.idxBits) - 1;
  }

  /** Allocates a slab with every slot free. */
  static create(opts: SlabOptions): Slab {
    const slotSize = opts.slotSize ?? SLOT_SIZE;
    const headroom = opts.headroom ?? HEADROOM;
    const slots = opts.slots;
    checkSlotCount(slots); // before allocating: a bad count could ask for gigabytes
    const slab = new Slab({
      data: new SharedArrayBuffer(slots * slotSize),
      meta: new SharedArrayBuffer((META_HEADER_WORDS + slots * META_STRIDE) * 4),
      slotSize,
      headroom,
    });
    const m = slab.meta;
    for (let i = 0; i < slots; i++) {
      const r = slab.record(i);
      m[r + Meta.PEER] = -1;
      m[r + Meta.ENDPOINT] = -1;
      m[r + Meta.NEXT] = i + 1; // the last one links to nil == slots
    }
    Atomics.store(m, HEAD_WORD, 0);
    return slab;
  }

  /** Attaches to a slab created in another thread; this thread gets its own views. */
  static fromShared(desc: SlabDesc): Slab {
    return new Slab(desc);
  }

  /** Byte offset of slot `slot` in `bytes`. */
  base(slot: number): number {
    return slot * this.slotSize;
  }

  /** The whole slot as a Uint8Array of `slotSize` bytes, created once per slot per thread. */
  view(slot: number): Uint8Array {
    let v = this.views[slot];
    if (v === undefined) {
      this.checkSlot(slot);
      v = this.bytes.subarray(slot * this.slotSize, (slot + 1) * this.slotSize);
      this.views[slot] = v;
    }
    return v;
  }

  length(slot: number): number {
    return this.meta[this.record(slot) + Meta.LENGTH];
  }
  setLength(slot: number, n: number): void {
    this.meta[this.record(slot) + Meta.LENGTH] = n;
  }
  offset(slot: number): number {
    return this.meta[this.record(slot) + Meta.OFFSET];
  }
  setOffset(slot: number, off: number): void {
    this.meta[this.record(slot) + Meta.OFFSET] = off;
  }
  peer(slot: number): number {
    return this.meta[this.record(slot) + Meta.PEER];
  }
  setPeer(slot: number, peer: number): void {
    this.meta[this.record(slot) + Meta.PEER] = peer;
  }
  endpoint(slot: number): number {
    return this.meta[this.record(slot) + Meta.ENDPOINT];
  }
  setEndpoint(slot: number, ep: number): void {
    this.meta[this.record(slot) + Meta.ENDPOINT] = ep;
  }
  state(slot: number): SlotState {
    return Atomics.load(this.meta, this.record(slot) + Meta.STATE) as SlotState;
  }
  /** Publishes a new state; plain writes made before it are visible to whoever reads it. */
  setState(slot: number, s: SlotState): void {
    Atomics.store(this.meta, this.record(slot) + Meta.STATE, s);
  }
  /** Moves `from` -> `to` only if the slot is still in `from` (e.g. Uncrypted -> Dead on flush). */
  casState(slot: number, from: SlotState, to: SlotState): boolean {
    return Atomics.compareExchange(this.meta, this.record(slot) + Meta.STATE, from, to) === from;
  }

  /**
   * Takes up to `n` free slots into `dst[0..k)` and returns k (0 when the slab is exhausted:
   * the caller drops and counts). Each slot comes back Uncrypted, with offset = headroom and
   * length 0; peer and endpoint keep stale values.
   */
  allocBatch(dst: Uint32Array, n: number): number {
    checkBatch(dst, n);
    const m = this.meta;
    for (;;) {
      const head = Atomics.load(m, HEAD_WORD);
      let idx = head & this.idxMask;
      let k = 0;
      // Links read here may be stale if the stack changes under us; the compare-exchange then
      // fails. They are always a slot index or nil, so the walk stays in bounds.
      while (k < n && idx !== this.nil) {
        dst[k++] = idx;
        idx = Atomics.load(m, this.record(idx) + Meta.NEXT);
      }
      if (k === 0) return 0;
      if (Atomics.compareExchange(m, HEAD_WORD, head, this.nextHead(head, idx)) !== head) continue;
      for (let i = 0; i < k; i++) {
        const r = this.record(dst[i]);
        m[r + Meta.OFFSET] = this.headroom;
        m[r + Meta.LENGTH] = 0;
        Atomics.store(m, r + Meta.STATE, SlotState.Uncrypted);
      }
      return k;
    }
  }

  /** Returns `src[0..n)` to the free list. Throws on a slot that is already free. */
  freeBatch(src: Uint32Array, n: number): void {
    checkBatch(src, n);
    if (n === 0) return;
    // Check every index before linking any: a stale walker in allocBatch may follow these
    // links, and it must only ever find slot indices there.
    for (let i = 0; i < n; i++) this.checkSlot(src[i]);
    const m = this.meta;
    for (let i = 0; i < n; i++) {
      const slot = src[i];
      if (Atomics.exchange(m, this.record(slot) + Meta.STATE, SlotState.Free) === SlotState.Free) {
        throw new Error(`slot ${slot} freed twice`);
      }
      if (i + 1 < n) Atomics.store(m, this.record(slot) + Meta.NEXT, src[i + 1]);
    }
    const lastNext = this.record(src[n - 1]) + Meta.NEXT;
    for (;;) {
      const head = Atomics.load(m, HEAD_WORD);
      Atomics.store(m, lastNext, head & this.idxMask);
      if (Atomics.compareExchange(m, HEAD_WORD, head, this.nextHead(head, src[0])) === head) return;
    }
  }

  /** One slot, or -1 when the slab is exhausted. */
  alloc(): number {
    return this.allocBatch(this.one, 1) === 1 ? this.one[0] : -1;
  }

  free(slot: number): void {
    this.one[0] = slot;
    this.freeBatch(this.one, 1);
  }

  private nextHead(head: number, idx: number): number {
    return ((((head >>> this.idxBits) + 1) << this.idxBits) | idx) | 0;
  }

  /** Index in `meta` of the slot's record; add a `Meta` field offset. */
  record(slot: number): number {
    return (slot << STRIDE_SHIFT) + META_HEADER_WORDS;
  }

  private checkSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slotCount) {
      throw new RangeError(`slot ${slot} out of range 0..${this.slotCount - 1}`);
    }
  }
}
