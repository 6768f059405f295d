// What the network benches share: the pairings they compare, in the order of their tables
// (wireguard-go with itself first, the baseline every row is divided by, measured in the same
// run because the machine is shared and its speed drifts), command-line flags, a fresh pair
// of namespaces per pairing, and the markdown table.
import { loadavg } from 'node:os';
import { Cleanup, ensureTools, isRoot } from '../test/interop/harness.js';
import { createPair, ping, type Host, type Impl } from '../test/interop/topology.js';

/** Side a sends (it runs the iperf3 client and the pings); `workers` is for wireguard-ts only. */
export interface Pairing { a: Impl; b: Impl; workers?: number }

export const PAIRINGS: readonly Pairing[] = [
  { a: 'wggo', b: 'wggo' },
  { a: 'ours', b: 'wggo', workers: 1 },
  { a: 'ours', b: 'wggo' },
  { a: 'wggo', b: 'ours', workers: 1 },
  { a: 'wggo', b: 'ours' },
  { a: 'ours', b: 'ours', workers: 1 },
  { a: 'ours', b: 'ours' },
];

export const isBaseline = (p: Pairing): boolean => p.a === 'wggo' && p.b === 'wggo';

export function pairName(p: Pairing): string {
  return `${p.a} -> ${p.b}`;
}

export function workersName(p: Pairing): string {
  if (isBaseline(p)) return '-';
  return p.workers === undefined ? 'default' : String(p.workers);
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

export function flag(name: string): boolean {
  return process.argv.includes(name);
}

export function numberArg(name: string, def: number): number {
  const v = argValue(name);
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} takes a positive number, got "${v}"`);
  return n;
}

export function listArg(name: string, def: string[]): string[] {
  return argValue(name)?.split(',').filter(Boolean) ?? def;
}

export function stringArg(name: string): string | undefined {
  return argValue(name);
}

/**
 * The pairings to run: all of them, or those picked by `--pair A-B` (e.g. ours-ours) and
 * `--workers N|default`.
 */
export function selectedPairings(): Pairing[] {
  const pair = argValue('--pair');
  const workers = argValue('--workers');
  return PAIRINGS.filter((p) => (pair === undefined || `${p.a}-${p.b}` === pair) && (workers === undefined || workersName(p) === workers));
}

/** The benches create namespaces and TUN devices: root, and the real tools. */
export function requireRoot(): void {
  if (!isRoot) throw new Error('run as root: the bench creates network namespaces and TUN devices');
  ensureTools();
}

/** Creates the pair, checks the tunnel carries traffic, runs `measure` on it and tears it all down. */
export async function withPair<T>(p: Pairing, measure: (a: Host, b: Host, cleanup: Cleanup) => Promise<T>): Promise<T> {
  const cleanup = new Cleanup();
  try {
    const oursArgs = p.workers === undefined ? [] : ['--workers', String(p.workers)];
    const { a, b } = await createPair(cleanup, { a: p.a, b: p.b, oursArgs });
    if (!ping(a, b.tunnel4)) throw new Error(`${pairName(p)}: the tunnel did not come up`);
    return await measure(a, b, cleanup);
  } finally {
    await cleanup.run();
  }
}

/**
 * Runs `measure` on every selected pairing, one fresh pair each, and reports each pairing's
 * cells on stderr as they come (`describe`). `baseline(j)` is cell j of wggo->wggo, if selected.
 */
export async function measurePairings<T>(
  measure: (a: Host, b: Host, cleanup: Cleanup) => Promise<T[]>,
  describe: (cells: T[]) => string,
): Promise<{ pairings: Pairing[]; results: T[][]; baseline: (j: number) => T | undefined }> {
  const pairings = selectedPairings();
  const results: T[][] = [];
  for (const p of pairings) {
    const cells = await withPair(p, measure);
    results.push(cells);
    process.stderr.write(`${pairName(p)} workers ${workersName(p)}: ${describe(cells)}\n`);
  }
  const base = pairings.findIndex(isBaseline);
  return { pairings, results, baseline: (j) => (base < 0 ? undefined : results[base]![j]) };
}

export function mbit(bps: number): string {
  return (bps / 1e6).toFixed(0);
}

/** `value / base` as "1.23x", or "-" without a baseline. */
export function ratio(value: number, base: number | undefined): string {
  return base === undefined || base <= 0 ? '-' : `${(value / base).toFixed(2)}x`;
}

/**
 * Prints a markdown table under a title that records the machine's load: the benches run on a
 * shared 2-vCPU machine, and a load average near 2 before the run means the numbers are low.
 */
export function printTable(title: string, loadBefore: number, header: string[], rows: string[][]): void {
  console.log(`\n${title}\n(load average 1 min: ${loadBefore.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after)`);
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => '---').join('|')}|`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}

export function loadNow(): number {
  return loadavg()[0]!;
}
