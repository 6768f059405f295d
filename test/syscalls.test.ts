// The koffi syscall layer against the real kernel. UDP and eventfd/poll run anywhere; the TUN
// tests need root: each creates its own network namespace and removes it afterwards.
// Pings go through a TUN device whose queues are read and answered with readBatch/writeBatch,
// once with the device opened outside the namespace and moved in (what wg-quick does to a
// running daemon), once opened by a process inside the namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { EBADFD, EINVAL, EIO, EMSGSIZE, EventFd, PollSet, SOL_SOCKET, closeFd, libc } from '../src/net/libc.js';
import { EndpointTable, copyEndpoint, endpointEquals, formatEndpoint, parseEndpoint } from '../src/net/endpoint.js';
import { UdpBatch, localPort, openUdpSockets, setMark } from '../src/net/udp.js';
import { DatagramBatch, DATAGRAM_BATCH, MAX_DATAGRAM } from '../src/net/datagram-batch.js';
import { GRO_AREA_BYTES } from '../src/net/gro.js';
import { TunQueue, getMtu, interfaceIndex, isValidName, openQueues, setMtu, tunAttached } from '../src/tun/tun.js';
import { Cleanup, createNetns, isRoot, sh, uniqueName } from './interop/harness.js';

const hasIp = spawnSync('ip', ['-V']).status === 0;
const rootOnly = isRoot && hasIp ? false : 'needs root and iproute2: creates a network namespace and TUN devices';
const libcUrl = new URL('../src/net/libc.js', import.meta.url).href;
const tunUrl = new URL('../src/tun/tun.js', import.meta.url).href;

const SLOT = 2048;
/** Sends without UDP checksums (asm-generic/socket.h). */
const SO_NO_CHECK = 11;
function slab(slots: number): { slab: Uint8Array; offsets: Uint32Array; lens: Int32Array } {
  return {
    slab: new Uint8Array(new SharedArrayBuffer(slots * SLOT)),
    offsets: Uint32Array.from({ length: slots }, (_, i) => i * SLOT),
    lens: new Int32Array(slots),
  };
}

/** A table with datagram k's destination in row k, copied from row rows[k] of `to`. */
function perDatagram(to: EndpointTable, rows: Uint32Array, count: number): EndpointTable {
  const t = new EndpointTable(count);
  for (let k = 0; k < count; k++) copyEndpoint(to, rows[k]!, t, k);
  return t;
}

test('endpoint strings round-trip through the table; v4 is stored v4-mapped', () => {
  const t = new EndpointTable(4);
  assert.ok(parseEndpoint('192.0.2.1:51820', t, 0));
  assert.equal(t.family[0], 4);
  assert.deepEqual([...t.addr.subarray(0, 16)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 192, 0, 2, 1]);
  assert.equal(t.port[0], 51820);
  assert.equal(formatEndpoint(t, 0), '192.0.2.1:51820');
  assert.ok(parseEndpoint('[FD00:0:0::1]:1', t, 1));
  assert.equal(t.family[1], 6);
  assert.equal(formatEndpoint(t, 1), '[fd00::1]:1');
  assert.ok(parseEndpoint('[::ffff:10.0.0.1]:65535', t, 2));
  assert.equal(formatEndpoint(t, 2), '10.0.0.1:65535');
  assert.equal(formatEndpoint(t, 3), null);
  for (const bad of ['host:1', '1.2.3.4', '1.2.3.4:65536', '256.0.0.1:1', '[fe80::1%eth0]:1', 'fd00::1:1', '[::1]', '']) {
    assert.equal(parseEndpoint(bad, t, 3), false, bad);
  }
  assert.equal(t.family[3], 0);
  const u = new EndpointTable(2, new SharedArrayBuffer(EndpointTable.bytesFor(2)));
  copyEndpoint(t, 1, u, 0);
  assert.ok(endpointEquals(t, 1, u, 0));
  assert.ok(!endpointEquals(t, 0, u, 0));
  assert.equal(formatEndpoint(u, 0), '[fd00::1]:1');
});

