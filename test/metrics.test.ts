// Metrics: the exposition format (escaping, HELP/TYPE, values), what a scrape contains for a
// fake device (checked by an independent parser of the format), the per-peer limit, yielding
// during a large scrape, option parsing, and the HTTP endpoint on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { request } from 'node:http';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { escapeHelp, escapeLabelValue, formatValue, CONTENT_TYPE, ExpositionWriter } from '../src/metrics/exposition.js';
import { writeMetrics, type MetricsSource, type HandshakeStats } from '../src/metrics/collector.js';
import { MAX_SCRAPES, looksLikeListen, parseListen, parsePeerLimit, pause, startMetricsServer } from '../src/metrics/server.js';
import { COUNTER_NAMES } from '../src/queues/tables.js';
import type { PeerState } from '../src/uapi/types.js';
import { newPeer } from './uapi-fake.js';
import { seededRandom } from './helpers.js';

// ---- an independent reader of the text format ----

interface Sample { name: string; labels: Record<string, string>; value: string }
interface Family { type: string; help: string; samples: Sample[] }

/**
 * Parses exposition text strictly: HELP then TYPE open a family, its samples follow as one
 * group, label values use only the three escapes, no series appears twice. Throws otherwise.
 */
function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith('\n'), 'the text ends with a line feed');
  const families = new Map<string, Family>();
  let current: string | undefined;
  let pendingHelp: { name: string; help: string } | undefined;
  const seen = new Set<string>();
  for (const line of text.slice(0, -1).split('\n')) {
    let m: RegExpExecArray | null;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line))) {
      assert.ok(!families.has(m[1]!), `family ${m[1]} opened twice`);
      pendingHelp = { name: m[1]!, help: unescape(m[2]!, false) };
    } else if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$/.exec(line))) {
      assert.equal(pendingHelp?.name, m[1], `TYPE ${m[1]} follows its HELP`);
      families.set(m[1]!, { type: m[2]!, help: pendingHelp!.help, samples: [] });
      current = m[1];
      pendingHelp = undefined;
    } else {
      const s = parseSample(line);
      assert.equal(s.name, current, `sample ${s.name} is in its family's group`);
      const key = `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`;
      assert.ok(!seen.has(key), `series ${key} appears once`);
      seen.add(key);
      families.get(s.name)!.samples.push(s);
    }
  }
  return families;
}

function parseSample(line: string): Sample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line);
  assert.ok(m, `sample line: ${line.slice(0, 200)}`);
  assert.match(m[3]!, /^(?:[+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?|NaN|[+-]Inf)$/, `value in ${line}`);
  const labels: Record<string, string> = {};
  const body = m[2]?.slice(1, -1) ?? '';
  for (let i = 0; i < body.length;) {
    const name = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(body.slice(i));
    assert.ok(name, `label name at ${i} of ${line}`);
    i += name[0].length;
    let raw = '';
    while (body[i] !== '"') {
      assert.ok(i < body.length, `closed label value in ${line}`);
      if (body[i] === '\\') raw += body[i++];
      raw += body[i++];
    }
    labels[name[1]!] = unescape(raw, true);
    i++;
    if (i < body.length) assert.equal(body[i++], ',', `comma between labels in ${line}`);
  }
  return { name: m[1]!, labels, value: m[3]! };
}

/** Label values know \\, \" and \n; HELP text only \\ and \n. */
function unescape(s: string, quotes: boolean): string {
  return s.replace(/\\(.)/g, (_, c: string) => {
    if (c === 'n') return '\n';
    if (c === '\\' || (quotes && c === '"')) return c;
    throw new Error(`bad escape \\${c} in ${s}`);
  });
}

// ---- a fake device ----

