// Packet rates of the koffi syscall layer, next to REFERENCE.md's figures. Each path is measured
// alone on its thread, so the other side does not cap it:
// - UDP on loopback: a worker sends a fixed number of datagrams with sendmmsg into a socket
//   whose (forced, large) receive buffer holds them all; then this thread drains them with
//   recvmmsg. Batch 64 and 128, 64 B and 1420 B payloads.
// - TUN (root only): a process inside a network namespace blasts UDP at an address routed into
//   the TUN device, whose queue was grown to hold it all; then this thread drains the queue with
//   readBatch into a SAB slab. writeBatch then pushes IPv4/UDP packets into the namespace,
//   whose stack drops them after routing.
// "CPU/pkt" is the measuring thread's own CPU time (CLOCK_THREAD_CPUTIME_ID) per packet, which
// stays comparable when other processes compete for the machine; the wall-clock rate does not.
// This file is also the worker script.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { spawn, spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { CLOCK_THREAD_CPUTIME_ID, EventFd, closeFd, libc } from '../src/net/libc.js';
import { EndpointTable, parseEndpoint } from '../src/net/endpoint.js';
import { UdpBatch, openUdpSockets } from '../src/net/udp.js';
import { TunQueue, openQueues } from '../src/tun/tun.js';

const SLOT = 2048;
const UDP_PACKETS = 200_000;
const TUN_QUEUE = 65_536;

interface SendJob { fd: number; port: number; batch: number; size: number; total: number }
interface Measure { packets: number; seconds: number; cpuMicros: number }

const timespec = new BigInt64Array(new ArrayBuffer(16));
function threadCpuMicros(): number {
  libc.clock_gettime(CLOCK_THREAD_CPUTIME_ID, timespec);
  return Number(timespec[0]) * 1e6 + Number(timespec[1]) / 1e3;
}

/** Runs `step` (returning packets handled, or -1 to stop) and times it in wall and CPU time. */
function measure(step: () => number): Measure {
  let packets = 0;
  const cpu = threadCpuMicros();
  const start = performance.now();
  for (let n = step(); n >= 0; n = step()) packets += n;
  return { packets, seconds: (performance.now() - start) / 1000, cpuMicros: threadCpuMicros() - cpu };
}

function slots(n: number): { slab: Uint8Array; offsets: Uint32Array; lens: Int32Array } {
  return {
    slab: new Uint8Array(new SharedArrayBuffer(n * SLOT)),
    offsets: Uint32Array.from({ length: n }, (_, i) => i * SLOT),
    lens: new Int32Array(n),
  };
}

/** Worker: sends `total` datagrams of `size` bytes to 127.0.0.1:port in batches. */
function send(job: SendJob): Measure {
  const udp = new UdpBatch(job.fd, job.batch);
  const to = new EndpointTable(job.batch);
  for (let k = 0; k < job.batch; k++) parseEndpoint(`127.0.0.1:${job.port}`, to, k);
  const { slab, offsets, lens } = slots(job.batch);
  let left = job.total;
  return measure(() => {
    if (left === 0) return -1;
    const n = Math.min(job.batch, left);
    lens.fill(job.size);
    const sent = udp.sendBatch(slab, offsets, lens, to, n);
    left -= sent;
    return sent;
  });
}

const row = (what: string, m: Measure, reference: string, notes = ''): string[] => [
  what,
  `${(m.packets / m.seconds / 1e3).toFixed(0)} kpps`,
  `${(m.cpuMicros / m.packets).toFixed(2)} µs`,
  `${(m.packets / m.cpuMicros).toFixed(2)} Mpps`,
  reference,
  notes,
];

async function udpLoopback(batch: number, size: number): Promise<string[][]> {
  const server = openUdpSockets(0, 1, { bufferBytes: 1 << 30 });
  const client = openUdpSockets(0, 1);
  try {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { fd: client.fds[0]!, port: server.port, batch, size, total: UDP_PACKETS } satisfies SendJob,
    });
    const sent = await new Promise<Measure>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    const udp = new UdpBatch(server.fds[0]!, batch);
    const from = new EndpointTable(batch);
    const { slab, offsets, lens } = slots(batch);
    const received = measure(() => {
      const n = udp.recvBatch(slab, offsets, SLOT, lens, from, batch);
      return n > 0 ? n : -1;
    });
    const lost = sent.packets - received.packets;
    return [
      row(`sendmmsg x${batch}, ${size} B`, sent, batch === 64 ? '~420 kpps' : '', 'includes loopback delivery'),
      row(`recvmmsg x${batch}, ${size} B`, received, batch === 64 ? '~1.5 Mpps' : '', lost > 0 ? `${lost} lost` : ''),
    ];
  } finally {
    [...server.fds, ...client.fds].forEach(closeFd);
  }
}