/** Reads every socket of `batches` until `want` datagrams arrived (or 5 s passed). */
function receiveAll(batches: UdpBatch[], want: number, maxLen = SLOT) {
  const poll = new PollSet(batches.map((b) => b.fd));
  const got: { socket: number; len: number; tag: number; from: string | null }[] = [];
  const { slab: s, offsets, lens } = slab(128);
  const from = new EndpointTable(128);
  const deadline = Date.now() + 5000;
  while (got.length < want && Date.now() < deadline) {
    if (poll.wait(100) <= 0) continue;
    batches.forEach((b, socket) => {
      const n = b.recvBatch(s, offsets, maxLen, lens, from, 128);
      assert.ok(n >= 0, `recvBatch: errno ${-n}`);
      for (let k = 0; k < n; k++) got.push({ socket, len: lens[k]!, tag: s[offsets[k]!]!, from: formatEndpoint(from, k) });
    });
  }
  return got;
}

test('UDP: two dual-stack SO_REUSEPORT sockets on one port receive a 64-datagram batch over ::1 and 127.0.0.1', () => {
  const server = openUdpSockets(0, 2);
  const client = openUdpSockets(0, 1);
  const batches = server.fds.map((fd) => new UdpBatch(fd));
  const sender = new UdpBatch(client.fds[0]!, 64);
  try {
    assert.ok(server.port > 0);
    assert.deepEqual(server.fds.map(localPort), [server.port, server.port]);
    const to = new EndpointTable(2);
    assert.ok(parseEndpoint(`127.0.0.1:${server.port}`, to, 0));
    assert.ok(parseEndpoint(`[::1]:${server.port}`, to, 1));
    const { slab: s, offsets, lens } = slab(64);
    const rows = new Uint32Array(64);
    for (let k = 0; k < 64; k++) {
      s[offsets[k]!] = k;
      lens[k] = 20 + k;
      rows[k] = k % 2;
    }
    assert.equal(sender.sendBatch(s, offsets, lens, perDatagram(to, rows, 64), 64), 64);

    const got = receiveAll(batches, 64);
    assert.equal(got.length, 64);
    assert.deepEqual(got.map((g) => g.tag).sort((a, b) => a - b), [...Array(64).keys()]);
    for (const g of got) {
      assert.equal(g.len, 20 + g.tag);
      assert.equal(g.from, g.tag % 2 === 0 ? `127.0.0.1:${client.port}` : `[::1]:${client.port}`);
    }
  } finally {
    [...server.fds, ...client.fds].forEach(closeFd);
  }
});

test('UDP: a refused datagram is dropped with -errno and the batch goes on; truncation shows as -EMSGSIZE', () => {
  const server = openUdpSockets(0, 1);
  const client = openUdpSockets(0, 1);
  try {
    const to = new EndpointTable(3);
    parseEndpoint(`127.0.0.1:${server.port}`, to, 0);
    parseEndpoint('127.0.0.1:0', to, 1); // port 0: the kernel refuses this one message
    parseEndpoint(`[::1]:${server.port}`, to, 2);
    const { slab: s, offsets, lens } = slab(3);
    lens.set([300, 10, 40]);
    assert.equal(new UdpBatch(client.fds[0]!, 3).sendBatch(s, offsets, lens, to, 3), 3);
    assert.equal(lens[1], -EINVAL);
    const got = receiveAll([new UdpBatch(server.fds[0]!)], 2, 100);
    assert.deepEqual(got.map((g) => g.len).sort(), [-EMSGSIZE, 40].sort());
  } finally {
    [...server.fds, ...client.fds].forEach(closeFd);
  }
});

interface GsoCase {
  /** Prepares the sending socket. */
  prepare?: (fd: number) => void;
  /** The receiver uses UDP GRO. */
  gro?: boolean;
  /** Datagrams per recvBatch call. */
  max?: number;
}

/**
 * Sends 120 datagrams (runs of equal sizes with shorter ones between, two endpoints) from a
 * GSO-enabled batch to one receiving socket and checks every datagram arrives intact, in order.
 */
