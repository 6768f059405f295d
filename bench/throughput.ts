// iperf3 TCP through the tunnel on a veth pair between two network namespaces, for every
// pairing of wireguard-ts and wireguard-go, each row measured in the same run as the
// wireguard-go <-> wireguard-go baseline it is compared with.
//
//   node dist/bench/throughput.js [--seconds N] [--streams N]
import { Cleanup, ensureTools, isRoot } from '../test/interop/harness.js';
import { createPair, iperf, ping, type Impl } from '../test/interop/topology.js';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const seconds = arg('--seconds', 10);
const streams = arg('--streams', 1);

interface Row { a: Impl; b: Impl; workers?: number }
const rows: Row[] = [
  { a: 'wggo', b: 'wggo' },
  { a: 'ours', b: 'wggo', workers: 1 },
  { a: 'ours', b: 'wggo' },
  { a: 'wggo', b: 'ours', workers: 1 },
  { a: 'wggo', b: 'ours' },
  { a: 'ours', b: 'ours', workers: 1 },
  { a: 'ours', b: 'ours' },
];

async function measure(r: Row): Promise<number> {
  const cleanup = new Cleanup();
  try {
    const oursArgs = r.workers ? ['--workers', String(r.workers)] : [];
    const { a, b } = await createPair(cleanup, { a: r.a, b: r.b, oursArgs });
    if (!ping(a, b.tunnel4)) throw new Error('tunnel did not come up');
    return await iperf(cleanup, a, b, seconds, streams);
  } finally {
    await cleanup.run();
  }
}

async function main(): Promise<void> {
  if (!isRoot) throw new Error('run as root: the bench creates network namespaces');
  ensureTools();
  const results: { row: Row; bps: number }[] = [];
  for (const row of rows) {
    const bps = await measure(row);
    results.push({ row, bps });
    process.stderr.write(`${label(row)}: ${(bps / 1e6).toFixed(0)} Mbit/s\n`);
  }
  const base = results[0]!.bps;
  console.log(`\niperf3 TCP, ${streams} stream(s), ${seconds} s, veth between two namespaces, MTU 1420`);
  console.log('| sender -> receiver | workers | Mbit/s | vs wggo<->wggo |');
  console.log('|---|---|---|---|');
  for (const { row, bps } of results) {
    const w = row.a === 'wggo' && row.b === 'wggo' ? '-' : row.workers ? String(row.workers) : 'default';
    console.log(`| ${row.a} -> ${row.b} | ${w} | ${(bps / 1e6).toFixed(0)} | ${(bps / base).toFixed(2)}x |`);
  }
}

function label(r: Row): string {
  return `${r.a} -> ${r.b}${r.workers ? ` (--workers ${r.workers})` : ''}`;
}

await main();
