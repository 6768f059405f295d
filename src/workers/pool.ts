// The data-plane workers and everything shared with them: the packet slab, two rings per worker
// to the main thread (handshake messages; events), all sharing the main thread's doorbell, one
// eventfd per worker to wake it, and the routes snapshot channel. The main thread drains the
// rings with Atomics.waitAsync, so it never blocks.
//
// Supervision: a worker that throws or exits while the pool runs is started again on the same
// TUN queue and socket, with the same slab regions, within a second (sessions live in the
// shared tables, so they survive it). The slab regions a worker works in (batch slots, staging
// slots, the UDP GRO area, the large-packet buffers) are reserved here once and handed to every
// incarnation, so a crash leaks none of them.
import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { Slab, SLOT_SIZE } from '../queues/slab.js';
import { GRO_AREA_BYTES } from '../net/gro.js';
import { Ring, Doorbell } from '../queues/ring.js';
import { EndpointTable } from '../net/endpoint.js';
import { EventFd } from '../net/libc.js';
import { Tables, D_ROUTES_GEN, D_SHUTDOWN, D_STAGED } from '../queues/tables.js';
import type { WorkerInit, WorkerSlots } from '../queues/records.js';
import { LARGE_BUFFERS, LARGE_BUFFER_BYTES, STAGING_SLOTS } from './datapath.js';

export interface PoolOptions {
  tables: Tables;
  tunFds: number[];
  udpFds: number[];
  routes: SharedArrayBuffer;
  batch: number;
  offload: boolean;
  /** Called for every record; the callee frees the slot (also when it throws). */
  onRecord: (slot: number) => void;
  /** Told when onRecord threw (its bytes come from the network); the next records are handled all the same. */
  onRecordError: (err: unknown) => void;
  /** A worker failed; it is being restarted. */
  onWorkerError: (id: number, err: unknown) => void;
  /** Tests only: workers throw on demand (see D_TEST_FAULT). */
  testFaults?: boolean;
}

const RING_CAPACITY = 1024;
/** Handshake records the main thread handles per ring per event-loop turn at most. */
const DRAIN_BATCH = 256;
/** Events likewise (each "handshake wanted" may cost an initiation, ~100 µs). */
const EVENT_BATCH = 64;
/** A worker that keeps dying is restarted no faster than this. */
const RESTART_BACKOFF_MS = 200;

export class WorkerPool {
  readonly slab: Slab;
  readonly slotEndpoints: EndpointTable;
  /** Workers restarted after a failure, for the metrics. */
  restarts = 0;
  private readonly doorbell = Doorbell.create();
  private readonly handshakeRings: Ring[] = [];
  private readonly eventRings: Ring[] = [];
  private readonly wakes: EventFd[] = [];
  private readonly owned: WorkerSlots[] = [];
  private readonly ports: MessagePort[] = [];
  private workers: (Worker | undefined)[] = [];
  private udpFds: number[];
  private routesGen = 1;
  /** The latest routes snapshot: what a (re)started worker begins with. */
  private routes: SharedArrayBuffer;
  private stopped = false;
  /** Set while `join` stops the workers on purpose: their exits are not failures. */
  private joining = false;
  private readonly slots = new Uint32Array(DRAIN_BATCH);
  /** Handshake records taken off a ring and not yet handled: part of the queue depth. */
  private unprocessed = 0;
  private readonly lastRestart: number[] = [];
  /** Settles once every worker of the latest start has loaded and entered its loop. */
  ready: Promise<void> = Promise.resolve();