function sendGsoBatch({ prepare, gro = false, max = 128 }: GsoCase): UdpBatch {
  const server = openUdpSockets(0, 1);
  const client = openUdpSockets(0, 1);
  try {
    prepare?.(client.fds[0]!);
    const sender = new UdpBatch(client.fds[0]!, 128, true);
    const to = new EndpointTable(2);
    parseEndpoint(`127.0.0.1:${server.port}`, to, 0);
    parseEndpoint(`[::1]:${server.port}`, to, 1);
    const { slab: s, offsets, lens } = slab(120);
    const rows = new Uint32Array(120);
    for (let k = 0; k < 120; k++) {
      lens[k] = k % 50 === 49 ? 300 + k : 1452;
      rows[k] = k < 100 ? 0 : 1;
      for (let i = 0; i < lens[k]!; i++) s[offsets[k]! + i] = (k + i) & 0xff;
    }
    const sent = Int32Array.from(lens);
    assert.equal(sender.sendBatch(s, offsets, lens, perDatagram(to, rows, 120), 120), 120);
    assert.deepEqual(lens, sent, 'no datagram refused');
    const got: number[] = [];
    const poll = new PollSet([server.fds[0]!]);
    // The GRO area sits behind the receive slots, as a worker's sits in the slab.
    const r = slab(max + GRO_AREA_BYTES / SLOT);
    const receiver = new UdpBatch(server.fds[0]!, max, true, gro ? max * SLOT : -1);
    const from = new EndpointTable(max);
    const deadline = Date.now() + 5000;
    while (got.length < 120 && Date.now() < deadline) {
      const n = receiver.recvBatch(r.slab, r.offsets, SLOT, r.lens, from, max);
      assert.ok(n >= 0, `recvBatch: errno ${-n}`);
      if (n === 0) poll.wait(100);
      for (let j = 0; j < n; j++) {
        const k = got.length;
        assert.equal(r.lens[j], sent[k], `length of datagram ${k}`);
        for (let i = 0; i < sent[k]!; i++) assert.equal(r.slab[r.offsets[j]! + i], (k + i) & 0xff, `byte ${i} of datagram ${k}`);
        assert.equal(formatEndpoint(from, j), k < 100 ? `127.0.0.1:${client.port}` : `[::1]:${client.port}`);
        got.push(k);
      }
    }
    assert.equal(got.length, 120);
    return sender;
  } finally {
    [...server.fds, ...client.fds].forEach(closeFd);
  }
}

test('UDP GSO: runs sent with UDP_SEGMENT arrive as the separate datagrams, intact and in order', () => {
  assert.equal(sendGsoBatch({}).gso, true);
});

test('UDP GSO: runs the kernel refuses are sent again one by one, nothing lost', () => {
  // Without UDP checksums (SO_NO_CHECK) the kernel refuses every GSO send to IPv4 with EINVAL.
  const sender = sendGsoBatch({ prepare: (fd) => assert.equal(libc.setsockopt(fd, SOL_SOCKET, SO_NO_CHECK, Int32Array.of(1), 4), 0) });
  assert.equal(sender.gso, true, 'EINVAL concerns the run, not the socket');
});

test('UDP GRO: coalesced runs are cut back into datagrams, intact and in order, also across calls', () => {
  sendGsoBatch({ gro: true });
  sendGsoBatch({ gro: true, max: 7 });
  sendGsoBatch({ gro: true, max: 1 });
});

test('UDP: a single control datagram, a busy port fails with EADDRINUSE, SO_MARK needs privilege only', () => {
  const server = openUdpSockets(0, 1);
  const client = openUdpSockets(0, 1);
  try {
    assert.throws(() => openUdpSockets(server.port, 1), /port in use.*errno 98/);
    const to = new EndpointTable(1);
    parseEndpoint(`[::ffff:127.0.0.1]:${server.port}`, to, 0);
    const data = new Uint8Array(new ArrayBuffer(8));
    data.set([7, 8, 9], 2);
    const results: [number, number, boolean][] = [];
    const one = new DatagramBatch(() => client.fds[0]!, (tag, sent, refused) => results.push([tag, sent, refused]));
    one.queue(data, 2, 3, to, 0, 0);
    one.flush();
    assert.deepEqual(results, [[0, 3, false]]);
    const got = receiveAll([new UdpBatch(server.fds[0]!)], 1);
    assert.deepEqual(got.map((g) => [g.len, g.tag, g.from]), [[3, 7, `127.0.0.1:${client.port}`]]);
    assert.equal(setMark(client.fds[0]!, 0x51820), isRoot ? 0 : -1);
  } finally {
    [...server.fds, ...client.fds].forEach(closeFd);
  }
});