const v4 = (...b: number[]): Uint8Array => Uint8Array.from(b);
const v6 = (text: string): Uint8Array => {
  const [head, tail = ''] = text.split('::');
  const groups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const h = groups(head!);
  const t = groups(tail);
  const all = [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
  return Uint8Array.from(all.flatMap((g) => [g >> 8, g & 255]));
};

function fakePeer(i: number, ips: { addr: Uint8Array; cidr: number }[]): PeerState {
  const key = new Uint8Array(32);
  new DataView(key.buffer).setUint32(0, i + 1);
  return { ...newPeer(key), txBytes: BigInt(1000 + i), rxBytes: BigInt(2000 + i) * 1_000_000_000n, lastHandshakeSec: 1_700_000_000 + i, allowedIps: ips };
}

const stats = (): HandshakeStats => {
  const zeros = { mac1: 0, cookie: 0, ratelimit: 0, queue: 0, dh: 0, decrypt: 0, 'unknown-peer': 0, replay: 0, flood: 0, state: 0 };
  return { completed: 7, cookieRepliesSent: 3, offloaded: 5, rejected: { initiation: { ...zeros, mac1: 2, cookie: 3 }, response: { ...zeros, decrypt: 1 } },
    routed: { reports: 4, initiations: 2, limited: 1 } };
};

/** `peers` may be a function, for walks too large to hold (generated on the fly). */
function fakeSource(ifname: string, peers: PeerState[] | { count: number; make: (i: number) => PeerState }, onNext?: () => void): MetricsSource {
  const count = Array.isArray(peers) ? peers.length : peers.count;
  const at = Array.isArray(peers) ? (i: number) => peers[i]! : peers.make;
  return {
    ifname,
    peerCount: () => count,
    *peers() {
      for (let i = 0; i < count; i++) {
        onNext?.();
        yield at(i);
      }
    },
    handshakes: stats,
    underLoad: () => true,
    workerRestarts: () => 2,
    pendingRecords: () => 12,
    workers: () => [0, 1].map((w) => ({ worker: String(w), names: COUNTER_NAMES, values: COUNTER_NAMES.map((_, i) => 100 * w + i) })),
  };
}

async function scrape(source: MetricsSource, maxPeers = Infinity): Promise<string> {
  const chunks: Buffer[] = [];
  const done = await writeMetrics(source, maxPeers, (c) => chunks.push(Buffer.from(c)), async () => (await nextTurn(), true));
  assert.ok(done);
  return Buffer.concat(chunks).toString('utf8');
}

const PEERS = [
  fakePeer(0, [{ addr: v4(10, 0, 0, 2), cidr: 32 }, { addr: v6('fd00::2'), cidr: 128 }]),
  fakePeer(1, []),
  fakePeer(2, [{ addr: v4(0, 0, 0, 0), cidr: 0 }, { addr: v6('fd00:1:0:0:0:0:0:0'), cidr: 48 }]),
];

// ---- the format ----

test('label values escape backslash, double quote and line feed, nothing else', () => {
  assert.equal(escapeLabelValue('plain-wg0'), 'plain-wg0');
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(escapeLabelValue('tab\there'), 'tab\there');
  assert.equal(unescape(escapeLabelValue('x\\"\n\\n'), true), 'x\\"\n\\n');
});

test('HELP text escapes backslash and line feed but keeps double quotes', () => {
  assert.equal(escapeHelp('say "hi"\\now\nthen'), 'say "hi"\\\\now\\nthen');
});

test('values: integers in full, bigints past 2^53, the non-finite spellings', () => {
  assert.equal(formatValue(0), '0');
  assert.equal(formatValue(1_700_000_000), '1700000000');
  assert.equal(formatValue(2n ** 64n - 1n), '18446744073709551615');
  assert.equal(formatValue(0.25), '0.25');
  assert.equal(formatValue(NaN), 'NaN');
  assert.equal(formatValue(Infinity), '+Inf');
  assert.equal(formatValue(-Infinity), '-Inf');
});

test('keys are written in standard base64 with padding, as Buffer writes it', () => {
  const random = seededRandom(7);
  for (let len = 0; len <= 34; len++) {
    const bytes = Uint8Array.from({ length: len }, () => Math.floor(random() * 256));
    let out = '';
    const w = new ExpositionWriter((c) => (out += Buffer.from(c).toString('latin1')));
    w.base64(bytes);
    w.flush();
    assert.equal(out, Buffer.from(bytes).toString('base64'), `${len} bytes`);
  }
});

// ---- a scrape ----

test('a scrape: exporter-compatible per-peer families, device families, valid throughout', async () => {
  const ifname = 'wg"0\\x';
  const fams = parseExposition(await scrape(fakeSource(ifname, PEERS)));

  const sent = fams.get('wireguard_sent_bytes_total')!;
  assert.equal(sent.type, 'counter');
  assert.equal(sent.help, 'Bytes sent to the peer');
  assert.equal(fams.get('wireguard_received_bytes_total')!.type, 'counter');
  assert.equal(fams.get('wireguard_latest_handshake_seconds')!.type, 'gauge');
  for (const [name, value] of [
    ['wireguard_sent_bytes_total', (p: PeerState) => String(p.txBytes)],
    ['wireguard_received_bytes_total', (p: PeerState) => String(p.rxBytes)],
    ['wireguard_latest_handshake_seconds', (p: PeerState) => String(p.lastHandshakeSec)],
  ] as const) {
    const samples = fams.get(name)!.samples;
    assert.equal(samples.length, PEERS.length, name);
    samples.forEach((s, i) => {
      // The exporter's labels, in its order.
      assert.deepEqual(Object.keys(s.labels), ['interface', 'public_key', 'allowed_ips']);
      assert.equal(s.labels.interface, ifname);
      assert.equal(s.labels.public_key, Buffer.from(PEERS[i]!.publicKey).toString('base64'));
      assert.equal(s.value, value(PEERS[i]!));
    });
    assert.deepEqual(samples.map((s) => s.labels.allowed_ips), ['10.0.0.2/32,fd00::2/128', '(none)', '0.0.0.0/0,fd00:1::/48']);
  }
  // Received bytes past 2^53 stay exact.
  assert.equal(fams.get('wireguard_received_bytes_total')!.samples[2]!.value, '2002000000000');

  const one = (name: string): string => {
    const f = fams.get(name);
    assert.ok(f, name);
    assert.equal(f.samples.length, 1, name);
    assert.deepEqual(f.samples[0]!.labels, { interface: ifname });
    return f.samples[0]!.value;
  };
  assert.equal(one('wireguard_peers'), '3');
  assert.equal(one('wireguard_handshakes_completed_total'), '7');
  assert.equal(one('wireguard_cookie_replies_sent_total'), '3');
  assert.equal(one('wireguard_handshakes_offloaded_total'), '5');
  assert.equal(one('wireguard_under_load'), '1');
  assert.equal(one('wireguard_control_records_pending'), '12');
  assert.equal(one('wireguard_unknown_index_reports_total'), '4');
  const routed = fams.get('wireguard_routed_initiations_total')!.samples;
  assert.deepEqual(routed.map((s) => [s.labels.result, s.value]), [['sent', '2'], ['limited', '1']]);

  const rejected = fams.get('wireguard_handshakes_rejected_total')!.samples;
  assert.equal(rejected.length, 2 * 10);
  const rej = (type: string, reason: string): string | undefined => rejected.find((s) => s.labels.type === type && s.labels.reason === reason)?.value;
  assert.equal(rej('initiation', 'mac1'), '2');
  assert.equal(rej('initiation', 'cookie'), '3');
  assert.equal(rej('response', 'decrypt'), '1');
  assert.equal(rej('response', 'unknown-peer'), '0');

  const packets = fams.get('wireguard_worker_packets_total')!.samples;
  assert.deepEqual(packets.map((s) => [s.labels.worker, s.labels.direction, s.value]), [['0', 'rx', '0'], ['0', 'tx', '1'], ['1', 'rx', '100'], ['1', 'tx', '101']]);
  const dropped = fams.get('wireguard_packets_dropped_total')!.samples;
  const drops = COUNTER_NAMES.filter((n) => n.startsWith('drop_'));
  assert.equal(dropped.length, 2 * drops.length);
  const noRoute = COUNTER_NAMES.indexOf('drop_no_route');
  assert.equal(dropped.find((s) => s.labels.worker === '1' && s.labels.reason === 'no_route')?.value, String(100 + noRoute));
});

test('--metrics-peers: none drops the per-peer families, N keeps the first N peers', async () => {
  const none = parseExposition(await scrape(fakeSource('wg0', PEERS), 0));
  assert.equal(none.has('wireguard_sent_bytes_total'), false);
  assert.equal(none.get('wireguard_peers')!.samples[0]!.value, '3');
  const two = parseExposition(await scrape(fakeSource('wg0', PEERS), 2));
  for (const name of ['wireguard_sent_bytes_total', 'wireguard_received_bytes_total', 'wireguard_latest_handshake_seconds']) {
    assert.deepEqual(two.get(name)!.samples.map((s) => s.labels.public_key), PEERS.slice(0, 2).map((p) => Buffer.from(p.publicKey).toString('base64')));
  }
});

test('a peer with thousands of allowed IPs makes one intact line longer than a chunk', async () => {
  const ips = Array.from({ length: 5000 }, (_, i) => ({ addr: v6(`fd00:1234:5678::${(i + 1).toString(16)}`), cidr: 128 }));
  const fams = parseExposition(await scrape(fakeSource('wg0', [fakePeer(0, ips)])));
  const label = fams.get('wireguard_sent_bytes_total')!.samples[0]!.labels.allowed_ips!;
  assert.ok(label.length > 64 * 1024);
  assert.deepEqual(label.split(','), ips.map((_, i) => `fd00:1234:5678::${(i + 1).toString(16)}/128`));
});

// ---- options ----

test('--metrics [ADDR:]PORT: loopback by default, literal IPv4 or bracketed IPv6 addresses', () => {
  assert.deepEqual(parseListen('9586'), { host: '127.0.0.1', port: 9586 });
  assert.deepEqual(parseListen('0.0.0.0:9100'), { host: '0.0.0.0', port: 9100 });
  assert.deepEqual(parseListen('[::]:9586'), { host: '::', port: 9586 });
  assert.deepEqual(parseListen('[fd00::1]:1'), { host: 'fd00::1', port: 1 });
  for (const bad of ['0', '65536', '::1:9586', 'localhost:9586', '[1.2.3.4]:80', '1.2.3.4:', '[]:80', '1.2.3:80', ':9586']) {
    assert.equal(typeof parseListen(bad), 'string', bad);
  }
  // What follows --metrics is its value only if it cannot be an interface name.
  assert.equal(looksLikeListen('wg0'), false);
  assert.equal(looksLikeListen('9586'), true);
  assert.equal(looksLikeListen('0.0.0.0:9586'), true);
});

test('--metrics-peers none|all|N', () => {
  assert.equal(parsePeerLimit('none'), 0);
  assert.equal(parsePeerLimit('all'), Infinity);
  assert.equal(parsePeerLimit('1000'), 1000);
  for (const bad of ['', '-1', '1e3', 'some', '10000000000']) assert.equal(parsePeerLimit(bad), null, bad);
});

// ---- the endpoint ----

function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, type: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('the endpoint serves /metrics as the collector writes it, and nothing else', async () => {
  const source = fakeSource('wg0', PEERS);
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0 }, source, { maxPeers: Infinity });
  try {
    const r = await get(server.port, '/metrics');
    assert.equal(r.status, 200);
    assert.equal(r.type, CONTENT_TYPE);
    assert.equal(r.body, await scrape(source));
    assert.equal((await get(server.port, '/metrics?x=1')).status, 200);
    assert.equal((await get(server.port, '/metrics', 'HEAD')).body, '');
    assert.equal((await get(server.port, '/')).status, 404);
    assert.equal((await get(server.port, '/metrics', 'POST')).status, 405);
  } finally {
    await server.close();
  }
});

