// Handshakes under load: `wireguard-ts loadgen` against wireguard-ts and wireguard-go in the
// same run, each row on a fresh server (test/interop/topology.ts: createLoadgenStage), the
// load generator in its own namespace sending from 1 or 254 source addresses.
//
//   node dist/bench/handshakes.js [--seconds N] [--quick] [--impl wggo,ours,ours-inline] [--peers 100,1000]
//                                 [--sources 1,254] [--rates 1000,5000,20000] [--threads 1,2] [--fresh]
//
// The matrix is every combination the protocol allows: a client may initiate at most every
// 30 ms (a responder drops faster initiations from one peer as a flood), so 100 peers offer at
// most 3,333/s and only the 1k/s rate runs with them. --quick: 3 s per row instead of 5.
// --threads: the load generator's engine threads (its default, one per CPU, unless given; a
// list compares them). One source address always gets one thread. `ours-inline` is our daemon
// with --handshake-threads 0: every handshake on the main thread, no offload pool.
// The load generator runs with --precompute (each client's initiations reuse a few ephemerals
// made before the run, so an initiation costs it ~25 µs instead of ~120 and the server is the
// bottleneck); --fresh: a fresh ephemeral per initiation, as real clients, for comparison.
//
// Columns: offered and actually sent initiations/s (the load generator shares the machine's
// CPUs with the server and falls short when they are busy), completed handshakes/s, cookie
// replies/s, latency from the first initiation to the consumed response (p50/p99), initiations
// that got no answer, and the server's CPU time (utime + stime of its process, all threads,
// from /proc/PID/stat) per completed handshake, and for ours that of its main thread alone;
// then the load generator's own CPU (its whole process, as its report gives it) per initiation
// sent and the cores it kept busy, so a row shows which side was the bottleneck.
import { readFileSync } from 'node:fs';
import { Cleanup } from '../test/interop/harness.js';
import { addLoadgenClients, createLoadgenStage, runLoadgen, type Impl } from '../test/interop/topology.js';
import { flag, listArg, loadNow, numberArg, printTable, requireRoot } from './pairings.js';
import { DEFAULT_THREADS, MIN_INITIATION_INTERVAL_MS } from '../src/loadgen/options.js';

const seconds = numberArg('--seconds', flag('--quick') ? 3 : 5);
/** Server variants: an implementation and our daemon's extra arguments. */
const VARIANTS: Record<string, { impl: Impl; args: string[] }> = {
  wggo: { impl: 'wggo', args: [] },
  ours: { impl: 'ours', args: [] },
  'ours-inline': { impl: 'ours', args: ['--handshake-threads', '0'] },
};
const servers = listArg('--impl', ['wggo', 'ours', 'ours-inline']);
for (const v of servers) if (!(v in VARIANTS)) throw new Error(`--impl takes ${Object.keys(VARIANTS).join(', ')}; got ${v}`);
const peerCounts = listArg('--peers', ['100', '1000']).map(Number);
const sourceCounts = listArg('--sources', ['1', '254']).map(Number);
const rates = listArg('--rates', ['1000', '5000', '20000']).map(Number);
const threadCounts = listArg('--threads', [String(DEFAULT_THREADS)]).map(Number);
const precompute = flag('--fresh') ? [] : ['--precompute'];
/** Kernel clock ticks per second: the unit of utime and stime (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;

/** CPU seconds a process (all threads) or, with `tid`, one of its threads has used so far. */
function cpuSeconds(pid: number, tid?: number): number {
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
  // Fields after the command name, which may hold spaces, in parentheses: utime and stime are 14 and 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
}

interface Row { server: string; peers: number; sources: number; rate: number; threads: number }

async function measure(r: Row): Promise<string[]> {
  const cleanup = new Cleanup();
  try {
    const { impl, args } = VARIANTS[r.server]!;
    const stage = await createLoadgenStage(cleanup, impl, r.sources, args);
    const keys = addLoadgenClients(cleanup, stage, r.peers);
    const pid = stage.server.proc.pid!;
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    if (comm === 'ip') throw new Error('the server pid is `ip netns exec`, not the daemon');
    const cpu0 = cpuSeconds(pid);
    // Our main thread (thread id = pid) is the control plane that the offload pool relieves.
    const main0 = cpuSeconds(pid, pid);
    const rep = await runLoadgen(stage, keys, ['--source', stage.sources, '--rate', String(r.rate), '--duration', String(seconds),
      '--threads', String(r.threads), ...precompute], seconds * 1000 + 60_000);
    const cpu = cpuSeconds(pid) - cpu0;
    const mainCpu = cpuSeconds(pid, pid) - main0;
    const perHandshake = (seconds: number): string => (rep.handshakes > 0 ? ((seconds * 1e6) / rep.handshakes).toFixed(0) : '-');
    const lost = (rep.errors.timeout ?? 0) + (rep.errors.unanswered ?? 0);
    return [
      r.server, String(r.peers), String(r.sources), String(rep.threads), String(r.rate), rep.initiationsPerS.toFixed(0), rep.handshakesPerS.toFixed(0),
      rep.cookieRepliesPerS.toFixed(0), rep.latencyMs?.p50.toFixed(1) ?? '-', rep.latencyMs?.p99.toFixed(1) ?? '-', String(lost),
      perHandshake(cpu), impl === 'ours' ? perHandshake(mainCpu) : '-',
      rep.generator.usPerInitiation?.toFixed(0) ?? '-', rep.generator.cores.toFixed(2),
    ];
  } finally {
    await cleanup.run();
  }
}

async function main(): Promise<void> {
  requireRoot();
  const load = loadNow();
  const rows: string[][] = [];
  for (const peers of peerCounts) {
    for (const sources of sourceCounts) {
      for (const rate of rates) {
        if (rate > (peers * 1000) / MIN_INITIATION_INTERVAL_MS) continue;
        // Both implementations back to back, so each pair of rows sees the same machine.
        for (const threads of threadCounts) for (const server of servers) rows.push(await measure({ server, peers, sources, rate, threads }));
      }
    }
  }
  const mode = precompute.length > 0 ? 'precomputed ephemerals' : 'fresh ephemerals';
  printTable(`Handshakes under load: wireguard-ts loadgen (${mode}) for ${seconds} s per row, a fresh server each, default workers`, load,
    ['server', 'peers', 'sources', 'loadgen threads', 'offered/s', 'sent/s', 'completed/s', 'cookie replies/s', 'p50 ms', 'p99 ms', 'unanswered',
      'server CPU µs/handshake', 'main thread µs/handshake', 'loadgen CPU µs/initiation', 'loadgen cores'], rows);
}

await main();