test('UDP: DatagramBatch sends what was queued with sendmmsg, flushes itself when full, reports each message', () => {
  const server = openUdpSockets(0, 1);
  const client = openUdpSockets(0, 1);
  try {
    const to = new EndpointTable(1);
    parseEndpoint(`[::ffff:127.0.0.1]:${server.port}`, to, 0);
    const results: [number, number, boolean][] = [];
    const batch = new DatagramBatch(() => client.fds[0]!, (tag, sent, refused) => results.push([tag, sent, refused]));
    const msg = new Uint8Array(new ArrayBuffer(MAX_DATAGRAM + 4));
    const total = DATAGRAM_BATCH + 3;
    for (let i = 0; i < total; i++) {
      msg[1] = i; // the first byte a receive reports as `tag`
      batch.queue(msg, 1, 10 + (i % 50), to, 0, i);
      // The caller's buffer is free at once: the batch keeps a copy.
      msg[1] = 0xff;
    }
    // The queue flushed itself once when it was full; the last three wait for flush().
    assert.equal(batch.pending, 3);
    assert.equal(results.length, DATAGRAM_BATCH);
    batch.flush();
    assert.equal(batch.pending, 0);
    assert.deepEqual(results.map(([tag]) => tag), Array.from({ length: total }, (_, i) => i));
    assert.ok(results.every(([tag, sent, refused]) => sent === 10 + (tag % 50) && !refused));
    assert.equal(batch.syscalls, 2);
    const got = receiveAll([new UdpBatch(server.fds[0]!)], total);
    assert.deepEqual(got.map((g) => [g.tag, g.len]), Array.from({ length: total }, (_, i) => [i, 10 + (i % 50)]));
    assert.throws(() => batch.queue(msg, 0, MAX_DATAGRAM + 1, to, 0, 0), RangeError);
    // A message the kernel refuses is reported and the others still go.
    const bad = new EndpointTable(1);
    parseEndpoint('[::ffff:127.0.0.1]:0', bad, 0);
    results.length = 0;
    batch.queue(msg, 0, 5, bad, 0, 1);
    batch.queue(msg, 0, 6, to, 0, 2);
    batch.flush();
    assert.equal(results.length, 2);
    assert.ok(results[0]![1] < 0);
    assert.deepEqual(results[1], [2, 6, false]);
  } finally {
    [...server.fds, ...client.fds].forEach(closeFd);
  }
});