test('a busy port is a start-up error that names it', async () => {
  const other = createServer();
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  const port = (other.address() as AddressInfo).port;
  try {
    await assert.rejects(startMetricsServer({ host: '127.0.0.1', port }, fakeSource('wg0', []), { maxPeers: 0 }), new RegExp(`127\\.0\\.0\\.1:${port}: EADDRINUSE`));
  } finally {
    other.close();
  }
});

test('a client that hangs up stops its scrape', async () => {
  const count = 300_000;
  let walked = 0;
  const source = fakeSource('wg0', { count, make: (i) => fakePeer(i, []) }, () => walked++);
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0 }, source, { maxPeers: Infinity });
  try {
    const sock = connect(server.port, '127.0.0.1');
    sock.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((resolve) => sock.once('data', resolve));
    sock.destroy();
    // The walk stops at a pause once the server sees the close; it would reach 3 * count otherwise.
    let before = -1;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      if (walked === before) break;
      before = walked;
    }
    assert.ok(walked < count, `walked ${walked} of ${3 * count}`);
  } finally {
    await server.close();
  }
});

/** Sends GET /metrics on a raw socket that reads nothing more once the headers came. */
async function stalledClient(port: number): Promise<{ status: number; sock: Socket }> {
  const sock = connect(port, '127.0.0.1');
  sock.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n');
  const first = await new Promise<Buffer>((resolve) => sock.once('data', resolve));
  sock.pause();
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(first.toString('latin1'))?.[1]), sock };
}

