// The load generator without root: latency percentiles against an exact sort, the report's
// rates and losses, the keys file and the server snippet, every validation of the command
// line, the inner packets, and the engine on loopback against a responder written here that
// answers every first initiation with a cookie reply and checks mac2 on the resend.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { seededRandom } from './helpers.js';
import { LatencyHistogram, buildReport, formatProgress, formatReport, mergeResults, newCounters, type LoadgenReport, type RunResult } from '../src/loadgen/stats.js';
import { ThreadedEngine, splitPlan } from '../src/loadgen/threads.js';
import { clientAddress, formatKeysFile, formatPeers, generateClients, parseKeysFile, subnetCapacity, type ClientKey } from '../src/loadgen/keys.js';
import { UsageError, checkPlan, parseLoadgenArgs, parseSources, type RunOptions } from '../src/loadgen/options.js';
import { isEchoReply, writeEchoRequest, writeUdp } from '../src/loadgen/packets.js';
import { checksum } from '../src/tun/offload.js';
import { Engine, type EngineOptions } from '../src/loadgen/engine.js';
import { formatIPv4, parseIPv4, parseServerAddress, type Subnet4 } from '../src/server/addresses.js';
import { Noise, Handshake, SessionKeys } from '../src/handshake/noise.js';
import { CookieChecker, CookieGenerator } from '../src/handshake/cookie.js';
import { TransportCrypto } from '../src/workers/transport.js';
import { generateKeyPair } from '../src/crypto/x25519.js';
import { INIT_LEN, RESP_LEN, COOKIE_REPLY_LEN, DATA_HEADER_LEN, MSG_INITIATION, MSG_DATA, messageType, readU32 } from '../src/handshake/messages.js';

const BIN = fileURLToPath(new URL('../../bin/wireguard-ts', import.meta.url));
const ip = (s: string): number => parseIPv4(s)!;
const subnet = (s: string): Subnet4 => parseServerAddress(s) as Subnet4;

// ---- statistics ----

test('latency percentiles match an exact nearest-rank sort within the histogram resolution', () => {
  const rnd = seededRandom(7);
  const h = new LatencyHistogram();
  const values: number[] = [];
  for (let i = 0; i < 20_000; i++) {
    // Log-normal-ish latencies from 50 µs to ~2 s, the shape a loaded server gives.
    const v = Math.round(Math.exp(4 + rnd() * 10.5));
    values.push(v);
    h.record(v);
  }
  values.sort((a, b) => a - b);
  for (const p of [1, 50, 90, 99, 99.9, 100]) {
    const exact = values[Math.max(1, Math.ceil((p / 100) * values.length)) - 1]!;
    const got = h.percentile(p);
    assert.ok(Math.abs(got - exact) <= exact / 64 + 0.5, `p${p}: ${got} vs exact ${exact}`);
  }
  assert.equal(h.count, values.length);
  assert.equal(h.min, values[0]);
  assert.equal(h.max, values.at(-1));
  assert.ok(Math.abs(h.mean() - values.reduce((a, b) => a + b, 0) / values.length) < 1e-6 * h.mean());
});

test('small latencies are exact, huge ones clamp, an empty histogram has no percentiles', () => {
  const h = new LatencyHistogram();
  assert.ok(Number.isNaN(h.percentile(50)));
  for (const v of [3, 3, 7, 100, 127]) h.record(v);
  assert.deepEqual([h.percentile(20), h.percentile(40), h.percentile(60), h.percentile(80), h.percentile(100)], [3, 3, 7, 100, 127]);
  h.record(1e15);
  assert.equal(h.max, 0xffffffff);
  assert.equal(h.percentile(100), 0xffffffff);
  h.record(-5);
  assert.equal(h.min, 0);
});

test('merging histograms is the same as recording everything in one', () => {
  const rnd = seededRandom(11);
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  const all = new LatencyHistogram();
  for (let i = 0; i < 5000; i++) {
    const v = Math.round(rnd() * 1e6);
    (i % 3 === 0 ? a : b).record(v);
    all.record(v);
  }
  a.merge(b);
  for (const p of [50, 90, 99, 100]) assert.equal(a.percentile(p), all.percentile(p));
  assert.deepEqual([a.count, a.min, a.max, a.mean()], [all.count, all.min, all.max, all.mean()]);
});

