// iperf3 UDP through the tunnel at fixed offered rates: what the receiver got and what was
// lost, for every pairing (bench/pairings.ts), each row in the same run as the wireguard-go
// baseline. Datagrams of 1372 bytes fit the 1420-byte tunnel MTU over IPv4 or IPv6.
//
//   node dist/bench/udp.js [--seconds N] [--rates 200M,500M] [--quick] [--pair A-B] [--workers N|default]
import { iperfReport } from '../test/interop/topology.js';
import {
  flag, isBaseline, listArg, loadNow, mbit, numberArg, pairName, printTable, ratio, requireRoot,
  selectedPairings, withPair, workersName,
} from './pairings.js';

const PAYLOAD = 1372;
const quick = flag('--quick');
const seconds = numberArg('--seconds', quick ? 3 : 10);
const rates = listArg('--rates', quick ? ['200M'] : ['200M', '500M']);

interface Cell { bps: number; lostPercent: number; outOfOrder: number }

async function main(): Promise<void> {
  requireRoot();
  const load = loadNow();
  const pairings = selectedPairings();
  const results: Cell[][] = [];
  for (const p of pairings) {
    const cells = await withPair(p, async (a, b, cleanup) => {
      const r: Cell[] = [];
      for (const udpRate of rates) {
        const { receivedBps, udp } = await iperfReport(cleanup, a, b, { seconds, udpRate, length: PAYLOAD });
        r.push({ bps: receivedBps, lostPercent: udp!.lostPercent, outOfOrder: udp!.outOfOrder });
      }
      return r;
    });
    results.push(cells);
    process.stderr.write(`${pairName(p)} workers ${workersName(p)}: ${cells.map((c) => `${mbit(c.bps)} Mbit/s ${c.lostPercent.toFixed(1)}% lost`).join(', ')}\n`);
  }
  const base = pairings.findIndex(isBaseline);
  const header = ['sender -> receiver', 'workers', ...rates.flatMap((r) => [`${r} offered: Mbit/s received`, 'loss %', 'late', 'vs wggo'])];
  const rows = pairings.map((p, i) => [
    pairName(p), workersName(p),
    ...results[i]!.flatMap((c, j) => [mbit(c.bps), c.lostPercent.toFixed(1), String(c.outOfOrder), ratio(c.bps, base < 0 ? undefined : results[base]![j]!.bps)]),
  ]);
  printTable(`iperf3 UDP, ${PAYLOAD}-byte datagrams, ${seconds} s per cell ("late": received after a higher sequence number)`, load, header, rows);
}

await main();
