// iperf3 TCP through the tunnel on a veth pair between two network namespaces, 1 and 4 streams,
// for every pairing of wireguard-ts and wireguard-go (bench/pairings.ts), each row measured in
// the same run as the wireguard-go <-> wireguard-go baseline it is divided by.
//
//   node dist/bench/throughput.js [--seconds N] [--quick] [--streams 1,4] [--mtus 1420,9000]
//                                 [--pair A-B] [--workers N|default] [--pids FILE]
//                                 [--rounds N] [--reference DIR]
//
// --mtus: the tunnel MTUs to measure at, each on the same pair (the veth gets 80 bytes more, the
// outer headers' room).
// --rounds N: each pairing N times, interleaved, and the median of each cell. --reference DIR:
// ours<->ours rows of another built checkout too (bench/pairings.ts), e.g. the code before a change.
// --quick: 3 s per measurement, a smoke run of every pairing. --pids FILE writes the daemons'
// process ids as {"PID": "sender" | "receiver"} (CPU profiles are named by pid: scripts/profile.sh).
import { writeFileSync } from 'node:fs';
import { iperf, type Host } from '../test/interop/topology.js';
import { sh } from '../test/interop/harness.js';
import {
  flag, listArg, loadNow, mbit, measurePairings, median, numberArg, pairName, printTable, ratio, requireRoot, stringArg, workersName,
} from './pairings.js';

const seconds = numberArg('--seconds', flag('--quick') ? 3 : 10);
const streams = listArg('--streams', ['1', '4']).map(Number);
const mtus = listArg('--mtus', ['1420', '9000']).map(Number);

/** Sets the tunnel MTU of both hosts, and their veth's to the tunnel's plus the outer headers. */
function setMtu(hosts: Host[], mtu: number): void {
  for (const h of hosts) {
    const veth = sh('ip', ['-n', h.ns, '-o', 'link', 'show', 'type', 'veth']).split(':')[1]!.trim().split('@')[0]!;
    sh('ip', ['-n', h.ns, 'link', 'set', veth, 'mtu', String(Math.max(1500, mtu + 80))]);
  }
  for (const h of hosts) sh('ip', ['-n', h.ns, 'link', 'set', h.ifname, 'mtu', String(mtu)]);
}
const pidsFile = stringArg('--pids');

async function main(): Promise<void> {
  requireRoot();
  const load = loadNow();
  const { pairings, results, baseline } = await measurePairings(async (a, b, cleanup) => {
    if (pidsFile !== undefined) writeFileSync(pidsFile, JSON.stringify({ [a.proc.pid!]: 'sender', [b.proc.pid!]: 'receiver' }));
    const r: number[] = [];
    for (const mtu of mtus) {
      setMtu([a, b], mtu);
      for (const n of streams) r.push(await iperf(cleanup, a, b, seconds, n));
    }
    return r;
  }, (bps) => `${bps.map(mbit).join(' / ')} Mbit/s`, median);
  const header = ['sender -> receiver', 'workers', ...mtus.flatMap((mtu) => streams.flatMap((n) => [`MTU ${mtu}, ${n} stream${n > 1 ? 's' : ''} Mbit/s`, 'vs wggo']))];
  const rows = pairings.map((p, i) => [
    pairName(p), workersName(p),
    ...results[i]!.flatMap((bps, j) => [mbit(bps), ratio(bps, baseline(j))]),
  ]);
  const rounds = numberArg('--rounds', 1);
  printTable(`iperf3 TCP, ${seconds} s per cell${rounds > 1 ? ` (median of ${rounds} interleaved rounds)` : ''}, veth between two namespaces, tunnel MTU ${mtus.join(' and ')}`, load, header, rows);
}

await main();
