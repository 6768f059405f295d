// Memory of both wireguard-ts daemons (ours -> ours, default workers) during a long full-speed
// iperf3 TCP run: resident set at the start, every 10 s and at the end, and the kernel's
// high-water mark (VmHWM). A data path that allocates per packet shows as RSS that keeps
// climbing after the first seconds, when the slab and socket buffers are all touched.
//
//   node dist/bench/rss.js [--seconds N] [--quick]
import { statusKb } from '../test/interop/harness.js';
import { iperfReport, type Host } from '../test/interop/topology.js';
import { flag, loadNow, mbit, numberArg, printTable, requireRoot, withPair } from './pairings.js';

const seconds = numberArg('--seconds', flag('--quick') ? 10 : 60);

/** VmRSS and VmHWM of a process, in MiB. */
function memory(pid: number): { rss: number; hwm: number } {
  return { rss: statusKb(pid, 'VmRSS') / 1024, hwm: statusKb(pid, 'VmHWM') / 1024 };
}

async function main(): Promise<void> {
  requireRoot();
  const load = loadNow();
  const { samples, bps } = await withPair({ a: 'ours', b: 'ours' }, async (a, b, cleanup) => {
    // `ip netns exec` execs the daemon, so the child's pid is node's.
    const daemons: Host[] = [a, b];
    const samples: { rss: number; hwm: number }[][] = [daemons.map((d) => memory(d.proc.pid!))];
    const timer = setInterval(() => samples.push(daemons.map((d) => memory(d.proc.pid!))), 1000);
    try {
      const { receivedBps } = await iperfReport(cleanup, a, b, { seconds });
      samples.push(daemons.map((d) => memory(d.proc.pid!)));
      return { samples, bps: receivedBps };
    } finally {
      clearInterval(timer);
    }
  });
  const mb = (v: number): string => v.toFixed(1);
  const marks = samples.filter((_, i) => i > 0 && i % 10 === 0 && i < samples.length - 1);
  const rows = ['sender', 'receiver'].map((role, d) => {
    const last = samples.at(-1)![d]!;
    return [role, mb(samples[0]![d]!.rss), marks.map((s) => mb(s[d]!.rss)).join(' / ') || '-', mb(last.rss), mb(Math.max(...samples.map((s) => s[d]!.hwm)))];
  });
  printTable(`RSS of wireguard-ts ours -> ours (default workers) during ${seconds} s of iperf3 TCP at ${mbit(bps)} Mbit/s, MiB`, load,
    ['daemon', 'start', 'every 10 s', 'end', 'peak (VmHWM)'], rows);
}

await main();
