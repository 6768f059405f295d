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
// thread rewrites and wipes (every thread reloads or wipes its copy at each change, busy or
// not), and the prepared DH results, which the main thread wipes once used.
//
// The pool is an optimisation, never a dependency: every task has a deadline, and a pool whose
// tasks keep failing or hang is taken down (`healthy` turns false, the caller answers on its own
// thread as with no pool at all) and tried again later, with a growing delay while it fails.
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import type { Rejection } from './noise.js';
import { INIT_LEN } from './messages.js';
import {
  BATCH_BYTES, BATCH_MAX, KEY_ACK, KEY_BUFFER_BYTES, KEY_GEN, KEY_OFFSET, PREPARE_MSGS, PREPARE_OUT, PREPARE_REJECTIONS, PREPARE_STATUS,
  ackCount, ackWord, messageAt, preparedAt, type PrepareTask, type PrepareWorkerData,
} from './prepare-batch.js';
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

/**
 * Deadline of one task, from the moment it is handed to the pool. A batch takes ~4 ms of DH; an
 * initiator retries after REKEY_TIMEOUT (5 s), so an answer later than that is wasted anyway.
 * 2 s leaves a wide margin for a loaded machine and still takes a hung pool down before the
 * initiator's first retry, which the main thread then answers.
 */
export const TASK_TIMEOUT_MS = 2000;
/** Failed tasks in a row after which the pool is taken down (a timeout takes it down at once). */
export const FAILURES_BEFORE_DOWN = 3;
/** Delay before a new pool is tried after one went down; doubled each time the new one fails too. */
export const RETRY_FIRST_MS = 30_000;
const RETRY_MAX_MS = 10 * 60_000;
/** How long close() waits for every thread to wipe its copy of the key before ending them. */
const CLOSE_WIPE_WAIT_MS = 500;

export interface OffloadOptions {
  /** Pool threads (default: one per CPU). */
  threads?: number;
  /** Most initiations queued in or waiting for the pool; beyond it `add` refuses. */
  capacity: number;
  /** Called on the main thread with each finished batch; its prepared outputs are wiped after. */
  done: (batch: PrepareBatch, current: boolean) => void;
  /**
   * Called when initiations are lost (a task failed or timed out, `done` threw, the pool went
   * down with them). `err` comes with the failures worth a log line: the current pool's, not
   * every batch that a pool taken down rejects on its way out.
   */
  failed: (count: number, err?: unknown) => void;
  /**
   * Told once when the pool goes down (initiations must then be answered without it, see
   * `healthy`) and once when a pool tried again has finished a batch; a retried pool that fails
   * again is no new outage and is not reported.
   */
  health: (healthy: boolean, why: string) => void;
  /** First delay before a new pool is tried (default RETRY_FIRST_MS; tests shorten it). */
  retryFirstMs?: number;
}