/** Waits until `value()` stops changing for 100 ms; returns it. */
async function settled(value: () => number): Promise<number> {
  let before = -1;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const v = value();
    if (v === before) return v;
    before = v;
  }
}

test('a client that stops reading is cut after the stall timeout, and its scrape lets go of the walk', async () => {
  const count = 300_000;
  let walked = 0;
  const source = fakeSource('wg0', { count, make: (i) => fakePeer(i, []) }, () => walked++);
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0 }, source, { maxPeers: Infinity, maxScrapes: 1, stallMs: 300 });
  try {
    const { status, sock } = await stalledClient(server.port);
    sock.on('error', () => {});
    assert.equal(status, 200);
    const started = Date.now();
    // One scrape at a time: refused while the stalled one holds its place, served once it is cut.
    let first: number | undefined;
    for (;;) {
      const r = await get(server.port, '/metrics');
      first ??= r.status;
      if (r.status === 200) break;
      assert.ok(Date.now() - started < 5000, 'the stalled scrape was never cut');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(first, 503);
    const total = walked;
    assert.ok(total - 3 * count < 3 * count, `the stalled scrape's walk stopped at ${total - 3 * count} of ${3 * count}`);
    assert.equal(await settled(() => walked), total, 'and does not go on');
    sock.destroy();
  } finally {
    await server.close();
  }
});

