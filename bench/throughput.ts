// iperf3 TCP through the tunnel on a veth pair between two network namespaces, 1 and 4 streams,
// for every pairing of wireguard-ts and wireguard-go (bench/pairings.ts), each row measured in
// the same run as the wireguard-go <-> wireguard-go baseline it is divided by.
//
//   node dist/bench/throughput.js [--seconds N] [--quick] [--streams 1,4]
//                                 [--pair A-B] [--workers N|default] [--pids FILE]
//
// --quick: 3 s per measurement, a smoke run of every pairing. --pids FILE writes the daemons'
// process ids as {"PID": "sender" | "receiver"} (CPU profiles are named by pid: scripts/profile.sh).
import { writeFileSync } from 'node:fs';
import { iperf } from '../test/interop/topology.js';
import {
  flag, listArg, loadNow, mbit, measurePairings, numberArg, pairName, printTable, ratio, requireRoot, stringArg, workersName,
} from './pairings.js';

const seconds = numberArg('--seconds', flag('--quick') ? 3 : 10);
const streams = listArg('--streams', ['1', '4']).map(Number);
const pidsFile = stringArg('--pids');

async function main(): Promise<void> {
  requireRoot();
  const load = loadNow();
  const { pairings, results, baseline } = await measurePairings(async (a, b, cleanup) => {
    if (pidsFile !== undefined) writeFileSync(pidsFile, JSON.stringify({ [a.proc.pid!]: 'sender', [b.proc.pid!]: 'receiver' }));
    const r: number[] = [];
    for (const n of streams) r.push(await iperf(cleanup, a, b, seconds, n));
    return r;
  }, (bps) => `${bps.map(mbit).join(' / ')} Mbit/s`);
  const header = ['sender -> receiver', 'workers', ...streams.flatMap((n) => [`${n} stream${n > 1 ? 's' : ''} Mbit/s`, 'vs wggo'])];
  const rows = pairings.map((p, i) => [
    pairName(p), workersName(p),
    ...results[i]!.flatMap((bps, j) => [mbit(bps), ratio(bps, baseline(j))]),
  ]);
  printTable(`iperf3 TCP, ${seconds} s per cell, veth between two namespaces, MTU 1420`, load, header, rows);
}

await main();