function result(over: Partial<RunResult> = {}): RunResult {
  const counters = { ...newCounters(), initiations: 1000, retries: 10, handshakes: 990, cookieReplies: 20, dataPackets: 400, dataBytes: 400 * 1000, echoRequests: 400, echoReplies: 390 };
  counters.errors = { timeout: 10, 'send:ENOBUFS': 2 };
  const latency = new LatencyHistogram();
  for (let ms = 1; ms <= 100; ms++) latency.record(ms * 1000);
  return {
    counters, latency, elapsedMs: 6000, initiationWindowMs: 2000, handshakeWindowMs: 2200, dataStartMs: 100, dataWindowMs: 4000, threads: 1,
    clients: 100, sources: 254, offeredRate: 500, established: 99, tunnelsWithReplies: 97, ephemerals: 0, cpuMs: 1515, systemCpuMs: 500, ...over,
  };
}

test('the report divides each count by its own window and counts echo losses', () => {
  const r = buildReport(result());
  assert.equal(r.initiationsPerS, 500);
  assert.equal(r.handshakesPerS, 450);
  assert.equal(r.cookieRepliesPerS, 9.1);
  assert.equal(r.data.pps, 100);
  assert.equal(r.data.mbps, 0.8);
  assert.equal(r.data.lossPercent, 2.5);
  // Bucket midpoints: within 1/128 of the exact 50, 90 and 99 ms.
  assert.deepEqual(r.latencyMs, { p50: 49.919, p90: 89.6, p99: 98.816, max: 100, mean: 50.5 });
  assert.deepEqual(r.errors, { timeout: 10, 'send:ENOBUFS': 2 });
  assert.equal(r.elapsedS, 6);
  // 1,000 new initiations and 10 resent with a cookie; 1.515 s of CPU over 6 s.
  assert.deepEqual(r.generator, { cpuS: 1.515, systemS: 0.5, usPerInitiation: 1500, cores: 0.25 });
  assert.equal(r.ephemerals, 0);
  const text = formatReport(r);
  assert.match(text, /100 clients from 254 source addresses/);
  assert.match(text, /handshakes {7}990 \(450\/s\), 99 of 100 clients established/);
  assert.match(text, /390 of 400 replied \(2\.5% lost\), 97 tunnels answered/);
  assert.match(text, /errors {11}send:ENOBUFS 2, timeout 10/);
  assert.match(text, /generator CPU {4}1\.515 s \(0\.5 s in the kernel\), 0\.25 cores, 1500 µs per initiation sent; a fresh ephemeral per initiation/);
  assert.match(formatReport(buildReport(result({ ephemerals: 2 }))), /; 2 precomputed ephemerals per client, reused/);
});

test('a run without handshakes or echoes reports no latency and no loss', () => {
  const r = buildReport(result({ latency: new LatencyHistogram(), counters: newCounters(), dataWindowMs: 0 }));
  assert.equal(r.latencyMs, null);
  assert.equal(r.data.lossPercent, null);
  assert.equal(r.data.pps, 0);
  const text = formatReport(r);
  assert.match(text, /latency ms {7}-/);
  assert.match(text, /errors {11}none/);
  assert.match(text, /generator CPU .* - µs per initiation sent/);
  assert.doesNotMatch(text, /echo/);
});

test('merged thread results count every sample once: percentiles of the union, windows from the common start', () => {
  const rnd = seededRandom(5);
  const parts: RunResult[] = [];
  const all = new LatencyHistogram();
  for (let k = 0; k < 3; k++) {
    const latency = new LatencyHistogram();
    // Threads with different latency shapes: averaging their p99s would be wrong.
    for (let i = 0; i < 1000 * (k + 1); i++) {
      const v = Math.round(rnd() * 1000 * 10 ** k);
      latency.record(v);
      all.record(v);
    }
    const counters = { ...newCounters(), initiations: 100 * (k + 1), handshakes: 90 * (k + 1), dataPackets: 10, errors: k === 0 ? {} : { timeout: k, [`kind${k}`]: 1 } as Record<string, number> };
    // The histogram crosses threads as plain data.
    parts.push(result({ counters, latency: LatencyHistogram.fromState(structuredClone(latency.toState())), elapsedMs: 3000 + k,
      initiationWindowMs: 2000 - k, handshakeWindowMs: 2100 + k, dataStartMs: k === 1 ? -1 : 50 + 100 * k, dataWindowMs: k === 1 ? 0 : 1000,
      clients: 10 + k, sources: 2, offeredRate: 1000 / 3, established: 9, tunnelsWithReplies: k, ephemerals: 2, cpuMs: 900 + k, systemCpuMs: 300 - k }));
  }
  const m = mergeResults(parts);
  for (const p of [50, 90, 99, 100]) assert.equal(m.latency.percentile(p), all.percentile(p));
  assert.deepEqual([m.latency.count, m.latency.min, m.latency.max, m.latency.mean()], [all.count, all.min, all.max, all.mean()]);
  assert.deepEqual(m.counters, { ...newCounters(), initiations: 600, handshakes: 540, dataPackets: 30, errors: { timeout: 3, kind1: 1, kind2: 1 } });
  assert.deepEqual({ ...m, counters: undefined, latency: undefined }, {
    counters: undefined, latency: undefined, elapsedMs: 3002, initiationWindowMs: 2000, handshakeWindowMs: 2102,
    // Thread 0's data began at 50 ms, thread 2's ended at 250 + 1000 ms; thread 1 sent none.
    dataStartMs: 50, dataWindowMs: 1200, threads: 3, clients: 33, sources: 6, offeredRate: 1000, established: 27, tunnelsWithReplies: 3,
    // Every thread measured the same process: the longest measurement, not the sum.
    ephemerals: 2, cpuMs: 902, systemCpuMs: 300,
  });
  assert.equal(buildReport(m).threads, 3);
  assert.equal(mergeResults([result({ dataStartMs: -1, dataWindowMs: 0 })]).dataWindowMs, 0);
});

