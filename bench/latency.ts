// Ping round-trip times through the tunnel, median and p99, on an idle tunnel and while one
// iperf3 TCP stream fills it in the same direction, for every pairing (bench/pairings.ts); then
// one handshake's round trip against each server implementation.
//
//   node dist/bench/latency.js [--count N] [--interval S] [--quick] [--pair A-B] [--workers N|default]
//                              [--handshakes N] [--no-pings] [--rounds N] [--reference DIR]
//
// --rounds N: each pairing's pings N times, interleaved; the medians of the runs' medians and
// p99s, and the fewest replies. --reference DIR: another build's ours<->ours rows beside today's.
//
// Handshake round trip: `wireguard-ts loadgen` (one thread, one source address, precomputed
// initiations) makes N handshakes with N clients of a fresh server, 20 per second, so each one
// meets an idle server; the time is from sending the initiation to consuming the response, the
// client's own crypto included (the same client for both servers). --handshakes 0 skips it.
import { Cleanup, tryRun, waitFor } from '../test/interop/harness.js';
import { addLoadgenClients, createLoadgenStage, iperfReport, pingTimes, runLoadgen, type Host, type Impl } from '../test/interop/topology.js';
import { flag, listArg, loadNow, measurePairings, median, numberArg, pairName, printTable, requireRoot, stringArg, workersName } from './pairings.js';

const count = numberArg('--count', flag('--quick') ? 50 : 200);
const interval = numberArg('--interval', 0.01);
/** Handshake round trips to measure per server; 0 skips them (numberArg takes positive numbers only). */
const handshakes = (() => {
  const v = stringArg('--handshakes');
  const n = v === undefined ? 100 : Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--handshakes takes a whole number, got "${v}"`);
  return n;
})();
/** Handshakes per second: far enough apart that each meets an idle server. */
const HANDSHAKE_RATE = 20;

interface Stats { median: number; p99: number; replies: number }

/** Nearest-rank percentile of sorted values (with 200 samples, p99 is the second largest). */
function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function stats(times: number[]): Stats {
  const s = [...times].sort((x, y) => x - y);
  return s.length === 0 ? { median: NaN, p99: NaN, replies: 0 } : { median: percentile(s, 0.5), p99: percentile(s, 0.99), replies: s.length };
}

/** Pings while an iperf3 TCP stream from a to b runs: the pings start once its data connection is up. */
async function underLoad(a: Host, b: Host, cleanup: Cleanup): Promise<Stats> {
  const load = iperfReport(cleanup, a, b, { seconds: Math.ceil(count * interval) + 4 });
  // The control connection and one data connection to the server's port.
  await waitFor('iperf3 data connection', () => {
    const ss = tryRun('ip', ['netns', 'exec', a.ns, 'ss', '-Htn', 'state', 'established', 'dport = :5201']).out;
    return ss.trim().split('\n').filter(Boolean).length >= 2;
  }, 10_000);
  const times = pingTimes(a, b.tunnel4, count, interval);
  await load;
  return stats(times);
}

/** p50 and p99 of `count` handshake round trips against a fresh server of `impl`. */
async function handshakeRoundTrip(impl: Impl, count: number): Promise<{ p50: number; p99: number; completed: number }> {
  const cleanup = new Cleanup();
  try {
    const stage = await createLoadgenStage(cleanup, impl, 1);
    const keys = addLoadgenClients(cleanup, stage, count);
    const rep = await runLoadgen(stage, keys, ['--source', stage.sources, '--rate', String(HANDSHAKE_RATE), '--initiations', String(count),
      '--duration', String(Math.ceil(count / HANDSHAKE_RATE) + 2), '--threads', '1', '--precompute'], (count / HANDSHAKE_RATE) * 1000 + 60_000);
    return { p50: rep.latencyMs?.p50 ?? NaN, p99: rep.latencyMs?.p99 ?? NaN, completed: rep.handshakes };
  } finally {
    await cleanup.run();
  }
}

async function handshakeTable(): Promise<void> {
  const loadBefore = loadNow();
  const rows: string[][] = [];
  for (const impl of listArg('--impl', ['wggo', 'ours']) as Impl[]) {
    const r = await handshakeRoundTrip(impl, handshakes);
    rows.push([impl, r.p50.toFixed(3), r.p99.toFixed(3), `${r.completed}/${handshakes}`]);
  }
  printTable(`One handshake round trip (initiation sent -> response consumed, wireguard-ts loadgen, ${HANDSHAKE_RATE}/s, a fresh client each)`, loadBefore,
    ['server', 'p50 ms', 'p99 ms', 'completed'], rows);
}

async function main(): Promise<void> {
  requireRoot();
  if (flag('--no-pings')) {
    if (handshakes > 0) await handshakeTable();
    return;
  }
  const loadBefore = loadNow();
  const ms = (v: number): string => v.toFixed(3);
  const { pairings, results } = await measurePairings(
    async (a, b, cleanup) => [stats(pingTimes(a, b.tunnel4, count, interval)), await underLoad(a, b, cleanup)],
    ([idle, loaded]) => `idle ${ms(idle!.median)} ms, loaded ${ms(loaded!.median)} ms`,
    (runs) => ({ median: median(runs.map((r) => r.median)), p99: median(runs.map((r) => r.p99)), replies: Math.min(...runs.map((r) => r.replies)) }),
  );
  const rows = pairings.map((p, i) => {
    const [idle, loaded] = results[i]!;
    return [pairName(p), workersName(p), ms(idle!.median), ms(idle!.p99), ms(loaded!.median), ms(loaded!.p99), `${idle!.replies}/${loaded!.replies}`];
  });
  printTable(`ping RTT through the tunnel, ${count} pings ${interval * 1000} ms apart, idle and under one iperf3 TCP stream a -> b`, loadBefore,
    ['sender -> receiver', 'workers', 'idle median ms', 'idle p99 ms', 'loaded median ms', 'loaded p99 ms', `replies of ${count} (idle/loaded)`], rows);
  if (handshakes > 0) await handshakeTable();
}

await main();