export class HandshakeOffload {
  private pool: Piscina | null = null;
  private readonly keyWords = new Int32Array(new SharedArrayBuffer(KEY_BUFFER_BYTES));
  private readonly key = new Uint8Array(this.keyWords.buffer, KEY_OFFSET, 32);
  private readonly spare: PrepareBatch[] = [];
  private open: PrepareBatch | null = null;
  /** Batches handed to the pool, in order: the first `threads` are running, the rest wait. */
  private readonly dispatched: PrepareBatch[] = [];
  private flushQueued = false;
  private closed = false;
  /** Tasks of the current pool that failed in a row. */
  private failures = 0;
  /** While the pool is down: the timer that tries a new one. */
  private retry: NodeJS.Timeout | null = null;
  private retryMs: number;
  /** A pool tried again that has not finished a batch yet: its failure is no new outage. */
  private onTrial = false;
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
    this.retryMs = o.retryFirstMs ?? RETRY_FIRST_MS;
  }

  /** Whether initiations may go to the pool; false while it is down (answer them without it). */
  get healthy(): boolean {
    return this.retry === null && !this.closed;
  }

  /**
   * Publishes our private key (null: none) to the pool. Every thread reloads or wipes its copy
   * as soon as it is not in the middle of a batch; results of older keys are marked stale.
   */
  setPrivateKey(key: Uint8Array | null): void {
    if (key === null) zero(this.key);
    else this.key.set(key);
    const gen = Atomics.load(this.keyWords, KEY_GEN) + 1;
    // The acknowledgement word first: a thread that sees the new generation must find it open.
    Atomics.store(this.keyWords, KEY_ACK, ackWord(gen));
    Atomics.store(this.keyWords, KEY_GEN, gen);
    Atomics.notify(this.keyWords, KEY_GEN);
    // Threads take ~300 ms to start, load sodium and warm up: start them with the key, not in the storm.
    if (key !== null) this.start();
  }

  /** Whether every pool thread has taken the current key (or wiped the old one, when there is none). */
  keyTaken(): boolean {
    return ackCount(Atomics.load(this.keyWords, KEY_ACK), Atomics.load(this.keyWords, KEY_GEN)) >= this.threads;
  }

  private start(): Piscina | null {
    if (this.pool !== null || !this.healthy) return this.pool;
    const workerData: PrepareWorkerData = { keyWords: this.keyWords };
    const pool = new Piscina({
      filename: new URL('./prepare-worker.js', import.meta.url).href,
      minThreads: this.threads,
      maxThreads: this.threads,
      idleTimeout: 2 ** 31 - 1,
      // Tasks are CPU-bound batches; queueing several per thread only hides the pool's depth.
      concurrentTasksPerWorker: 1,
      // Idle threads keep their event loop turning ('sync' parks them in Atomics.wait between
      // tasks), so each one can follow key changes on its own (prepare-worker.ts).
      atomics: 'async',
      workerData,
    });
    // A thread that dies between tasks (piscina reports it here, and would otherwise throw it
    // on the main thread) is a failure of the pool like a failed task.
    pool.on('error', (err: unknown) => this.poolFailed(pool, err, false));
    this.pool = pool;
    return pool;
  }

  /** Queues an initiation (INIT_LEN bytes) from endpoint row `row` of `from`; false when full or down. */
  add(msg: Uint8Array, from: EndpointTable, row: number): boolean {
    if (!this.healthy || this.inFlight >= this.o.capacity || msg.length !== INIT_LEN) return false;
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
    if (b === null) return;
    this.open = null;
    const pool = this.start();
    if (pool === null) {
      // The pool went down (or closed) after these were added.
      this.inFlight -= b.count;
      this.spare.push(b);
      if (!this.closed) this.o.failed(b.count);
      return;
    }
    this.dispatched.push(b);
    const task: PrepareTask = { gen: b.gen, count: b.count, buf: b.buf };
    pool.run(task, { transferList: [b.buf], signal: AbortSignal.timeout(TASK_TIMEOUT_MS) }).then((buf: ArrayBuffer) => {
      b.buf = buf;
      b.bytes = new Uint8Array(buf);
      if (pool === this.pool) this.succeeded();
      this.finish(b);
    }, (err: unknown) => {
      this.settled(b);
      // The buffer went to the thread that failed: this batch object starts over with a new one.
      b.buf = new ArrayBuffer(BATCH_BYTES);
      b.bytes = new Uint8Array(b.buf);
      this.spare.push(b);
      if (this.closed) return;
      const current = pool === this.pool;
      this.o.failed(b.count, current ? err : undefined);
      // piscina ends the thread of a task whose deadline passed (AbortError) and starts another.
      if (current) this.poolFailed(pool, err, err instanceof Error && err.name === 'AbortError');
    }).catch((err: unknown) => {
      // `done` threw: that batch's remaining initiations are lost, the daemon is not.
      if (!this.closed) this.o.failed(0, err);
    });
  }

  private succeeded(): void {
    this.failures = 0;
    if (!this.onTrial) return;
    this.onTrial = false;
    this.retryMs = this.o.retryFirstMs ?? RETRY_FIRST_MS;
    this.o.health(true, 'a batch was prepared again');
  }

  /** A failure of `pool`'s: takes it down after a hung task, or after FAILURES_BEFORE_DOWN in a row. */
  private poolFailed(pool: Piscina, err: unknown, timedOut: boolean): void {
    if (pool !== this.pool || this.closed) return;
    if (!timedOut && ++this.failures < FAILURES_BEFORE_DOWN) return;
    this.pool = null;
    this.failures = 0;
    // Its other tasks fail with it (not counted against the next pool) and its threads end,
    // hung ones included.
    pool.destroy().catch(() => {});
    if (this.onTrial) this.retryMs = Math.min(2 * this.retryMs, RETRY_MAX_MS);
    else {
      const why = timedOut ? `a batch took longer than ${TASK_TIMEOUT_MS} ms` : `${FAILURES_BEFORE_DOWN} batches in a row failed`;
      this.o.health(false, `${why} (${err instanceof Error ? err.message : String(err)})`);
    }
    this.onTrial = false;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.onTrial = true;
      this.start();
    }, this.retryMs);
    this.retry.unref();
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
    this.closed = true;
    if (this.retry !== null) clearTimeout(this.retry);
    this.setPrivateKey(null);
    const pool = this.pool;
    this.pool = null;
    if (pool) {
      // Let the threads drop the key from their Noise before they go (a hung one cannot).
      const deadline = Date.now() + CLOSE_WIPE_WAIT_MS;
      while (!this.keyTaken() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
      await pool.destroy();
    }
  }
}
