// Replay window cost per validate, single thread (the lock is taken uncontended every call).
// Run: node dist/bench/replay.js
import { ReplayWindow } from '../src/replay/replay.js';

const N = 20_000_000;
const ROUNDS = 5;

interface Case {
  readonly name: string;
  /** Validates N counters; returns how many were accepted, so the work cannot be elided. */
  readonly run: (win: ReplayWindow) => number;
}

const lockWord = new Int32Array(new SharedArrayBuffer(4));

const cases: Case[] = [
  {
    name: 'in order',
    run: (win) => {
      let ok = 0;
      for (let i = 0; i < N; i++) if (win.validate(i, 0)) ok++;
      return ok;
    },
  },
  {
    name: 'in order, crossing 2^32',
    run: (win) => {
      let ok = 0;
      const start = 0x1_0000_0000 - N / 2;
      for (let i = 0; i < N; i++) {
        const c = start + i;
        if (win.validate(c >>> 0, Math.floor(c / 0x1_0000_0000))) ok++;
      }
      return ok;
    },
  },
  {
    name: 'pairs swapped (1,0,3,2,...)',
    run: (win) => {
      let ok = 0;
      for (let i = 0; i < N; i++) if (win.validate(i ^ 1, 0)) ok++;
      return ok;
    },
  },
  {
    name: 'all duplicates (rejected)',
    run: (win) => {
      let ok = 0;
      for (let i = 0; i < N; i++) if (win.validate(1000, 0)) ok++;
      return ok;
    },
  },
  {
    // Baseline: the uncontended lock alone, which is most of a validate's cost.
    name: 'lock + unlock only (baseline)',
    run: () => {
      const s = lockWord;
      for (let i = 0; i < N; i++) {
        while (Atomics.compareExchange(s, 0, 0, 1) !== 0) {
          // never contended here
        }
        Atomics.store(s, 0, 0);
      }
      return 0;
    },
  },
  {
    name: 'validateBig, in order',
    run: (win) => {
      let ok = 0;
      for (let i = 0n; i < BigInt(N); i++) if (win.validateBig(i)) ok++;
      return ok;
    },
  },
];

const win = new ReplayWindow();
const rows: { case: string; 'ns/op (best)': string; 'Mops/s': string }[] = [];
for (const c of cases) {
  let best = Infinity;
  for (let r = 0; r < ROUNDS; r++) {
    win.reset();
    const t0 = process.hrtime.bigint();
    const accepted = c.run(win);
    const ns = Number(process.hrtime.bigint() - t0) / N;
    if (accepted > N) throw new Error('impossible');
    best = Math.min(best, ns);
  }
  rows.push({ case: c.name, 'ns/op (best)': best.toFixed(2), 'Mops/s': (1000 / best).toFixed(1) });
}
console.table(rows);