test('a run is dealt out to threads: disjoint clients and sockets, shares that add up to the totals', () => {
  const key = (i: number): ClientKey => ({ privateKey: new Uint8Array(32), publicKey: new Uint8Array(32), tunnel: i });
  const base = {
    serverAddress: '10.0.0.1', serverPort: 51820, serverKey: new Uint8Array(32), family: 4 as const, durationMs: 1000, timeoutMs: 5000,
    size: 128, proto: 'icmp' as const, targetPort: 9, clients: Array.from({ length: 1000 }, (_, i) => key(i)),
    sources: Array.from({ length: 254 }, (_, i) => `10.99.1.${i + 1}`), rate: 5000, initiations: 1001, dataRate: 333, packets: Infinity, ephemerals: 0,
  };
  const plans = splitPlan(base, 3);
  assert.equal(plans.length, 3);
  assert.deepEqual(plans.map((p) => p.clients.length), [334, 333, 333]);
  assert.deepEqual(plans.flatMap((p) => p.clients.map((c) => c.tunnel)).sort((a, b) => a - b), base.clients.map((c) => c.tunnel));
  assert.deepEqual(plans.flatMap((p) => p.sources).sort(), [...base.sources].sort());
  assert.deepEqual(plans.map((p) => p.sources.length), [85, 85, 84]);
  assert.equal(plans.reduce((n, p) => n + p.initiations, 0), 1001);
  assert.ok(Math.abs(plans.reduce((n, p) => n + p.rate, 0) - 5000) < 1e-9);
  assert.ok(Math.abs(plans.reduce((n, p) => n + p.dataRate, 0) - 333) < 1e-9);
  assert.ok(plans.every((p) => p.packets === Infinity && p.durationMs === 1000));
  // No thread without a source address of its own, a client or an initiation to make.
  assert.equal(splitPlan({ ...base, sources: ['10.99.1.1'] }, 4).length, 1);
  assert.equal(splitPlan({ ...base, sources: [] }, 4).length, 4);
  assert.equal(splitPlan({ ...base, clients: base.clients.slice(0, 2) }, 4).length, 2);
  assert.deepEqual(splitPlan({ ...base, initiations: 3 }, 8).map((p) => p.initiations), [1, 1, 1]);
});

test('progress shows what happened since the last snapshot', () => {
  const prev = newCounters();
  const cur = { ...newCounters(), handshakes: 300, initiations: 320, cookieReplies: 10, dataBytes: 250_000, echoReplies: 40, errors: { timeout: 3 } };
  assert.equal(formatProgress(2, prev, cur, 0.5), '   2s  handshakes 600/s (300)  initiations 640/s  cookies 20/s  data 4.0 Mbit/s  echo 80/s  errors 3');
});

// ---- keys and the server snippet ----

const fixedClient = (seed: number, tunnel: string): ClientKey => {
  const k = parseKeysFile(`${Buffer.alloc(32, seed).toString('base64')} ${tunnel}\n`)[0]!;
  return k;
};