test('a scrape that runs past the deadline is cut even while its client reads', async () => {
  const source = fakeSource('wg0', { count: 2_000_000, make: (i) => fakePeer(i, []) });
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0 }, source, { maxPeers: Infinity, timeoutMs: 300 });
  try {
    const started = Date.now();
    const outcome = await new Promise<string>((resolve) => {
      request({ host: '127.0.0.1', port: server.port, path: '/metrics' }, (res) => {
        res.on('data', () => {});
        res.on('end', () => resolve('complete'));
        res.on('error', (err) => resolve(`cut: ${err.message}`));
      }).end();
    });
    assert.match(outcome, /^cut/);
    assert.ok(Date.now() - started < 5000);
  } finally {
    await server.close();
  }
});

test(`at most ${MAX_SCRAPES} scrapes at once: more are answered 503 until one ends`, async () => {
  const source = fakeSource('wg0', { count: 300_000, make: (i) => fakePeer(i, []) });
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0 }, source, { maxPeers: Infinity });
  const clients: Socket[] = [];
  try {
    for (let i = 0; i < MAX_SCRAPES; i++) {
      const c = await stalledClient(server.port);
      assert.equal(c.status, 200);
      clients.push(c.sock);
    }
    const refused = await get(server.port, '/metrics');
    assert.equal(refused.status, 503);
    assert.match(refused.body, /too many scrapes/);
    assert.equal((await get(server.port, '/metrics', 'HEAD')).status, 200, 'HEAD walks nothing and is not counted');
    clients.pop()!.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const served = await get(server.port, '/metrics');
    assert.equal(served.status, 200);
    assert.ok(served.body.length > 300_000 * 3 * 50);
  } finally {
    for (const c of clients) c.destroy();
    await server.close();
  }
});

