// Handshake offload (DESIGN.md: "to a piscina pool under load"). When the main thread's queue
// of handshake messages is deep, initiations that passed mac1, cookie and rate-limit checks go
// in batches to a pool that runs prepareInitiation (noise.ts): the four X25519 operations of
// answering one that need no peer state. The main thread keeps everything that does (the peer
// lookup, the cached static-static DH, replay and flood checks, keypairs), so the control plane
// stays responsive and a storm's DH work spreads over the other cores.
//
// A batch is one ArrayBuffer moved (not copied) to the pool thread and back: status bytes, the
// prepared outputs, then the messages. Batches are reused, so a storm allocates only views.
// Secrets cross threads in two ways only: our private key in a SharedArrayBuffer that the main
// thread rewrites and wipes, and the prepared DH results, which the main thread wipes once used.
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import type { Rejection } from './noise.js';
import { INIT_LEN } from './messages.js';
import { BATCH_BYTES, BATCH_MAX, KEY_GEN, KEY_OFFSET, PREPARE_MSGS, PREPARE_OUT, PREPARE_REJECTIONS, PREPARE_STATUS, messageAt, preparedAt, type PrepareTask } from './prepare-batch.js';
import { EndpointTable, copyEndpoint } from '../net/endpoint.js';
import { zero } from '../crypto/memory.js';

/** A batch as the main thread sees it. */
export class PrepareBatch {
  gen = 0;
  count = 0;
  bytes: Uint8Array;
  /** Where each initiation came from, row i for initiation i. */
  readonly from = new EndpointTable(BATCH_MAX);

  constructor(public buf: ArrayBuffer = new ArrayBuffer(BATCH_BYTES)) {
    this.bytes = new Uint8Array(buf);
  }

  message(i: number): Uint8Array {
    return messageAt(this.bytes, i);
  }

  prepared(i: number): Uint8Array {
    return preparedAt(this.bytes, i);
  }

  /** Why initiation i could not be prepared, or undefined when it was. */
  rejection(i: number): Rejection | undefined {
    const status = this.bytes[PREPARE_STATUS + i]!;
    return status === 0 ? undefined : PREPARE_REJECTIONS[status] ?? 'state';
  }
}

export interface OffloadOptions {
  /** Pool threads (default: one per CPU). */
  threads?: number;
  /** Most initiations queued in or waiting for the pool; beyond it `add` refuses. */
  capacity: number;
  /** Called on the main thread with each finished batch; its prepared outputs are wiped after. */
  done: (batch: PrepareBatch, current: boolean) => void;
  /** Called when a task fails (the pool died): the batch's initiations are lost. */
  failed: (count: number, err: unknown) => void;
}

export class HandshakeOffload {
  private pool: Piscina | null = null;
  private readonly keyWords = new Int32Array(new SharedArrayBuffer(KEY_OFFSET + 32));
  private readonly key = new Uint8Array(this.keyWords.buffer, KEY_OFFSET, 32);
  private readonly spare: PrepareBatch[] = [];
  private open: PrepareBatch | null = null;
  /** Batches handed to the pool, in order: the first `threads` are running, the rest wait. */
  private readonly dispatched: PrepareBatch[] = [];
  private flushQueued = false;
  private closed = false;
  /** Initiations added and not yet handed back through `done`. */
  inFlight = 0;

  /**
   * Initiations waiting for a pool thread: the batch being filled and those queued behind the
   * ones the threads are working on (the kernel counts only its queue toward "under load", not
   * what its workers hold). Tasks start in the order they were run, one per thread.
   */
  backlog(): number {
    let n = this.open?.count ?? 0;
    for (let i = this.threads; i < this.dispatched.length; i++) n += this.dispatched[i]!.count;
    return n;
  }
  readonly threads: number;

  constructor(private readonly o: OffloadOptions) {
    this.threads = Math.max(1, o.threads ?? availableParallelism());
  }

  /** Publishes our private key (null: none) to the pool; results of older keys are marked stale. */
  setPrivateKey(key: Uint8Array | null): void {
    if (key === null) zero(this.key);
    else this.key.set(key);
    Atomics.add(this.keyWords, KEY_GEN, 1);
    // Threads take ~300 ms to start and load sodium: start them with the key, not in the storm.
    if (key !== null && this.pool === null) this.start();
    // Running threads still hold the old key in their Noise: an empty batch each makes them
    // reload it (an all-zero key clears theirs). Idle threads take one task each, so this reaches
    // every thread that is not busy; a busy one reloads at its next batch.
    else if (this.pool !== null) void this.touchThreads(this.pool);
  }

