// Data-plane worker thread: owns one TUN queue and one UDP socket (SO_REUSEPORT), runs the
// DataPath on them in batches, and sleeps in poll(2) on both fds plus an eventfd the main
// thread writes to wake it (new routes, a keypair for staged packets, shutdown). Routes arrive
// as SharedArrayBuffer snapshots on a MessagePort, picked up synchronously at a batch boundary
// when the shared generation word says a newer one exists (receiveMessageOnPort: no event loop
// turn needed). Each loop turn is a batch boundary: the worker announces the epoch it works in
// before touching any table and announces that it holds nothing before it parks.
import { workerData, parentPort, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { Slab } from '../queues/slab.js';
import { Ring } from '../queues/ring.js';
import { EndpointTable } from '../net/endpoint.js';
import { UdpBatch } from '../net/udp.js';
import { TunQueue } from '../tun/tun.js';
import { EventFd, PollSet } from '../net/libc.js';
import { tablesFromShared } from '../allowedips/allowedips.js';
import { Tables, D_ROUTES_GEN, D_SHUTDOWN, D_TEST_FAULT } from '../queues/tables.js';
import { RecordKind, type WorkerInit } from '../queues/records.js';
import { DataPath } from './datapath.js';

const EBADFD = 77;
const EIO = 5;
/** poll timeout: bounds how long a missed wake-up could delay shutdown, and ages staged packets. */
const IDLE_POLL_MS = 1000;

const init = workerData as WorkerInit & { routesPort: MessagePort };
const tables = new Tables(init.tables);
const slab = Slab.fromShared(init.slab);
const slotEndpoints = new EndpointTable(slab.slotCount, init.slotEndpoints);
const rings = { handshakes: Ring.fromShared(init.handshakes), events: Ring.fromShared(init.events) };
const path = new DataPath(init.id, tables, slab, slotEndpoints, rings, tablesFromShared(init.routes), init.batch, init.owned, init.offload);
const tun = new TunQueue(init.tunFd);
const udp = new UdpBatch(init.udpFd, init.batch, init.offload, init.owned.groAreaAt);
const wake = new EventFd(init.wakeFd);
const poll = new PollSet([init.tunFd, init.udpFd, init.wakeFd]);
const epochs = tables.epochs;
let routesGen = init.routesGen;

/**
 * Takes the routes snapshot of generation `gen`. The main thread posts it before it stores the
 * generation word, so it is on the port already; the loop only guards against reading the
 * word between the two.
 */
function refreshRoutes(gen: number): void {
  while (routesGen !== gen) {
    const msg = receiveMessageOnPort(init.routesPort) as { message: { gen: number; routes: SharedArrayBuffer } } | undefined;
    if (msg === undefined) continue;
    routesGen = msg.message.gen;
    path.setRoutes(tablesFromShared(msg.message.routes));
  }
}

function run(): void {
  const dev = tables.device;
  // What may be readable without asking poll. Each read that finds nothing costs a syscall, and
  // at low rates (an idle ping) those were half of a wake-up's syscalls.
  let tunReady = true;
  let udpReady = true;
  for (;;) {
    epochs.enter(init.id);
    if (Atomics.load(dev, D_SHUTDOWN) !== 0) return;
    const gen = Atomics.load(dev, D_ROUTES_GEN);
    if (gen !== routesGen) refreshRoutes(gen);
    if (init.testFaults && Atomics.load(dev, D_TEST_FAULT) === init.id + 1) {
      Atomics.store(dev, D_TEST_FAULT, 0);
      throw new Error(`test fault injected into worker ${init.id}`);
    }
    const out = path.outbound(tun, udp, tunReady);
    if (out === -EBADFD || out === -EIO) {
      path.notify(RecordKind.DeviceGone);
      return;
    }
    const inb = udpReady ? path.inbound(udp, tun) : 0;
    // Writing to the TUN device makes the kernel answer local traffic at once (an echo reply,
    // a TCP ACK), in our write: that is on the queue now, with no poll to say so.
    tunReady = (tunReady && path.tunPending) || inb > 0;
    udpReady = udpReady && udp.pending;
    if (tunReady || udpReady) continue;
    epochs.quiesce(init.id);
    poll.wait(IDLE_POLL_MS);
    tunReady = poll.ready(0);
    udpReady = poll.ready(1);
    if (poll.ready(2)) wake.drain();
  }
}

// Everything is loaded and attached: the daemon may now report itself ready.
parentPort?.postMessage('ready');
try {
  run();
} finally {
  epochs.quiesce(init.id);
}