test('the wg addconf snippet and the wg set arguments name each client with its /32', () => {
  const clients = [fixedClient(1, '10.78.0.2'), fixedClient(2, '10.78.0.3')];
  const pub = clients.map((c) => Buffer.from(c.publicKey).toString('base64'));
  assert.equal(formatPeers(clients, 'addconf'), `[Peer]\nPublicKey = ${pub[0]}\nAllowedIPs = 10.78.0.2/32\n\n[Peer]\nPublicKey = ${pub[1]}\nAllowedIPs = 10.78.0.3/32\n`);
  assert.equal(formatPeers(clients, 'wg-set'), `peer ${pub[0]} allowed-ips 10.78.0.2/32\npeer ${pub[1]} allowed-ips 10.78.0.3/32\n`);
  for (const text of [formatPeers(clients, 'addconf'), formatPeers(clients, 'wg-set')]) {
    assert.ok(!text.includes(Buffer.from(clients[0]!.privateKey).toString('base64')), 'no private key in the server snippet');
  }
});

test('the keys file round-trips and numbers clients through the subnet around the server', () => {
  const s = subnet('10.78.0.1/16');
  const clients = generateClients(5, s);
  assert.deepEqual(clients.map((c) => formatIPv4(c.tunnel)), ['10.78.0.2', '10.78.0.3', '10.78.0.4', '10.78.0.5', '10.78.0.6']);
  const back = parseKeysFile(formatKeysFile(clients));
  assert.deepEqual(back.map((c) => [Buffer.from(c.privateKey), Buffer.from(c.publicKey), c.tunnel]), clients.map((c) => [Buffer.from(c.privateKey), Buffer.from(c.publicKey), c.tunnel]));
  // A server in the middle of its subnet is skipped; network and broadcast are never handed out.
  const mid = subnet('192.168.5.3/29');
  assert.equal(subnetCapacity(mid), 5);
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => formatIPv4(clientAddress(mid, i))), ['192.168.5.1', '192.168.5.2', '192.168.5.4', '192.168.5.5', '192.168.5.6']);
  assert.throws(() => generateClients(6, mid), RangeError);
});

test('a bad keys file is refused with the line that is wrong', () => {
  const key = Buffer.alloc(32, 9).toString('base64');
  assert.throws(() => parseKeysFile(`# header\n\n${key} 10.0.0.2\nnot-a-key 10.0.0.3\n`), /^Error: line 4: expected "PRIVATE-KEY ADDRESS"/);
  assert.throws(() => parseKeysFile(`${key} 10.0.0.300\n`), /line 1/);
  assert.throws(() => parseKeysFile(`${key}\n`), /line 1/);
  assert.throws(() => parseKeysFile(`${key} 10.0.0.2 extra\n`), /line 1/);
  assert.throws(() => parseKeysFile(`${key} 10.0.0.2\n${key} 10.0.0.2\n`), /line 2: tunnel address 10.0.0.2 is used twice/);
  assert.equal(parseKeysFile('# nothing\n').length, 0);
});

test('`loadgen keys` writes a 0600 keys file, prints the snippet and never overwrites a file', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wgts-loadgen-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'c.keys');
  const r = spawnSync(process.execPath, [BIN, 'loadgen', 'keys', '--clients', '3', '--out', out, '--tunnel', '10.9.0.1/24'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(statSync(out).mode & 0o777, 0o600);
  const clients = parseKeysFile(readFileSync(out, 'utf8'));
  assert.equal(r.stdout, formatPeers(clients, 'addconf'));
  assert.deepEqual(clients.map((c) => formatIPv4(c.tunnel)), ['10.9.0.2', '10.9.0.3', '10.9.0.4']);
  const again = spawnSync(process.execPath, [BIN, 'loadgen', 'keys', '--clients', '3', '--out', out], { encoding: 'utf8' });
  assert.equal(again.status, 2);
  assert.match(again.stderr, /--out: cannot create .*: it exists \(remove it first\)/);
  const config = spawnSync(process.execPath, [BIN, 'loadgen', 'config', '--keys', out, '--wg-set'], { encoding: 'utf8' });
  assert.equal(config.stdout, formatPeers(clients, 'wg-set'));
});

// ---- the command line ----

const KEY = Buffer.alloc(32, 3).toString('base64');
const runArgs = (...more: string[]): string[] => ['run', '--keys', 'k', '--server', '10.0.0.1:51820', '--server-key', KEY, ...more];
const runOpts = (...more: string[]): RunOptions => parseLoadgenArgs(runArgs(...more)) as RunOptions;