/** The floor under every row: one koffi call into a syscall that does nothing (EAGAIN). */
function syscallFloor(): string[] {
  const ev = EventFd.create();
  let left = 200_000;
  const m = measure(() => (left-- > 0 ? (ev.drain(), 1) : -1));
  ev.close();
  return row('read(2) on an empty eventfd', m, '', 'syscall floor via koffi');
}

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

// Runs inside the namespace: 64-byte UDP datagrams at 10.202.0.2:9 (routed into the TUN) until killed.
const BLASTER = `
import { EndpointTable, parseEndpoint } from '${new URL('../src/net/endpoint.js', import.meta.url).href}';
import { UdpBatch, openUdpSockets } from '${new URL('../src/net/udp.js', import.meta.url).href}';
const udp = new UdpBatch(openUdpSockets(0, 1).fds[0], 64);
const to = new EndpointTable(1);
parseEndpoint('10.202.0.2:9', to, 0);
const slab = new Uint8Array(new SharedArrayBuffer(64 * 128));
const offsets = Uint32Array.from({ length: 64 }, (_, i) => i * 128), lens = new Int32Array(64), rows = new Uint32Array(64);
console.log('sending');
for (;;) { lens.fill(64); udp.sendBatch(slab, offsets, lens, to, 64, rows); }
`;

/** An IPv4/UDP packet 10.202.0.9 -> 10.202.0.77 (not local, so dropped after routing), 64 B payload. */
function ipv4Udp(buf: Uint8Array, at: number): number {
  buf.set([0x45, 0, 0, 92, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 202, 0, 9, 10, 202, 0, 77, 0x30, 0x39, 0, 9, 0, 72, 0, 0], at);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += (buf[at + i]! << 8) | buf[at + i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  buf[at + 10] = (~sum >> 8) & 0xff;
  buf[at + 11] = ~sum & 0xff;
  return 92;
}

async function tun(): Promise<string[][]> {
  const ns = `wgtsbench${process.pid}`;
  const name = `wgtsb${process.pid % 100000}`;
  ip('netns', 'add', ns);
  const fds = openQueues(name, 1);
  const blaster = spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', BLASTER], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    ip('link', 'set', name, 'netns', ns);
    ip('-n', ns, 'link', 'set', name, 'txqueuelen', String(TUN_QUEUE), 'up');
    ip('-n', ns, 'addr', 'add', '10.202.0.1/24', 'dev', name);
    await new Promise((resolve) => blaster.stdout!.once('data', resolve));
    await new Promise((resolve) => setTimeout(resolve, 2000)); // let the queue fill up
    blaster.kill();
    await new Promise((resolve) => blaster.once('close', resolve));

    const q = new TunQueue(fds[0]!);
    const batch = 64;
    const { slab, offsets, lens } = slots(batch);
    const read = measure(() => {
      const n = q.readBatch(slab, offsets, SLOT, lens, batch);
      if (n < 0) throw new Error(`readBatch: errno ${-n}`);
      return n > 0 ? n : -1;
    });

    for (let k = 0; k < batch; k++) lens[k] = ipv4Udp(slab, offsets[k]!);
    const packet = lens[0]!;
    const end = performance.now() + 2000;
    const written = measure(() => {
      if (performance.now() > end) return -1;
      lens.fill(packet);
      return q.writeBatch(slab, offsets, lens, batch);
    });
    return [
      row('TUN readBatch x64 into SAB', read, '1.2–1.3 Mpps', `queue of ${read.packets} drained`),
      row('TUN writeBatch x64, 92 B', written, '~650 kpps'),
    ];
  } finally {
    blaster.kill();
    fds.forEach(closeFd);
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

function print(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  '));
}

if (!isMainThread) {
  parentPort!.postMessage(send(workerData as SendJob));
} else {
  console.log(`load average ${loadavg()[0]!.toFixed(2)} on this machine; rates are wall clock, CPU/pkt is the thread's own`);
  const rows = [['case', 'rate', 'CPU/pkt', '1 core max', 'REFERENCE.md', 'notes'], syscallFloor()];
  for (const batch of [64, 128]) for (const size of [64, 1420]) rows.push(...(await udpLoopback(batch, size)));
  if (process.getuid?.() === 0) rows.push(...(await tun()));
  else rows.push(['TUN', 'skipped: needs root (network namespace)']);
  print(rows);
}
