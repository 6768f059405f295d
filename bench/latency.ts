// Ping round-trip times through the tunnel, median and p99, on an idle tunnel and while one
// iperf3 TCP stream fills it in the same direction, for every pairing (bench/pairings.ts).
//
//   node dist/bench/latency.js [--count N] [--interval S] [--quick] [--pair A-B] [--workers N|default]
import { tryRun, waitFor, type Cleanup } from '../test/interop/harness.js';
import { iperfReport, pingTimes, type Host } from '../test/interop/topology.js';
import { flag, loadNow, measurePairings, numberArg, pairName, printTable, requireRoot, workersName } from './pairings.js';

const count = numberArg('--count', flag('--quick') ? 50 : 200);
const interval = numberArg('--interval', 0.01);

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

async function main(): Promise<void> {
  requireRoot();
  const loadBefore = loadNow();
  const ms = (v: number): string => v.toFixed(3);
  const { pairings, results } = await measurePairings(
    async (a, b, cleanup) => [stats(pingTimes(a, b.tunnel4, count, interval)), await underLoad(a, b, cleanup)],
    ([idle, loaded]) => `idle ${ms(idle!.median)} ms, loaded ${ms(loaded!.median)} ms`,
  );
  const rows = pairings.map((p, i) => {
    const [idle, loaded] = results[i]!;
    return [pairName(p), workersName(p), ms(idle!.median), ms(idle!.p99), ms(loaded!.median), ms(loaded!.p99), `${idle!.replies}/${loaded!.replies}`];
  });
  printTable(`ping RTT through the tunnel, ${count} pings ${interval * 1000} ms apart, idle and under one iperf3 TCP stream a -> b`, loadBefore,
    ['sender -> receiver', 'workers', 'idle median ms', 'idle p99 ms', 'loaded median ms', 'loaded p99 ms', `replies of ${count} (idle/loaded)`], rows);
}

await main();
