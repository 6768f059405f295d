// Epoch-based reclamation between the main thread and the workers, the role RCU's grace period
// plays in the kernel: a peer or keypair slot that the main thread unpublished is reused (and a
// keypair's keys zeroed) only once no worker can still be using it.
//
// Word 0 is the global epoch, bumped by the main thread after each unpublish. Word 1 + w is
// worker w's announcement: the global epoch it read at the start of its current batch, or 0
// while it holds nothing (parked in poll, or not running). A worker reads every shared table
// only inside a batch, so once each worker has announced an epoch >= E, or 0, since the bump
// to E, none holds a reference taken before it: what was unpublished before E may be reused.
// Atomics are sequentially consistent, so a worker that announced >= E also sees every
// unpublish made before E.

const GLOBAL = 0;
/** A worker's announcement while it holds no reference. */
const QUIESCENT = 0;

export class EpochDomain {
  private readonly w: Int32Array;

  constructor(buffer: SharedArrayBuffer, readonly workers: number) {
    this.w = new Int32Array(buffer);
  }

  /** The shared words for `workers` workers, the global epoch at 1 so no announcement of it equals QUIESCENT. */
  static createBuffer(workers: number): SharedArrayBuffer {
    const buffer = new SharedArrayBuffer((workers + 1) * 4);
    Atomics.store(new Int32Array(buffer), GLOBAL, 1);
    return buffer;
  }

  // ---- worker side ----

  /** Start of a batch: from here on this worker may hold references. */
  enter(worker: number): void {
    Atomics.store(this.w, 1 + worker, Atomics.load(this.w, GLOBAL));
  }

  /** Before parking, and when a worker ends: it holds nothing. */
  quiesce(worker: number): void {
    Atomics.store(this.w, 1 + worker, QUIESCENT);
  }

  // ---- main thread ----

  /** Starts a new epoch after an unpublish; returns it (what was unpublished is reusable once `passed` says so). */
  advance(): number {
    // 2^31 bumps (one per unpublish batch) do not happen in a daemon's life.
    return Atomics.add(this.w, GLOBAL, 1) + 1;
  }

  current(): number {
    return Atomics.load(this.w, GLOBAL);
  }

  /** Whether every worker has crossed a batch boundary since `epoch` began (or holds nothing). */
  passed(epoch: number): boolean {
    for (let k = 1; k <= this.workers; k++) {
      const seen = Atomics.load(this.w, k);
      if (seen !== QUIESCENT && seen < epoch) return false;
    }
    return true;
  }
}