test('a run takes its defaults and every option', () => {
  assert.deepEqual(runOpts(), {
    command: 'run', keys: 'k', serverHost: '10.0.0.1', serverPort: 51820, serverKey: KEY, clients: undefined, sources: [],
    rate: 100, initiations: Infinity, durationS: 10, timeoutMs: 5000, dataRate: 0, packets: Infinity, size: 128, proto: 'icmp',
    target: undefined, targetPort: 9, threads: availableParallelism(), ephemerals: 0, json: false,
  });
  const o = runOpts('--clients', '50', '--source', '10.77.1.1-3,10.77.2.9', '--rate', '1500', '--initiations', '1000', '--duration', '2.5',
    '--timeout', '800', '--data-rate', '200', '--packets', '30', '--size', '1420', '--proto', 'udp', '--target', '10.78.0.1:5001', '--threads', '3', '--json');
  assert.deepEqual({ ...o, command: undefined }, {
    command: undefined, keys: 'k', serverHost: '10.0.0.1', serverPort: 51820, serverKey: KEY, clients: 50,
    sources: ['10.77.1.1', '10.77.1.2', '10.77.1.3', '10.77.2.9'], rate: 1500, initiations: 1000, durationS: 2.5, timeoutMs: 800,
    dataRate: 200, packets: 30, size: 1420, proto: 'udp', target: ip('10.78.0.1'), targetPort: 5001, threads: 3, ephemerals: 0, json: true,
  });
  assert.equal(runOpts('--precompute').ephemerals, 2);
  assert.equal(runOpts('--precompute', '--ephemerals', '5').ephemerals, 5);
  const v6 = parseLoadgenArgs(['run', '--keys', 'k', '--server', '[fd00::1]:51820', '--server-key', KEY, '--source', 'fd00::2,fd00::3']) as RunOptions;
  assert.deepEqual([v6.serverHost, v6.sources], ['fd00::1', ['fd00::2', 'fd00::3']]);
  assert.equal(parseLoadgenArgs(['help']), 'help');
  assert.equal(parseLoadgenArgs(runArgs('--help')), 'help');
  assert.deepEqual(parseLoadgenArgs(['keys', '--clients', '10', '--out', 'f']), { command: 'keys', clients: 10, out: 'f', tunnel: subnet('10.78.0.1/16') });
  assert.deepEqual(parseLoadgenArgs(['config', '--keys', 'f', '--wg-set']), { command: 'config', keys: 'f', format: 'wg-set' });
  assert.deepEqual(parseLoadgenArgs(['config', '--keys=f']), { command: 'config', keys: 'f', format: 'addconf' }, '--flag=value as well');
});