  constructor(private readonly o: PoolOptions) {
    const n = o.tunFds.length;
    const groSlots = o.offload ? Math.ceil(GRO_AREA_BYTES / SLOT_SIZE) : 0;
    const largeSlots = LARGE_BUFFERS * (LARGE_BUFFER_BYTES / SLOT_SIZE);
    this.slab = Slab.create({ slots: n * (2 * o.batch + STAGING_SLOTS + groSlots + largeSlots) + 4096 });
    // Contiguous areas first, while the slab is fresh and its free list runs in slot order.
    for (let i = 0; i < n; i++) {
      const groAreaAt = groSlots > 0 ? this.contiguous(groSlots) : -1;
      const largeAt: number[] = [];
      for (let b = 0; b < LARGE_BUFFERS; b++) largeAt.push(this.contiguous(LARGE_BUFFER_BYTES / SLOT_SIZE));
      this.owned.push({ tunSlots: [], udpSlots: [], stagingSlots: [], groAreaAt, largeAt });
    }
    for (const owned of this.owned) {
      owned.tunSlots = this.take(o.batch);
      owned.udpSlots = this.take(o.batch);
      owned.stagingSlots = this.take(STAGING_SLOTS);
    }
    this.slotEndpoints = new EndpointTable(this.slab.slotCount, new SharedArrayBuffer(EndpointTable.bytesFor(this.slab.slotCount)));
    for (let i = 0; i < n; i++) {
      this.handshakeRings.push(Ring.create(RING_CAPACITY, this.doorbell));
      this.eventRings.push(Ring.create(RING_CAPACITY, this.doorbell));
      this.wakes.push(EventFd.create());
    }
    this.routes = o.routes;
    Atomics.store(o.tables.device, D_ROUTES_GEN, this.routesGen);
    this.udpFds = o.udpFds;
    this.startAll();
    void this.drain();
  }

  /** `count` contiguous slab slots; returns the byte offset of the first. */
  private contiguous(count: number): number {
    const area = new Uint32Array(count);
    if (this.slab.allocBatch(area, count) !== count || area[count - 1] !== area[0]! + count - 1) {
      throw new Error('slab area not contiguous');
    }
    return this.slab.base(area[0]!);
  }

  private take(count: number): number[] {
    const slots = new Uint32Array(count);
    if (this.slab.allocBatch(slots, count) !== count) throw new Error('slab too small for the worker slots');
    return [...slots];
  }

  private startAll(): void {
    Atomics.store(this.o.tables.device, D_SHUTDOWN, 0);
    this.workers = this.o.tunFds.map((_, id) => this.startOne(id));
    this.ready = Promise.all(this.workers.map((w) => new Promise<void>((resolve, reject) => {
      w!.once('message', () => resolve());
      w!.once('exit', (code) => reject(new Error(`worker exited with code ${code} during start-up`)));
    }))).then(() => undefined);
  }

