// Data-plane worker thread: owns one TUN queue and one UDP socket (SO_REUSEPORT), runs the
// DataPath on them in batches, and sleeps in poll(2) on both fds plus an eventfd the main
// thread writes to wake it (new routes, shutdown). Routes arrive as SharedArrayBuffer
// snapshots on a MessagePort, picked up synchronously at a batch boundary when the shared
// generation word says a newer one exists (receiveMessageOnPort: no event loop turn needed).
import { workerData, parentPort, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { Slab } from '../queues/slab.js';
import { Ring } from '../queues/ring.js';
import { EndpointTable } from '../net/endpoint.js';
import { UdpBatch } from '../net/udp.js';
import { TunQueue } from '../tun/tun.js';
import { EventFd, PollSet } from '../net/libc.js';
import { tablesFromShared } from '../allowedips/allowedips.js';
import { Tables, D_ROUTES_GEN, D_SHUTDOWN } from '../device/tables.js';
import { DataPath } from './datapath.js';
import { RecordKind, type WorkerInit } from './control.js';

const EBADFD = 77;
const EIO = 5;
/** poll timeout: a bound on how long a missed wake-up could delay shutdown. */
const IDLE_POLL_MS = 1000;

const init = workerData as WorkerInit & { routesPort: MessagePort };
const tables = new Tables(init.tables);
const slab = Slab.fromShared(init.slab);
const slotEndpoints = new EndpointTable(slab.slotCount, init.slotEndpoints);
const toMain = Ring.fromShared(init.toMain);
const path = new DataPath(init.id, tables, slab, slotEndpoints, toMain, tablesFromShared(init.routes), init.batch, init.offload);
const tun = new TunQueue(init.tunFd);
const udp = new UdpBatch(init.udpFd, init.batch, init.offload, init.groAreaAt);
const wake = new EventFd(init.wakeFd);
const poll = new PollSet([init.tunFd, init.udpFd, init.wakeFd]);
let routesGen = init.routesGen;

function refreshRoutes(): void {
  for (;;) {
    const msg = receiveMessageOnPort(init.routesPort) as { message: { gen: number; routes: SharedArrayBuffer } } | undefined;
    if (msg === undefined) return;
    routesGen = msg.message.gen;
    path.setRoutes(tablesFromShared(msg.message.routes));
  }
}

function run(): void {
  const dev = tables.device;
  for (;;) {
    if (Atomics.load(dev, D_SHUTDOWN) !== 0) return;
    if (Atomics.load(dev, D_ROUTES_GEN) !== routesGen) refreshRoutes();
    const out = path.outbound(tun, udp);
    if (out === -EBADFD || out === -EIO) {
      path.notify(RecordKind.DeviceGone);
      return;
    }
    const inb = path.inbound(udp, tun);
    if (out > 0 || inb > 0) continue;
    poll.wait(IDLE_POLL_MS);
    if (poll.ready(2)) wake.drain();
  }
}

// Everything is loaded and attached: the daemon may now report itself ready.
parentPort?.postMessage('ready');
run();
path.dispose();