test('every bad option is refused with a message naming it', () => {
  const cases: [string[], RegExp][] = [
    [['bogus'], /unknown command bogus/],
    [['run', '--keys', 'k', '--server-key', KEY], /needs --server/],
    [['run', '--keys', 'k', '--server', '10.0.0.1', '--server-key', KEY], /--server needs a port/],
    [['run', '--keys', 'k', '--server', '10.0.0.1:0', '--server-key', KEY], /not a port number/],
    [['run', '--keys', 'k', '--server', '10.0.0.1:1', '--server-key', 'abc'], /--server-key is not a base64 WireGuard public key/],
    [runArgs('--rate', '0'), /--rate takes a number/],
    [runArgs('--threads', '0'), /--threads takes an integer from 1 to 256/],
    [runArgs('--rate', 'fast'), /--rate takes a number/],
    [runArgs('--duration', '0'), /--duration takes a number from 0.001 to 3600/],
    [runArgs('--duration', '7200'), /--duration takes a number from 0.001 to 3600/],
    [runArgs('--size', '20'), /--size takes an integer from 28 to 1420/],
    [runArgs('--size', '1500'), /--size takes an integer from 28 to 1420/],
    [runArgs('--initiations', '0'), /--initiations takes an integer from 1/],
    [runArgs('--timeout', '1.5'), /--timeout takes an integer/],
    [runArgs('--proto', 'tcp'), /--proto takes icmp or udp/],
    [runArgs('--data-rate', '10'), /--data-rate needs --target/],
    [runArgs('--target', 'fd00::1'), /--target: .* is not an IPv4 address/],
    [runArgs('--target', '10.0.0.1:70000'), /--target port takes an integer from 1 to 65535/],
    [runArgs('--source', '10.0.0.9-3'), /--source: 10.0.0.9-3 is not a range/],
    [runArgs('--source', 'fd00::2'), /every address must be IPv4, like the server's/],
    [runArgs('--source', '10.0.0.1,10.0.0.1'), /listed twice/],
    [runArgs('--json', '--json'), /--json is given twice/],
    [runArgs('--ephemerals', '3'), /--ephemerals needs --precompute/],
    [runArgs('--precompute', '--ephemerals', '0'), /--ephemerals takes an integer from 1 to 64/],
    [runArgs('--precompute', '--ephemerals', '65'), /--ephemerals takes an integer from 1 to 64/],
    [runArgs('--rate'), /--rate needs a value/],
    [runArgs('--wg-set'), /unknown option --wg-set/],
    [runArgs('-k', 'x'), /unknown option -k/],
    [runArgs('extra'), /unexpected argument extra/],
    [runArgs('--json=yes'), /--json takes no value/],
    [['keys', '--out', 'f'], /loadgen keys needs --clients/],
    [['keys', '--clients', '300', '--out', 'f', '--tunnel', '10.1.1.1/24'], /has room for 253/],
    [['keys', '--clients', '3', '--out', 'f', '--tunnel', '10.1.1.0/24'], /--tunnel: .*network address/],
    [['config'], /needs --keys/],
  ];
  for (const [argv, message] of cases) {
    assert.throws(() => parseLoadgenArgs(argv), (e: unknown) => e instanceof UsageError && message.test(e.message), `${argv.join(' ')} -> ${message}`);
  }
});

test('source lists expand ranges and refuse nonsense', () => {
  assert.deepEqual(parseSources('10.77.1.1-254').length, 254);
  assert.deepEqual(parseSources('10.77.1.254-10.77.2.1'), ['10.77.1.254', '10.77.1.255', '10.77.2.0', '10.77.2.1']);
  assert.deepEqual(parseSources('10.77.1.5'), ['10.77.1.5']);
  assert.match(parseSources('10.77.1.1-300') as string, /not a range/);
  assert.match(parseSources('host.example') as string, /not an IPv4 or IPv6 address/);
  assert.match(parseSources('10.0.0.0-10.1.0.0') as string, /more than 65536/);
});

test('the plan is checked against the keys file: clients available, a rate clients may offer', () => {
  assert.equal(checkPlan(runOpts(), 40), 40);
  assert.equal(checkPlan(runOpts('--clients', '10'), 40), 10);
  assert.throws(() => checkPlan(runOpts('--clients', '50'), 40), /--clients 50: k holds only 40/);
  assert.throws(() => checkPlan(runOpts(), 0), /holds no clients/);
  // One initiation per client every 30 ms: 100 clients offer at most 3333/s.
  assert.equal(checkPlan(runOpts('--rate', '3333'), 100), 100);
  assert.throws(() => checkPlan(runOpts('--rate', '3334'), 100), /--rate 3334 is more than 100 clients may offer/);
});

// ---- inner packets ----

test('echo requests and UDP datagrams are well-formed IPv4, and echo replies are recognised', () => {
  const buf = new Uint8Array(200).fill(0xee);
  writeEchoRequest(buf, 16, ip('10.78.0.2'), ip('10.78.0.1'), 0x1234, 7, 100);
  const p = buf.subarray(16, 116);
  assert.equal(checksum(p, 0, 20), 0, 'IPv4 header checksum');
  assert.equal(checksum(p, 20, 100), 0, 'ICMP checksum');
  assert.deepEqual([p[0], (p[2]! << 8) | p[3]!, p[9], p[20], (p[24]! << 8) | p[25]!, (p[26]! << 8) | p[27]!], [0x45, 100, 1, 8, 0x1234, 7]);
  assert.equal(buf[116], 0xee, 'nothing written past the packet');
  assert.ok(!isEchoReply(p, 0, 100, ip('10.78.0.1'), ip('10.78.0.2'), 0x1234), 'a request is not a reply');
  // The reply the target sends: addresses swapped, type 0.
  const reply = Uint8Array.from(p);
  reply.set(p.subarray(16, 20), 12);
  reply.set(p.subarray(12, 16), 16);
  reply[20] = 0;
  assert.ok(isEchoReply(reply, 0, 112, ip('10.78.0.1'), ip('10.78.0.2'), 0x1234), 'padding after the packet is fine');
  assert.ok(!isEchoReply(reply, 0, 112, ip('10.78.0.1'), ip('10.78.0.2'), 0x1235), 'another client\'s identifier');
  assert.ok(!isEchoReply(reply, 0, 60, ip('10.78.0.1'), ip('10.78.0.2'), 0x1234), 'truncated');

  writeUdp(buf, 0, ip('10.78.0.2'), ip('10.78.0.1'), 20000, 9, 60);
  assert.equal(checksum(buf, 0, 20), 0);
  assert.deepEqual([buf[9], (buf[20]! << 8) | buf[21]!, (buf[22]! << 8) | buf[23]!, (buf[24]! << 8) | buf[25]!], [17, 20000, 9, 40]);
});

// ---- the engine on loopback ----

/**
 * A WireGuard responder reduced to what the test needs, on 127.0.0.1: it demands a cookie (mac2)
 * before it consumes any initiation, and answers ICMP echo requests through the tunnel.
 */
class CookieDemandingServer {
  readonly noise = new Noise();
  readonly publicKey = new Uint8Array(32);
  readonly checker = new CookieChecker();
  readonly sock = dgram.createSocket('udp4');
  readonly byKey = new Map<string, { hs: Handshake; cookies: CookieGenerator }>();
  readonly sessions = new Map<number, SessionKeys>();
  readonly transport = new TransportCrypto();
  cookieReplies = 0;
  withoutMac2 = 0;
  private nextIndex = 1;
  private counter = 0;

  constructor(clients: readonly ClientKey[], private readonly tunnel: number) {
    const priv = new Uint8Array(32);
    generateKeyPair(priv, this.publicKey);
    this.noise.setPrivateKey(priv);
    this.checker.setPublicKey(this.publicKey);
    for (const c of clients) {
      const hs = new Handshake(c.publicKey, 0);
      assert.ok(this.noise.precompute(hs));
      this.byKey.set(Buffer.from(c.publicKey).toString('hex'), { hs, cookies: new CookieGenerator(c.publicKey) });
    }
    this.sock.on('message', (m, from) => this.receive(m, from));
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.sock.bind(0, '127.0.0.1', r));
    return this.sock.address().port;
  }

  private receive(m: Buffer, from: dgram.RemoteInfo): void {
    const reply = (b: Uint8Array): void => this.sock.send(b, from.port, from.address);
    const source = Buffer.concat([Buffer.from(from.address.split('.').map(Number)), Buffer.from([from.port >> 8, from.port & 0xff])]);
    const now = performance.now();
    const type = messageType(m, 0, m.length);
    if (type === MSG_INITIATION) {
      assert.ok(this.checker.checkMac1(m, INIT_LEN), 'mac1 of every initiation');
      if (!this.checker.checkMac2(m, INIT_LEN, source, now)) {
        if (!m.subarray(INIT_LEN - 16).every((b) => b === 0)) assert.fail('a mac2 that is not ours');
        this.withoutMac2++;
        const r = new Uint8Array(COOKIE_REPLY_LEN);
        this.checker.createReply(r, m, INIT_LEN, readU32(m, 4), source, now);
        this.cookieReplies++;
        return reply(r);
      }
      let peer: { hs: Handshake; cookies: CookieGenerator } | undefined;
      const r = this.noise.consumeInitiation(m, now, (pk) => (peer = this.byKey.get(Buffer.from(pk).toString('hex')))?.hs);
      assert.ok(r.ok && peer, `initiation consumed: ${JSON.stringify(r)}`);
      const resp = new Uint8Array(RESP_LEN);
      const index = this.nextIndex++;
      assert.ok(this.noise.createResponse(r.handshake, index, resp));
      peer.cookies.addMacs(resp, RESP_LEN, now);
      const keys = new SessionKeys();
      assert.ok(this.noise.beginSession(r.handshake, keys));
      this.sessions.set(index, keys);
      return reply(resp);
    }
    if (type !== MSG_DATA) return assert.fail(`unexpected message type ${m[0]}`);
    const keys = this.sessions.get(readU32(m, 4));
    assert.ok(keys, 'data on a session we made');
    const n = this.transport.open(m, 0, m.length, keys.receiveKey);
    assert.ok(n >= 0, 'data decrypts');
    if (n === 0) return; // the keepalive that confirms the session
    const p = m.subarray(DATA_HEADER_LEN, DATA_HEADER_LEN + n);
    const len = (p[2]! << 8) | p[3]!;
    assert.equal(((p[16]! << 24) | (p[17]! << 16) | (p[18]! << 8) | p[19]!) >>> 0, this.tunnel, 'sent to the target');
    // Turn the request into its reply: swap the addresses, type 0, patch the ICMP checksum.
    const src = Uint8Array.from(p.subarray(12, 16));
    p.copyWithin(12, 16, 20);
    p.set(src, 16);
    p[20] = 0;
    p[22] = 0;
    p[23] = 0;
    const c = checksum(p, 20, len);
    p[22] = c >> 8;
    p[23] = c & 0xff;
    const out = Buffer.alloc(DATA_HEADER_LEN + len + 32);
    out.set(p.subarray(0, len), DATA_HEADER_LEN);
    const sealed = this.transport.seal(out, 0, len, 1420, keys.remoteIndex, this.counter++, 0, keys.sendKey);
    reply(out.subarray(0, sealed));
  }
}

