// What the network benches share: the pairings they compare, in the order of their tables
// (wireguard-go with itself first, the baseline every row is divided by, measured in the same
// run because the machine is shared and its speed drifts), command-line flags, a fresh pair
// of namespaces per pairing, and the markdown table.
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { Cleanup, ensureTools, isRoot } from '../test/interop/harness.js';
import { createPair, ping, type Host, type Impl } from '../test/interop/topology.js';

/**
 * Side a sends (it runs the iperf3 client and the pings); `workers` is for wireguard-ts only;
 * `reference` runs another build of wireguard-ts (a checkout's bin/wireguard-ts) on both sides.
 */
export interface Pairing { a: Impl; b: Impl; workers?: number; reference?: string }

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
  return p.reference !== undefined ? `reference -> reference` : `${p.a} -> ${p.b}`;
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
 * The pairings to run: all of them, or those picked by `--pair A-B[,C-D]` (e.g. ours-ours,wggo-wggo)
 * and `--workers N|default` (which keeps the wireguard-go baseline).
 */
export function selectedPairings(): Pairing[] {
  const pair = argValue('--pair');
  const workers = argValue('--workers');
  const pairs = pair?.split(',');
  const picked = PAIRINGS.filter((p) => (pairs === undefined || pairs.includes(`${p.a}-${p.b}`)) && (workers === undefined || isBaseline(p) || workersName(p) === workers));
  const reference = referenceBin();
  if (reference === undefined) return picked;
  return [...picked, ...picked.filter((p) => p.a === 'ours' && p.b === 'ours').map((p) => ({ ...p, reference }))];
}

/**
 * `--reference DIR`: a built checkout of another revision (e.g. `git worktree add /tmp/ref
 * <rev> && cd /tmp/ref && npm install && npx tsc -p tsconfig.json`), whose ours<->ours rows run
 * beside today's in the same run, to show what a change did on a machine whose figures drift.
 */
function referenceBin(): string | undefined {
  const dir = argValue('--reference');
  if (dir === undefined) return undefined;
  const bin = resolve(dir, 'bin/wireguard-ts');
  if (!existsSync(bin) || !existsSync(resolve(dir, 'dist/src'))) throw new Error(`--reference ${dir}: no built checkout there (bin/wireguard-ts and dist/src)`);
  return bin;
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
    const { a, b } = await createPair(cleanup, { a: p.a, b: p.b, oursArgs, oursBin: p.reference });
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
  combine: (runs: T[]) => T = (runs) => runs[0]!,
): Promise<{ pairings: Pairing[]; results: T[][]; baseline: (j: number) => T | undefined }> {
  const pairings = selectedPairings();
  // --rounds N: every pairing N times, round after round, so that drift in the machine's load
  // reaches each alike; `combine` makes one cell of a cell's N runs.
  const rounds = numberArg('--rounds', 1);
  const runs: T[][][] = pairings.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (const [i, p] of pairings.entries()) {
      const cells = await withPair(p, measure);
      runs[i]!.push(cells);
      process.stderr.write(`${pairName(p)} workers ${workersName(p)}${rounds > 1 ? ` round ${r + 1}` : ''}: ${describe(cells)}\n`);
    }
  }
  const results = runs.map((byRound) => byRound[0]!.map((_, j) => combine(byRound.map((cells) => cells[j]!))));
  const base = pairings.findIndex(isBaseline);
  return { pairings, results, baseline: (j) => (base < 0 ? undefined : results[base]![j]) };
}

/** The median of numbers (the lower middle one of an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[(sorted.length - 1) >> 1]!;
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