test('eventfd wakes a poll, in this thread and in a worker blocked in poll', async () => {
  const ev = EventFd.create();
  try {
    const set = new PollSet([ev.fd]);
    assert.equal(set.wait(0), 0);
    assert.equal(ev.signal(), 0);
    assert.equal(ev.signal(), 0);
    assert.equal(set.wait(1000), 1);
    assert.ok(set.ready(0));
    assert.equal(ev.drain(), 2);
    assert.equal(ev.drain(), 0);
    assert.equal(set.wait(0), 0);

    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       import(workerData.url).then(({ EventFd, PollSet }) => {
         const set = new PollSet([workerData.fd]);
         parentPort.postMessage('waiting');
         const n = set.wait(10000);
         parentPort.postMessage({ n, drained: new EventFd(workerData.fd).drain() });
       });`,
      { eval: true, workerData: { url: libcUrl, fd: ev.fd } },
    );
    const messages: unknown[] = [];
    const done = new Promise<void>((resolve, reject) => {
      worker.on('message', (m) => {
        messages.push(m);
        if (m === 'waiting') setTimeout(() => ev.signal(), 50);
        else resolve();
      });
      worker.on('error', reject);
    });
    await done;
    await worker.terminate();
    assert.deepEqual(messages, ['waiting', { n: 1, drained: 1 }]);
  } finally {
    ev.close();
  }
});

test('TUN names: what the kernel accepts, without templates', () => {
  for (const ok of ['wg0', 'a', 'wg-ts_0.x', '123456789012345']) assert.ok(isValidName(ok), ok);
  for (const bad of ['', '1234567890123456', 'wg 0', 'wg/0', 'wg:0', 'wg%d', '.', '..', 'wgé']) assert.ok(!isValidName(bad), bad);
  assert.throws(() => openQueues('wg%d', 1), TypeError);
});

const ipv4Udp = (): Uint8Array => Uint8Array.from([
  0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 9, 0, 2, 10, 9, 0, 1, 0, 9, 0, 9, 0, 8, 0, 0,
]);

test('TUN: exclusive multi-queue open, MTU, refused writes, survives a move to a namespace, notices deletion', { skip: rootOnly }, async () => {
  const cleanup = new Cleanup();
  const name = uniqueName('wgtsq');
  try {
    const ns = createNetns(cleanup, 'wgtss');
    const fds = openQueues(name, 2);
    cleanup.add(() => fds.forEach((fd) => new TunQueue(fd).close()));
    assert.ok(interfaceIndex(name) > 0);
    assert.throws(() => openQueues(name, 1), /already exists/);
    setMtu(name, 1420);
    assert.equal(getMtu(name), 1420);

    const q = new TunQueue(fds[0]!);
    const { slab: s, offsets, lens } = slab(4);
    assert.equal(q.readBatch(s, offsets, SLOT, lens, 4), 0, 'a down device has nothing to read');
    assert.throws(() => q.readBatch(s, Uint32Array.of(3 * SLOT + 1), SLOT, lens, 1), RangeError);
    s.set(ipv4Udp(), offsets[1]);
    lens.set([1, 28]);
    assert.equal(q.writeBatch(s, offsets, lens, 2), 2, 'both packets consumed');
    assert.deepEqual([lens[0], lens[1]], [-EINVAL, -EIO], 'too short; device down');

    sh('ip', ['link', 'set', name, 'netns', ns]);
    assert.equal(interfaceIndex(name), 0, 'gone from this namespace');
    assert.ok(fds.every(tunAttached), 'still attached after the move');
    sh('ip', ['-n', ns, 'link', 'set', name, 'up']);
    lens[0] = 28;
    assert.equal(q.writeBatch(s, Uint32Array.of(offsets[1]!), lens, 1), 1);
    assert.equal(lens[0], 28, 'written into the namespace');

    sh('ip', ['-n', ns, 'link', 'del', name]);
    assert.ok(!fds.some(tunAttached), 'deletion noticed on every queue');
    const poll = new PollSet(fds);
    assert.equal(poll.wait(0), 2, 'a worker sleeping on the queues wakes up');
    assert.ok(poll.ready(0) && poll.ready(1));
    assert.equal(q.readBatch(s, offsets, SLOT, lens, 4), -EBADFD);
  } finally {
    await cleanup.run();
  }
});

// Answers IPv4 ICMP echo requests on both queues until WANT were answered, then prints a summary.
const RESPONDER = `
import { openQueues, TunQueue } from '${tunUrl}';
import { PollSet } from '${libcUrl}';
const want = Number(process.env.WANT);
const fds = openQueues(process.env.TUN_NAME, 2);
const queues = fds.map((fd) => new TunQueue(fd));
const poll = new PollSet(fds);
const slots = 64, SLOT = 2048;
const slab = new Uint8Array(new SharedArrayBuffer(slots * SLOT));
const offsets = Uint32Array.from({ length: slots }, (_, i) => i * SLOT);
const lens = new Int32Array(slots), outOffsets = new Uint32Array(slots), outLens = new Int32Array(slots);
function toReply(p, len) {
  const ihl = (slab[p] & 15) * 4;
  if (slab[p] >> 4 !== 4 || slab[p + 9] !== 1 || slab[p + ihl] !== 8) return false;
  for (let i = 12; i < 16; i++) { const t = slab[p + i]; slab[p + i] = slab[p + i + 4]; slab[p + i + 4] = t; }
  slab[p + ihl] = 0;
  slab[p + ihl + 2] = slab[p + ihl + 3] = 0;
  let sum = 0;
  for (let i = ihl; i < len; i += 2) sum += (slab[p + i] << 8) | (i + 1 < len ? slab[p + i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  slab[p + ihl + 2] = ~sum >> 8 & 0xff;
  slab[p + ihl + 3] = ~sum & 0xff;
  return true;
}
console.log('ready');
let answered = 0;
const deadline = Date.now() + 20000;
while (answered < want && Date.now() < deadline) {
  if (poll.wait(200) <= 0) continue;
  queues.forEach((q, i) => {
    if (!poll.ready(i)) return;
    const n = q.readBatch(slab, offsets, SLOT, lens, slots);
    let r = 0;
    for (let k = 0; k < n; k++) if (toReply(offsets[k], lens[k])) { outOffsets[r] = offsets[k]; outLens[r++] = lens[k]; }
    q.writeBatch(slab, outOffsets, outLens, r);
    for (let k = 0; k < r; k++) if (outLens[k] > 0) answered++;
  });
}
console.log(JSON.stringify({ answered }));
`;

// A ping through an ICMP datagram socket (no ping binary needed): COUNT echoes to TARGET.
const PINGER = `
import { writeFileSync } from 'node:fs';
import { libc, errno, AF_INET, SOCK_DGRAM, IPPROTO_ICMP, PollSet } from '${libcUrl}';
writeFileSync('/proc/sys/net/ipv4/ping_group_range', '0 2147483647');
const fd = libc.socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
if (fd < 0) throw new Error('ICMP socket: errno ' + errno());
const to = new Uint8Array(new ArrayBuffer(16));
to[0] = AF_INET;
to.set(process.env.TARGET.split('.').map(Number), 4);
const msg = new Uint8Array(new ArrayBuffer(64)), reply = new Uint8Array(new ArrayBuffer(1500));
const poll = new PollSet([fd]);
let received = 0;
const count = Number(process.env.COUNT);
for (let seq = 1; seq <= count; seq++) {
  msg.fill(0); msg[0] = 8; msg[7] = seq;
  if (libc.sendto(fd, msg, 64, 0, to, 16) !== 64) throw new Error('sendto: errno ' + errno());
  const until = Date.now() + 3000;
  while (Date.now() < until && poll.wait(100) >= 0) {
    const n = libc.recvfrom(fd, reply, 1500, 0x40, null, null);
    if (n >= 8 && reply[0] === 0 && reply[7] === seq) { received++; break; }
  }
}
console.log(JSON.stringify({ received }));
process.exit(received === count ? 0 : 1);
`;

function nodeScript(code: string, env: Record<string, string>, ns?: string): ChildProcess {
  const node = [process.execPath, '--input-type=module', '-e', code];
  const [cmd, ...args] = ns === undefined ? node : ['ip', 'netns', 'exec', ns, ...node];
  return spawn(cmd!, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Resolves with the exit code and everything the child printed. */
function finished(child: ChildProcess): Promise<{ code: number | null; out: string }> {
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out })));
}

function printed(child: ChildProcess, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes(line) && resolve());
    child.on('close', () => reject(new Error(`child exited before printing ${line}`)));
  });
}

async function pingThroughTun(openInside: boolean): Promise<void> {
  const cleanup = new Cleanup();
  const name = uniqueName('wgtsp');
  try {
    const ns = createNetns(cleanup, 'wgtsn');
    const responder = nodeScript(RESPONDER, { TUN_NAME: name, WANT: '3' }, openInside ? ns : undefined);
    cleanup.add(() => void responder.kill());
    const responderDone = finished(responder);
    await printed(responder, 'ready');
    if (!openInside) sh('ip', ['link', 'set', name, 'netns', ns]);
    sh('ip', ['-n', ns, 'addr', 'add', '10.201.0.1/24', 'dev', name]);
    sh('ip', ['-n', ns, 'link', 'set', name, 'up']);
    const pinger = nodeScript(PINGER, { TARGET: '10.201.0.2', COUNT: '3' }, ns);
    cleanup.add(() => void pinger.kill());
    const [ping, answer] = await Promise.all([finished(pinger), responderDone]);
    assert.equal(ping.code, 0, `ping failed: ${ping.out}`);
    assert.match(ping.out, /"received":3/);
    assert.match(answer.out, /"answered":3/);
  } finally {
    await cleanup.run();
  }
}

test('TUN: ping answered through readBatch/writeBatch, device opened outside and moved into the namespace', { skip: rootOnly, timeout: 60000 }, () =>
  pingThroughTun(false));

test('TUN: ping answered through readBatch/writeBatch, device opened by a process inside the namespace', { skip: rootOnly, timeout: 60000 }, () =>
  pingThroughTun(true));

test('UDP: the sticky source: replies leave from it, the local address of a received datagram is learnt, and a source the kernel refuses is forgotten and routed', () => {
  const server = openUdpSockets(0, 1);
  const client = openUdpSockets(0, 1);
  try {
    const mapped = (a: number[]): number[] => [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...a];
    const to = new EndpointTable(2);
    parseEndpoint(`127.0.0.1:${server.port}`, to, 0);
    parseEndpoint(`127.0.0.1:${server.port}`, to, 1);
    to.src.set(mapped([127, 0, 0, 7]), 0); // local (all of 127/8 is): sent from it
    to.src.set(mapped([192, 0, 2, 77]), 16); // not ours: EINVAL, then routed
    const { slab: s, offsets, lens } = slab(2);
    s[offsets[0]!] = 1;
    s[offsets[1]!] = 2;
    lens.fill(40);
    const sender = new UdpBatch(client.fds[0]!, 2);
    assert.equal(sender.sendBatch(s, offsets, lens, to, 2), 2);
    assert.deepEqual([...lens], [40, 40], 'both sent');
    assert.deepEqual([sender.sourcesRefused, ...sender.sourceRefused], [1, 0, 1]);
    assert.equal(to.hasSource(0), true);
    assert.equal(to.hasSource(1), false, 'the refused source is cleared');

    // The receiver learns where each datagram arrived (its sticky source for replies).
    const receiver = new UdpBatch(server.fds[0]!, 8);
    const r = slab(8);
    const from = new EndpointTable(8);
    const poll = new PollSet([server.fds[0]!]);
    const got = new Map<number, string>();
    const deadline = Date.now() + 5000;
    while (got.size < 2 && Date.now() < deadline) {
      if (poll.wait(100) <= 0) continue;
      const n = receiver.recvBatch(r.slab, r.offsets, SLOT, r.lens, from, 8);
      for (let k = 0; k < n; k++) got.set(r.slab[r.offsets[k]!]!, `${formatEndpoint(from, k)} to ${[...from.src.subarray(16 * k + 12, 16 * k + 16)].join('.')}`);
    }
    assert.equal(got.get(1), `127.0.0.7:${client.port} to 127.0.0.1`);
    assert.equal(got.get(2), `127.0.0.1:${client.port} to 127.0.0.1`);

    // The control plane's sends follow the same rule: sent from the routed address, the refusal reported.
    const one = new EndpointTable(1);
    parseEndpoint(`127.0.0.1:${server.port}`, one, 0);
    one.src.set(mapped([192, 0, 2, 78]), 0);
    const data = new Uint8Array(new ArrayBuffer(8));
    data[0] = 3;
    const results: [number, number, boolean][] = [];
    const control = new DatagramBatch(() => client.fds[0]!, (tag, sent, refused) => results.push([tag, sent, refused]));
    control.queue(data, 0, 8, one, 0, 7);
    control.flush();
    assert.deepEqual(results, [[7, 8, true]]);
  } finally {
    [...server.fds, ...client.fds].forEach(closeFd);
  }
});