/**
 * 20 clients against the cookie-demanding responder on loopback, two handshakes and five echoes
 * each, through whatever `open` makes; checks what any engine must get and returns the report.
 */
async function againstResponder(t: TestContext, open: (o: EngineOptions) => Promise<Engine | ThreadedEngine>, ephemerals = 0): Promise<LoadgenReport> {
  const clients = generateClients(20, subnet('10.78.0.1/24'));
  const server = new CookieDemandingServer(clients, ip('10.78.0.1'));
  t.after(() => server.sock.close());
  const port = await server.listen();
  const engine = await open({
    serverAddress: '127.0.0.1', serverPort: port, serverKey: server.publicKey, clients, sources: [], family: 4,
    rate: 50, initiations: 40, durationMs: 10_000, timeoutMs: 2000, dataRate: 100, packets: 100, size: 300, proto: 'icmp', target: ip('10.78.0.1'), targetPort: 9,
    ephemerals,
  });
  t.after(() => engine.close());
  const r = buildReport(await engine.run());
  // Each client's first initiation met a cookie reply; its second one (400 ms later) carried the
  // cookie at once.
  assert.equal(server.withoutMac2, 20);
  assert.deepEqual({ initiations: r.initiations, retries: r.retries, cookies: r.cookieReplies, handshakes: r.handshakes, established: r.established },
    { initiations: 40, retries: 20, cookies: 20, handshakes: 40, established: 20 });
  assert.deepEqual({ sent: r.data.echoRequests, replies: r.data.echoReplies, loss: r.data.lossPercent, tunnels: r.data.tunnelsWithReplies },
    { sent: 100, replies: 100, loss: 0, tunnels: 20 });
  assert.deepEqual(r.errors, {});
  assert.ok(r.latencyMs !== null && r.latencyMs.max < 2000);
  assert.ok(r.elapsedS < 5, `the run ended when its work was done, not at --duration: ${r.elapsedS} s`);
  assert.equal(r.ephemerals, ephemerals);
  assert.ok(r.generator.cpuS > 0 && r.generator.usPerInitiation! > 0, JSON.stringify(r.generator));
  return r;
}