test('a large scrape yields to the event loop while it streams to a fast client', async () => {
  const count = 50_000;
  let walked = 0;
  const source = fakeSource('wg0', { count, make: (i) => fakePeer(i, [{ addr: v4(10, i >> 16, (i >> 8) & 255, i & 255), cidr: 32 }]) }, () => walked++);
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0 }, source, { maxPeers: Infinity });
  // Timer ticks while the scrape walks the peers (between its first and last step).
  let ticks = 0;
  let maxGap = 0;
  let last = 0;
  let start = 0;
  let end = 0;
  const timer = setInterval(() => {
    const t = performance.now();
    if (walked > 0 && walked < 3 * count) {
      if (start === 0) start = t;
      else maxGap = Math.max(maxGap, t - last);
      ticks++;
    } else if (start > 0 && end === 0) end = t;
    last = t;
  }, 1);
  try {
    // A client in another process reads as fast as it can, so the socket rarely fills: the
    // scrape must yield on its own, not only when it waits for 'drain'.
    const client = spawn(process.execPath, ['-e', `fetch('http://127.0.0.1:${server.port}/metrics').then((r) => r.arrayBuffer()).then((b) => console.log(b.byteLength))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    client.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    await new Promise((resolve) => client.on('exit', resolve));
    assert.ok(Number(out) > count * 3 * 100, `received ${out.trim()} bytes`);
  } finally {
    clearInterval(timer);
    await server.close();
  }
  const ms = (end || performance.now()) - start;
  console.log(`# 50k peers through HTTP: ${ms.toFixed(0)} ms of walking, ${ticks} timer ticks, longest gap ${maxGap.toFixed(1)} ms`);
  assert.equal(walked, 3 * count);
  // Without yielding the timer could not fire at all while the walk runs. (Gaps are loose: a
  // loaded machine deschedules the process now and then.)
  assert.ok(ticks >= 10, `${ticks} timer ticks`);
  assert.ok(maxGap < ms / 2, `longest gap ${maxGap.toFixed(1)} ms of ${ms.toFixed(0)} ms`);
});

test('a pause yields an event-loop turn even when the socket drains from a nextTick', async () => {
  // An HTTP response uncorks, and may emit 'drain', from process.nextTick: resuming on 'drain'
  // alone would keep the scrape in the microtask queues, never letting timers or I/O in.
  const res = Object.assign(new EventEmitter(), { writableNeedDrain: true, destroyed: false });
  let turned = false;
  setImmediate(() => (turned = true));
  const paused = pause(res);
  process.nextTick(() => res.emit('drain'));
  assert.equal(await paused, true);
  assert.ok(turned, 'an immediate ran before the scrape resumed');
  res.destroyed = true;
  assert.equal(await pause(res), false);
});
