// Packets a worker read from the TUN device for a peer that has no usable keypair yet, kept in
// the worker until a handshake gives the peer one (the kernel's staged_packet_queue, per peer;
// here per worker, so a flow's packets stay in order on the queue that carries the flow).
//
// Bounded by construction: the worker owns a fixed set of slab slots for this (kept across a
// restart), at most MAX_STAGED_PACKETS of them per peer, and a packet older than
// REKEY_ATTEMPT_TIME (the handshake gave up) is dropped. An entry names its peer as (slot,
// generation), so a packet staged for a peer that is removed is dropped, never sent to whoever
// takes the slot next. Nothing here crosses threads or touches the main thread's rings.
import { MAX_STAGED_PACKETS, REKEY_ATTEMPT_TIME } from '../handshake/constants.js';

export const STAGED_MAX_AGE_MS = REKEY_ATTEMPT_TIME * 1000;

export class Staging {
  /** Free staging slots (a stack). */
  private readonly free: Uint32Array;
  private nFree: number;
  // Entries in arrival order, as parallel arrays; [0, count) are live.
  private readonly slot: Uint32Array;
  private readonly peer: Int32Array;
  private readonly gen: Int32Array;
  private readonly len: Int32Array;
  private readonly time: Float64Array;
  private n = 0;
  /** Staged packets per peer slot. */
  private readonly perPeer: Uint8Array;

  constructor(slots: readonly number[], peerCapacity: number) {
    const cap = slots.length;
    this.free = Uint32Array.from(slots);
    this.nFree = cap;
    this.slot = new Uint32Array(cap);
    this.peer = new Int32Array(cap);
    this.gen = new Int32Array(cap);
    this.len = new Int32Array(cap);
    this.time = new Float64Array(cap);
    this.perPeer = new Uint8Array(peerCapacity);
  }

  get count(): number {
    return this.n;
  }

  /**
   * A slab slot to copy a packet of `peer` into, or -1 when the peer or the worker is at its
   * bound (the caller drops and counts). Commit it with `add`.
   */
  take(peer: number): number {
    if (this.nFree === 0 || this.perPeer[peer]! >= MAX_STAGED_PACKETS) return -1;
    return this.free[--this.nFree]!;
  }

  add(slot: number, peer: number, gen: number, len: number, nowMs: number): void {
    const i = this.n++;
    this.slot[i] = slot;
    this.peer[i] = peer;
    this.gen[i] = gen;
    this.len[i] = len;
    this.time[i] = nowMs;
    this.perPeer[peer]!++;
  }

  /**
   * Visits every entry in order; `visit(slot, peer, gen, len, time)` returns what to do with it:
   * Keep, Sent (the slot goes back once the send batch is out: `release`) or Drop. Stops early
   * (keeping the rest) when `visit` returns Stop.
   */
  sweep(visit: (slot: number, peer: number, gen: number, len: number, time: number) => StagedFate): void {
    let kept = 0;
    let i = 0;
    for (; i < this.n; i++) {
      const fate = visit(this.slot[i]!, this.peer[i]!, this.gen[i]!, this.len[i]!, this.time[i]!);
      if (fate === StagedFate.Stop) break;
      if (fate === StagedFate.Keep) {
        this.move(i, kept++);
        continue;
      }
      this.perPeer[this.peer[i]!]!--;
      if (fate === StagedFate.Drop) this.release(this.slot[i]!);
    }
    for (; i < this.n; i++) this.move(i, kept++);
    this.n = kept;
  }

  /** Returns a slot taken for a packet that was sent (or never added). */
  release(slot: number): void {
    this.free[this.nFree++] = slot;
  }

  private move(from: number, to: number): void {
    if (from === to) return;
    this.slot[to] = this.slot[from]!;
    this.peer[to] = this.peer[from]!;
    this.gen[to] = this.gen[from]!;
    this.len[to] = this.len[from]!;
    this.time[to] = this.time[from]!;
  }
}

export const StagedFate = { Keep: 0, Sent: 1, Drop: 2, Stop: 3 } as const;
export type StagedFate = (typeof StagedFate)[keyof typeof StagedFate];