  private startOne(id: number): Worker {
    const { port1, port2 } = new MessageChannel();
    this.ports[id]?.close();
    this.ports[id] = port1;
    const init: WorkerInit & { routesPort: MessagePort } = {
      id,
      tunFd: this.o.tunFds[id]!,
      udpFd: this.udpFds[id]!,
      wakeFd: this.wakes[id]!.fd,
      tables: this.o.tables.desc,
      slab: this.slab.desc,
      slotEndpoints: this.slotEndpoints.buffer as SharedArrayBuffer,
      handshakes: this.handshakeRings[id]!.desc,
      events: this.eventRings[id]!.desc,
      routes: this.routes,
      routesGen: this.routesGen,
      batch: this.o.batch,
      offload: this.o.offload,
      owned: this.owned[id]!,
      testFaults: this.o.testFaults ?? false,
      routesPort: port2,
    };
    const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: init, transferList: [port2] });
    w.on('error', (err) => this.o.onWorkerError(id, err));
    w.on('exit', () => this.exited(id, w));
    return w;
  }

  /** A worker ended: when not on purpose, it holds nothing any more and is started again. */
  private exited(id: number, w: Worker): void {
    if (this.workers[id] !== w) return;
    this.o.tables.epochs.quiesce(id);
    if (this.joining || this.stopped) return;
    this.restarts++;
    const wait = Math.max(0, (this.lastRestart[id] ?? 0) + RESTART_BACKOFF_MS - Date.now());
    this.workers[id] = undefined;
    setTimeout(() => {
      if (this.joining || this.stopped || this.workers[id] !== undefined) return;
      this.lastRestart[id] = Date.now();
      this.workers[id] = this.startOne(id);
    }, wait).unref();
  }

  /** Publishes a new allowed-IPs snapshot; workers switch at their next batch. */
  publishRoutes(routes: SharedArrayBuffer): void {
    this.routesGen++;
    this.routes = routes;
    for (const port of this.ports) port.postMessage({ gen: this.routesGen, routes });
    Atomics.store(this.o.tables.device, D_ROUTES_GEN, this.routesGen);
    this.wakeAll();
  }

  /**
   * Stops the workers and starts them again on new sockets (listen port change); `stopped` runs
   * in between, when no worker uses the old sockets any more.
   */
  async restart(udpFds: number[], stopped: () => void): Promise<void> {
    await this.join();
    stopped();
    this.udpFds = udpFds;
    this.startAll();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.join();
    this.doorbell.ring();
  }

  private async join(): Promise<void> {
    this.joining = true;
    Atomics.store(this.o.tables.device, D_SHUTDOWN, 1);
    this.wakeAll();
    const live = this.workers.filter((w): w is Worker => w !== undefined);
    const exits = live.map((w) => new Promise<void>((resolve) => (w.threadId < 0 ? resolve() : w.once('exit', () => resolve()))));
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, 3000).unref());
    await Promise.race([Promise.all(exits), timeout]);
    await Promise.all(live.map((w) => w.terminate()));
    for (let id = 0; id < this.workers.length; id++) this.o.tables.epochs.quiesce(id);
    this.workers = [];
    this.joining = false;
  }

  /** Wakes every worker (new routes, a keypair to send staged packets on, shutdown). */
  wakeAll(): void {
    for (const w of this.wakes) w.signal();
  }

  /** Wakes the workers that hold staged packets (D_STAGED): a peer got a keypair to send them on. */
  wakeStaged(): void {
    const dev = this.o.tables.device;
    for (let id = 0; id < this.wakes.length; id++) if (Atomics.load(dev, D_STAGED + id) !== 0) this.wakes[id]!.signal();
  }

  /**
   * Tests only: makes worker `id` throw at its next batch, as a bug would (WGTS_TEST_WORKER_FAULT).
   */
  injectFault(id: number, device: Int32Array, word: number): void {
    Atomics.store(device, word, id + 1);
    this.wakes[id]?.signal();
  }

  /**
   * The main thread's consumer loop over every worker's rings. It takes a bounded batch per ring
   * per turn and then yields a full event-loop turn, so a handshake flood cannot starve the UAPI
   * socket and the timer tick (waitAsync alone resolves as a microtask while records keep
   * coming). Handshake messages go first, and events take at most EVENT_BATCH per ring per turn:
   * a client sending to thousands of sessionless peers makes as many "handshake wanted" events,
   * each an initiation to compute, and those must not hold back the handshakes of others. A
   * record whose handling throws is reported and freed; the loop goes on.
   */
  private async drain(): Promise<void> {
    // Plain loops: `some` with an arrow would make a closure per call, and this runs per wake-up.
    const ready = (): boolean => {
      if (this.stopped) return true;
      for (const r of this.handshakeRings) if (r.size() > 0) return true;
      for (const r of this.eventRings) if (r.size() > 0) return true;
      return false;
    };
    while (!this.stopped) {
      try {
        await this.doorbell.waitAsync(ready, 1000);
        for (const ring of this.handshakeRings) this.handle(ring, true, DRAIN_BATCH);
        for (const ring of this.eventRings) this.handle(ring, false, EVENT_BATCH);
      } catch (err) {
        this.o.onRecordError(err);
      }
      await yieldTurn();
    }
  }

  private handle(ring: Ring, handshakes: boolean, max: number): void {
    const n = ring.popBatch(this.slots, max);
    for (let i = 0; i < n; i++) {
      if (handshakes) this.unprocessed = n - i;
      try {
        this.o.onRecord(this.slots[i]!);
      } catch (err) {
        this.o.onRecordError(err);
      }
    }
    this.unprocessed = 0;
  }

  /** Handshake messages waiting in the rings: the depth of the handshake queue. */
  pending(): number {
    let n = this.unprocessed;
    for (const r of this.handshakeRings) n += r.size();
    return n;
  }

  close(): void {
    for (const w of this.wakes) w.close();
    for (const p of this.ports) p.close();
  }
}
