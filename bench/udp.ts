// iperf3 UDP through the tunnel at fixed offered rates: what the receiver got and what was
// lost, for every pairing (bench/pairings.ts), each row in the same run as the wireguard-go
// baseline. Datagrams of 1372 bytes fit the 1420-byte tunnel MTU over IPv4 or IPv6.
//
//   node dist/bench/udp.js [--seconds N] [--rates 200M,500M] [--quick] [--pair A-B] [--workers N|default]
import { iperfReport } from '../test/interop/topology.js';
import {
  flag, listArg, loadNow, mbit, measurePairings, numberArg, pairName, printTable, ratio, requireRoot, workersName,
} from './pairings.js';

const PAYLOAD = 1372;
const quick = flag('--quick');
const seconds = numberArg('--seconds', quick ? 3 : 10);
const rates = listArg('--rates', quick ? ['200M'] : ['200M', '500M']);

interface Cell { bps: number; lostPercent: number; outOfOrder: number }

async function main(): Promise<void> {
  requireRoot();
  const load = loadNow();
  const { pairings, results, baseline } = await measurePairings(async (a, b, cleanup) => {
    const r: Cell[] = [];
    for (const udpRate of rates) {
      const { receivedBps, udp } = await iperfReport(cleanup, a, b, { seconds, udpRate, length: PAYLOAD });
      r.push({ bps: receivedBps, lostPercent: udp!.lostPercent, outOfOrder: udp!.outOfOrder });
    }
    return r;
  }, (cells) => cells.map((c) => `${mbit(c.bps)} Mbit/s ${c.lostPercent.toFixed(1)}% lost`).join(', '));
  const header = ['sender -> receiver', 'workers', ...rates.flatMap((r) => [`${r} offered: Mbit/s received`, 'loss %', 'late', 'vs wggo'])];
  const rows = pairings.map((p, i) => [
    pairName(p), workersName(p),
    ...results[i]!.flatMap((c, j) => [mbit(c.bps), c.lostPercent.toFixed(1), String(c.outOfOrder), ratio(c.bps, baseline(j)?.bps)]),
  ]);
  printTable(`iperf3 UDP, ${PAYLOAD}-byte datagrams, ${seconds} s per cell ("late": received after a higher sequence number)`, load, header, rows);
}

await main();