test('the engine answers cookie replies with mac2, completes its handshakes and counts echo replies', async (t) => {
  const r = await againstResponder(t, (o) => Engine.open(o));
  assert.deepEqual([r.threads, r.sources], [1, 1]);
});

test('with precomputed ephemerals the responder accepts every initiation, the second of each client too (a later timestamp)', async (t) => {
  // Each client's two handshakes, 400 ms apart, reuse its single ephemeral: only the timestamp differs.
  const r = await againstResponder(t, (o) => Engine.open(o), 1);
  assert.equal(r.ephemerals, 1);
});

test('two engine threads share the clients and the work and hand back one merged report', async (t) => {
  let engine: ThreadedEngine | undefined;
  // The same totals as one engine: each thread did half, and nothing was counted twice.
  const r = await againstResponder(t, async (o) => (engine = await ThreadedEngine.open(o, 2)), 2);
  assert.deepEqual({ threads: r.threads, sources: r.sources, offered: r.offeredRate }, { threads: 2, sources: 2, offered: 50 });
  assert.equal(engine!.snapshot().handshakes, 40, 'the last counters each thread sent are its final ones');
});

test('initiations nobody answers time out and are retransmitted, and a bounded run ends at its duration', async (t) => {
  const silent = dgram.createSocket('udp4');
  t.after(() => silent.close());
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
  const serverKey = new Uint8Array(32);
  generateKeyPair(new Uint8Array(32), serverKey);
  const engine = await Engine.open({
    serverAddress: '127.0.0.1', serverPort: silent.address().port, serverKey, clients: generateClients(10, subnet('10.78.0.1/24')), sources: [],
    family: 4, rate: 20, initiations: Infinity, durationMs: 600, timeoutMs: 150, dataRate: 0, packets: Infinity, size: 128, proto: 'icmp', targetPort: 9,
    ephemerals: 0,
  });
  t.after(() => engine.close());
  const t0 = performance.now();
  const r = buildReport(await engine.run());
  const took = performance.now() - t0;
  assert.ok(took >= 600 && took < 1700, `sending phase of 600 ms plus a drain of at most the timeout: ${took} ms`);
  assert.ok(r.initiations >= 10 && r.initiations <= 13, `20/s for 0.6 s: ${r.initiations}`);
  assert.equal(r.handshakes, 0);
  // Every client retransmits after each timeout, as a real one does; every try ends lost.
  assert.ok(r.retransmits >= 5, `retransmits: ${r.retransmits}`);
  assert.equal((r.errors.timeout ?? 0) + (r.errors.unanswered ?? 0), r.initiations + r.retransmits, JSON.stringify(r));
});