  /** Runs an empty batch per thread: it loads the current key (and warms a fresh thread up). */
  private touchThreads(pool: Piscina): Promise<unknown> {
    const runs: Promise<unknown>[] = [];
    for (let i = 0; i < this.threads; i++) {
      const task: PrepareTask = { gen: Atomics.load(this.keyWords, KEY_GEN), count: 0, keyWords: this.keyWords, buf: new ArrayBuffer(0) };
      // A pool that cannot start fails the first real batch too, which reports it (`failed`).
      runs.push(pool.run(task).catch(() => {}));
    }
    return Promise.all(runs);
  }

  private start(): Piscina | null {
    if (this.closed || this.pool !== null) return this.pool;
    const pool = new Piscina({
      filename: new URL('./prepare-worker.js', import.meta.url).href,
      minThreads: this.threads,
      maxThreads: this.threads,
      idleTimeout: 2 ** 31 - 1,
      // Tasks are CPU-bound batches; queueing several per thread only hides the pool's depth.
      concurrentTasksPerWorker: 1,
    });
    // An empty batch per thread loads its modules and our key now. Otherwise the first batches
    // of a storm wait ~300 ms for that, the queue looks deep, and every peer gets a cookie round.
    void this.touchThreads(pool);
    this.pool = pool;
    return pool;
  }

  /** Queues an initiation (INIT_LEN bytes) from endpoint row `row` of `from`; false when full. */
  add(msg: Uint8Array, from: EndpointTable, row: number): boolean {
    if (this.closed || this.inFlight >= this.o.capacity || msg.length !== INIT_LEN) return false;
    let b = this.open;
    if (b === null) {
      b = this.spare.pop() ?? new PrepareBatch();
      b.count = 0;
      b.gen = Atomics.load(this.keyWords, KEY_GEN);
      this.open = b;
    }
    b.bytes.set(msg, PREPARE_MSGS + b.count * INIT_LEN);
    copyEndpoint(from, row, b.from, b.count);
    b.count++;
    this.inFlight++;
    if (b.count === BATCH_MAX) this.flush();
    else if (!this.flushQueued) {
      // The rest of this drain pass may add more; send what there is once it ends.
      this.flushQueued = true;
      queueMicrotask(() => {
        this.flushQueued = false;
        this.flush();
      });
    }
    return true;
  }

  private flush(): void {
    const b = this.open;
    const pool = this.start();
    if (b === null || pool === null) return;
    this.open = null;
    this.dispatched.push(b);
    const task: PrepareTask = { gen: b.gen, count: b.count, keyWords: this.keyWords, buf: b.buf };
    pool.run(task, { transferList: [b.buf] }).then((buf: ArrayBuffer) => {
      b.buf = buf;
      b.bytes = new Uint8Array(buf);
      this.finish(b);
    }, (err: unknown) => {
      this.settled(b);
      // The buffer went to the thread that failed: this batch object starts over with a new one.
      b.buf = new ArrayBuffer(BATCH_BYTES);
      b.bytes = new Uint8Array(b.buf);
      this.spare.push(b);
      if (!this.closed) this.o.failed(b.count, err);
    }).catch((err: unknown) => {
      // `done` threw: that batch's remaining initiations are lost, the daemon is not.
      if (!this.closed) this.o.failed(0, err);
    });
  }

  private settled(b: PrepareBatch): void {
    this.inFlight -= b.count;
    const i = this.dispatched.indexOf(b);
    if (i >= 0) this.dispatched.splice(i, 1);
  }

  private finish(b: PrepareBatch): void {
    this.settled(b);
    try {
      if (!this.closed) this.o.done(b, b.gen === Atomics.load(this.keyWords, KEY_GEN));
    } finally {
      zero(b.bytes.subarray(PREPARE_OUT, PREPARE_MSGS));
      this.spare.push(b);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    zero(this.key);
    Atomics.add(this.keyWords, KEY_GEN, 1);
    const pool = this.pool;
    this.pool = null;
    this.closed = true;
    if (pool) {
      // Let the threads drop the key from their Noise before they go.
      await this.touchThreads(pool);
      await pool.destroy();
    }
  }
}
