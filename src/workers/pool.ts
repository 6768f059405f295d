// The data-plane workers and everything shared with them: the packet slab, one ring per worker
// to the main thread (all sharing the main thread's doorbell), one eventfd per worker to wake
// it, and the routes snapshot channel. The main thread drains the rings with Atomics.waitAsync,
// so it never blocks.
import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { Slab, SLOT_SIZE } from '../queues/slab.js';
import { GRO_AREA_BYTES } from '../net/gro.js';
import { Ring, Doorbell } from '../queues/ring.js';
import { EndpointTable } from '../net/endpoint.js';
import { EventFd } from '../net/libc.js';
import { Tables, D_ROUTES_GEN, D_SHUTDOWN } from '../device/tables.js';
import type { WorkerInit } from './control.js';

export interface PoolOptions {
  tables: Tables;
  tunFds: number[];
  udpFds: number[];
  routes: SharedArrayBuffer;
  batch: number;
  offload: boolean;
  /** Called for every control record; the callee frees the slot (also when it throws). */
  onRecord: (slot: number) => void;
  /** Told when onRecord threw; the next records are handled all the same. */
  onRecordError: (err: unknown) => void;
  onWorkerError: (id: number, err: Error) => void;
}

const RING_CAPACITY = 1024;

export class WorkerPool {
  readonly slab: Slab;
  readonly slotEndpoints: EndpointTable;
  private readonly doorbell = Doorbell.create();
  private readonly rings: Ring[] = [];
  private readonly wakes: EventFd[] = [];
  /** Byte offset of each worker's UDP GRO area in the slab (none without offloads). */
  private readonly groAreas: number[] = [];
  private readonly ports: MessagePort[] = [];
  private workers: Worker[] = [];
  private routesGen = 1;
  /** The latest routes snapshot: what a (re)started worker begins with. */
  private routes: SharedArrayBuffer;
  private stopped = false;
  private readonly slots = new Uint32Array(256);
  /** Records taken off a ring and not yet handled: part of the queue depth. */
  private unprocessed = 0;
  /** Settles once every worker of the latest start has loaded and entered its loop. */
  ready: Promise<void> = Promise.resolve();

  constructor(private readonly o: PoolOptions) {
    const n = o.tunFds.length;
    // Each worker holds two batches for its life, with offloads also a UDP GRO area; the rest
    // serves control records.
    const groSlots = o.offload ? Math.ceil(GRO_AREA_BYTES / SLOT_SIZE) : 0;
    this.slab = Slab.create({ slots: n * (2 * o.batch + groSlots) + 4096 });
    // Reserved first, while the slab is fresh and its free list runs in slot order, so each
    // area is contiguous; kept for the pool's life (restarted workers take the same area).
    const area = new Uint32Array(groSlots);
    for (let i = 0; i < n && groSlots > 0; i++) {
      this.slab.allocBatch(area, groSlots);
      if (area[groSlots - 1] !== area[0]! + groSlots - 1) throw new Error('GRO area not contiguous');
      this.groAreas.push(this.slab.base(area[0]!));
    }
    this.slotEndpoints = new EndpointTable(this.slab.slotCount, new SharedArrayBuffer(EndpointTable.bytesFor(this.slab.slotCount)));
    for (let i = 0; i < n; i++) {
      this.rings.push(Ring.create(RING_CAPACITY, this.doorbell));
      this.wakes.push(EventFd.create());
    }
    this.routes = o.routes;
    this.start(o.udpFds);
    void this.drain();
  }

  /** Starts one worker per queue on the given sockets (again after a port change). */
  private start(udpFds: number[]): void {
    Atomics.store(this.o.tables.device, D_SHUTDOWN, 0);
    this.workers = this.o.tunFds.map((tunFd, id) => {
      const { port1, port2 } = new MessageChannel();
      this.ports[id] = port1;
      const init: WorkerInit & { routesPort: MessagePort } = {
        id,
        tunFd,
        udpFd: udpFds[id]!,
        wakeFd: this.wakes[id]!.fd,
        tables: this.o.tables.desc,
        slab: this.slab.desc,
        slotEndpoints: this.slotEndpoints.buffer as SharedArrayBuffer,
        toMain: this.rings[id]!.desc,
        routes: this.routes,
        routesGen: this.routesGen,
        batch: this.o.batch,
        offload: this.o.offload,
        groAreaAt: this.groAreas[id] ?? -1,
        routesPort: port2,
      };
      const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: init, transferList: [port2] });
      w.on('error', (err) => this.o.onWorkerError(id, err));
      return w;
    });
    this.ready = Promise.all(this.workers.map((w) => new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve());
      w.once('exit', (code) => reject(new Error(`worker exited with code ${code} during start-up`)));
    }))).then(() => undefined);
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
    this.start(udpFds);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.join();
    this.doorbell.ring();
  }

  private async join(): Promise<void> {
    Atomics.store(this.o.tables.device, D_SHUTDOWN, 1);
    this.wakeAll();
    const exits = this.workers.map((w) => new Promise<void>((resolve) => (w.threadId < 0 ? resolve() : w.once('exit', () => resolve()))));
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, 3000).unref());
    await Promise.race([Promise.all(exits), timeout]);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers = [];
  }

  private wakeAll(): void {
    for (const w of this.wakes) w.signal();
  }

  /**
   * The main thread's consumer loop over every worker's ring. It takes one batch per ring per
   * turn and then yields a full event-loop turn, so a handshake flood cannot starve the UAPI
   * socket and the timer tick (waitAsync alone resolves as a microtask while records keep coming).
   * A fault of the loop itself (not of a record) rejects it: the process-level handler
   * (daemon/faults.ts) then ends the daemon, which could no longer answer any handshake.
   */
  private async drain(): Promise<void> {
    const ready = (): boolean => this.stopped || this.rings.some((r) => r.size() > 0);
    while (!this.stopped) {
      await this.doorbell.waitAsync(ready, 1000);
      for (const ring of this.rings) {
        const n = ring.popBatch(this.slots, this.slots.length);
        for (let i = 0; i < n; i++) {
          this.unprocessed = n - i;
          try {
            this.o.onRecord(this.slots[i]!);
          } catch (err) {
            // A fault that one record reaches (its bytes come from the network) must not end the
            // loop that serves every record.
            this.o.onRecordError(err);
          }
        }
        this.unprocessed = 0;
      }
      await yieldTurn();
    }
  }

  /** Control records waiting in the rings: the depth of the handshake queue. */
  pending(): number {
    let n = this.unprocessed;
    for (const r of this.rings) n += r.size();
    return n;
  }

  close(): void {
    for (const w of this.wakes) w.close();
  }
}
