// Replay window: the kernel's selftest table (drivers/net/wireguard/selftest/counter.c), the same
// table shifted across the 2^32 boundary, a differential test against a naive model, and the
// lock exercised by two workers sharing one window in a SharedArrayBuffer.
// This file is also the workers' entry point: see runWorker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import {
  COUNTER_WINDOW_SIZE,
  REJECT_AFTER_MESSAGES,
  REPLAY_STATE_WORDS,
  ReplayWindow,
} from '../src/replay/replay.js';
import { seededRandom } from './helpers.js';

type Row = readonly [counter: bigint, expected: boolean];
/** One T_INIT block of the selftest: rows run in order on a fresh window. */
interface Section {
  readonly name: string;
  readonly rows: readonly Row[];
}

// Literal, not imported: the table must catch a wrong constant in the module.
const W = 8128;
const WB = BigInt(W);
const T_LIM = WB + 1n;
const R = 0xffff_ffff_ffff_dfffn; // 2^64 - 2^13 - 1

function range(from: number, toInclusive: number, step = 1): Row[] {
  const rows: Row[] = [];
  for (let i = from; step > 0 ? i <= toInclusive : i >= toInclusive; i += step) {
    rows.push([BigInt(i), true]);
  }
  return rows;
}

const KERNEL_BASIC: readonly Row[] = [
  /*  1 */ [0n, true],
  /*  2 */ [1n, true],
  /*  3 */ [1n, false],
  /*  4 */ [9n, true],
  /*  5 */ [8n, true],
  /*  6 */ [7n, true],
  /*  7 */ [7n, false],
  /*  8 */ [T_LIM, true],
  /*  9 */ [T_LIM - 1n, true],
  /* 10 */ [T_LIM - 1n, false],
  /* 11 */ [T_LIM - 2n, true],
  /* 12 */ [2n, true],
  /* 13 */ [2n, false],
  /* 14 */ [T_LIM + 16n, true],
  /* 15 */ [3n, false],
  /* 16 */ [T_LIM + 16n, false],
  /* 17 */ [T_LIM * 4n, true],
  /* 18 */ [T_LIM * 4n - (T_LIM - 1n), true],
  /* 19 */ [10n, false],
  /* 20 */ [T_LIM * 4n - T_LIM, false],
  /* 21 */ [T_LIM * 4n - (T_LIM + 1n), false],
  /* 22 */ [T_LIM * 4n - (T_LIM - 2n), true],
  /* 23 */ [T_LIM * 4n + 1n - T_LIM, false],
  /* 24 */ [0n, false],
];

const KERNEL_REJECT_LIMIT: readonly Row[] = [
  /* 25 */ [R, false],
  /* 26 */ [R - 1n, true],
  /* 27 */ [R, false],
  /* 28 */ [R - 1n, false],
  /* 29 */ [R - 2n, true],
  /* 30 */ [R + 1n, false],
  /* 31 */ [R + 2n, false],
  /* 32 */ [R - 2n, false],
  /* 33 */ [R - 3n, true],
  /* 34 */ [0n, false],
];

/** The bitmap-wrap loops after the first block, in the selftest's order. */
const KERNEL_LOOPS: readonly Section[] = [
  { name: 'in order 1..W, then 0 once', rows: [...range(1, W), [0n, true], [0n, false]] },
  {
    name: 'in order 2..W+1, then 1, 0 too old',
    rows: [...range(2, W + 1), [1n, true], [0n, false]],
  },
  { name: 'descending W..0', rows: range(W, 0, -1) },
  { name: 'descending W+1..1, 0 too old', rows: [...range(W + 1, 1, -1), [0n, false]] },
  {
    name: 'descending W..1, W+1, 0 too old',
    rows: [...range(W, 1, -1), [WB + 1n, true], [0n, false]],
  },
  {
    name: 'descending W..1, 0, W+1',
    rows: [...range(W, 1, -1), [0n, true], [WB + 1n, true]],
  },
];

const KERNEL_TABLE: readonly Section[] = [
  { name: 'basic 1-34', rows: [...KERNEL_BASIC, ...KERNEL_REJECT_LIMIT] },
  ...KERNEL_LOOPS,
];

function runSection(win: ReplayWindow, section: Section, base = 0n): void {
  win.reset();
  section.rows.forEach(([counter, expected], i) => {
    assert.equal(
      win.validateBig(counter + base),
      expected,
      `${section.name}: row ${i + 1}, counter ${counter} + base ${base}`,
    );
  });
}

/** What the window promises, with none of its mechanics: a set and the greatest counter. */
class NaiveWindow {
  private readonly seen = new Set<bigint>();
  private next = 0n; // greatest accepted + 1, like the kernel's stored counter

  validate(c: bigint): boolean {
    if (c < 0n || c >= R || c + 1n + WB < this.next || this.seen.has(c)) return false;
    this.seen.add(c);
    if (c + 1n > this.next) this.next = c + 1n;
    return true;
  }
}

// ---- two workers on one window ----

interface Job {
  readonly storage: Uint32Array; // over a SharedArrayBuffer
  readonly offset: number;
  readonly sync: Int32Array; // [0] barrier arrivals, [1 + 2 * phase + id] steps done, [SLEEP]
  readonly claims: Uint8Array; // phase 3: 1 where this worker's validate accepted
  readonly id: 0 | 1;
  readonly base: bigint;
  readonly perWorker: number; // phase 1 counters per worker
  readonly race: number; // phase 3 counters, validated by both
}
interface Report {
  readonly ownAccepted: number;
  readonly replayAccepted: number;
}

/**
 * Steps one worker may run ahead of the other. Small, so both hit the same words at the same
 * time (without the lock, phase 3 then sees double wins), and every counter stays in the window.
 */
const LAG = 8;
/** A word of `sync` that stays 0, to sleep on with Atomics.wait. */
const SLEEP = 5;

function runWorker(job: Job): Report {
  const win = new ReplayWindow(job.storage, job.offset);
  const { sync, id } = job;
  const other = 1 - id;
  // Spin while the other worker runs on another core; if it does not move for a while it may
  // share this core, so sleep a little to let it run (a pure spin would take ~100 s there).
  const waitWhile = (busy: () => boolean): void => {
    for (let spins = 0; busy(); spins++) {
      if (spins > 10_000) Atomics.wait(sync, SLEEP, 0, 0.1);
    }
  };
  const barrier = (generation: number): void => {
    Atomics.add(sync, 0, 1);
    waitWhile(() => Atomics.load(sync, 0) < 2 * generation);
  };
  const paced = (phase: number, steps: number, step: (j: number) => void): void => {
    const mine = 1 + 2 * phase + id;
    const theirs = 1 + 2 * phase + other;
    for (let j = 0; j < steps; j++) {
      waitWhile(() => j - Atomics.load(sync, theirs) > LAG);
      step(j);
      Atomics.store(sync, mine, j + 1);
    }
  };
  const check = (c: bigint): boolean => win.validateBig(c);

  barrier(1);
  // Phase 1: disjoint, interleaved counters (this worker takes base + 2j + id).
  let ownAccepted = 0;
  paced(0, job.perWorker, (j) => {
    if (check(job.base + BigInt(2 * j + id))) ownAccepted++;
  });
  barrier(2);
  // Phase 2: both replay the whole last window and a little older: nothing may pass.
  const end = job.base + BigInt(2 * job.perWorker);
  let replayAccepted = 0;
  for (let c = end - WB - 64n; c < end; c++) if (check(c)) replayAccepted++;
  barrier(3);
  // Phase 3: both race on the same fresh counters; exactly one may win each.
  paced(1, job.race, (j) => {
    job.claims[j] = check(end + BigInt(j)) ? 1 : 0;
  });
  return { ownAccepted, replayAccepted };
}

if (!isMainThread) {
  parentPort!.postMessage(runWorker(workerData as Job));
} else {
  test('constants match the kernel', () => {
    assert.equal(COUNTER_WINDOW_SIZE, W);
    assert.equal(REJECT_AFTER_MESSAGES, (1n << 64n) - (1n << 13n) - 1n);
    assert.equal(REJECT_AFTER_MESSAGES, R);
  });

  test('kernel selftest table (counter.c), every block in order', () => {
    const win = new ReplayWindow();
    for (const section of KERNEL_TABLE) runSection(win, section);
  });

  test('kernel table shifted across 64-bit word and 2^32 boundaries', () => {
    // Rows 25-34 use absolute counters near the limit, so only the relative rows are shifted.
    const relative: Section[] = [{ name: 'basic 1-24', rows: KERNEL_BASIC }, ...KERNEL_LOOPS];
    const win = new ReplayWindow();
    for (const base of [37n, (1n << 32n) - 4096n, (1n << 32n) - 1n, 0x1234_5678_9abc_def0n]) {
      for (const section of relative) runSection(win, section, base);
    }
  });

  test('reject limit: the last counters below REJECT_AFTER_MESSAGES, and beyond', () => {
    const win = new ReplayWindow();
    assert.equal(win.validateBig(R - WB - 10n), true);
    assert.equal(win.validateBig(R - 1n), true); // jump to the very last valid counter
    assert.equal(win.validateBig(R - WB - 1n), true); // exactly at the window's edge
    assert.equal(win.validateBig(R - WB - 2n), false); // one past it
    assert.equal(win.validateBig(R), false);
    assert.equal(win.validateBig((1n << 64n) - 1n), false);
    assert.equal(win.validate(0xffffffff, 0xffffffff), false);
    assert.equal(win.validate(0xffffdfff, 0xffffffff), false); // = R
    assert.equal(win.validate(0xffffdffe, 0xffffffff), false); // = R - 1, a duplicate now
    assert.equal(win.validate(0xffffdffd, 0xffffffff), true);
  });

  test('validateBig rejects values outside uint64 instead of throwing', () => {
    const win = new ReplayWindow();
    assert.equal(win.validateBig(-1n), false);
    assert.equal(win.validateBig(1n << 64n), false);
    assert.equal(win.validateBig(1n << 80n), false);
    assert.equal(win.validateBig(0n), true);
  });

  test('agrees with a naive set-based model on seeded random sequences', () => {
    const starts = [0n, (1n << 32n) - 60_000n, (1n << 53n) - 5000n, R - 300_000n];
    for (let seed = 1; seed <= 8; seed++) {
      const rand = seededRandom(seed);
      const win = new ReplayWindow();
      const naive = new NaiveWindow();
      let head = starts[seed % starts.length]!;
      const recent: bigint[] = [];
      for (let i = 0; i < 40_000; i++) {
        const r = rand();
        let c: bigint;
        if (r < 0.55) c = head + BigInt(Math.floor(rand() * 4)); // mostly in order
        else if (r < 0.8) c = head - BigInt(Math.floor(rand() * (W + 300))); // reordered or old
        else if (r < 0.93) c = recent[Math.floor(rand() * recent.length)] ?? head; // duplicates
        else if (r < 0.99) c = head + BigInt(Math.floor(rand() * 3 * W)); // gaps near the ring size
        else c = head + BigInt(Math.floor(rand() * 2 ** 40)); // big jumps, past the limit near R
        const expected = naive.validate(c);
        assert.equal(win.validateBig(c), expected, `seed ${seed} step ${i} counter ${c}`);
        if (expected) {
          if (c > head) head = c;
          recent[i & 255] = c;
        }
      }
    }
  });

  test('reset forgets everything; attaching does not', () => {
    const storage = new Int32Array(REPLAY_STATE_WORDS);
    const a = new ReplayWindow(storage);
    assert.equal(a.validateBig(100_000n), true);
    const b = new ReplayWindow(storage); // a second view of the same window
    assert.equal(b.validateBig(100_000n), false);
    assert.equal(b.validateBig(1n), false); // too old
    b.reset();
    assert.equal(a.validateBig(1n), true);
    assert.equal(a.validateBig(100_000n), true);
  });

  test('stays inside its words at an offset; misuse throws', () => {
    const offset = 5;
    const storage = new Uint32Array(offset + REPLAY_STATE_WORDS + 3).fill(0xa5a5a5a5);
    storage.fill(0, offset, offset + REPLAY_STATE_WORDS);
    const win = new ReplayWindow(storage, offset);
    for (let c = 0n; c < 20_000n; c += 3n) assert.equal(win.validateBig(c), true);
    win.reset();
    for (const i of [0, 1, 2, 3, 4, offset + REPLAY_STATE_WORDS, storage.length - 1]) {
      assert.equal(storage[i], 0xa5a5a5a5, `word ${i} untouched`);
    }
    const pastEnd = storage.length - REPLAY_STATE_WORDS + 1;
    assert.throws(() => new ReplayWindow(storage, pastEnd), RangeError);
    assert.throws(() => new ReplayWindow(storage, NaN), RangeError);
    assert.throws(() => new ReplayWindow(storage, -1), RangeError);
    assert.throws(() => new ReplayWindow(storage, 0.5), RangeError);
    assert.throws(() => new ReplayWindow(new Int32Array(REPLAY_STATE_WORDS - 1)), RangeError);
    assert.throws(
      () => new ReplayWindow(new Float64Array(REPLAY_STATE_WORDS) as unknown as Int32Array),
      TypeError,
    );
  });

  test('two workers share one window in a SharedArrayBuffer', { timeout: 120_000 }, async () => {
    const offset = 3;
    const storage = new Uint32Array(new SharedArrayBuffer((offset + REPLAY_STATE_WORDS) * 4));
    const sync = new Int32Array(new SharedArrayBuffer((SLEEP + 1) * 4));
    const perWorker = 100_000;
    const race = 100_000;
    // Start below 2^32 so the shared head crosses into the high word midway.
    const base = (1n << 32n) - 70_000n;
    const claims = [0, 1].map(() => new Uint8Array(new SharedArrayBuffer(race)));
    const workers = [0, 1].map((id) => {
      const job: Job = {
        storage, offset, sync, claims: claims[id]!, id: id as 0 | 1, base, perWorker, race,
      };
      return new Worker(new URL(import.meta.url), { workerData: job });
    });
    let reports: Report[];
    try {
      reports = await Promise.all(
        workers.map(
          (worker) =>
            new Promise<Report>((resolve, reject) => {
              worker.once('message', resolve);
              worker.once('error', reject);
            }),
        ),
      );
    } finally {
      // A worker that failed leaves its peer spinning at a barrier.
      await Promise.all(workers.map((worker) => worker.terminate()));
    }
    for (const r of reports) {
      assert.equal(r.ownAccepted, perWorker, 'every own counter accepted once');
      assert.equal(r.replayAccepted, 0, 'replays all rejected');
    }
    let doubles = 0;
    let misses = 0;
    for (let j = 0; j < race; j++) {
      const n = claims[0]![j]! + claims[1]![j]!;
      if (n > 1) doubles++;
      if (n < 1) misses++;
    }
    assert.deepEqual({ doubles, misses }, { doubles: 0, misses: 0 }, 'each raced counter won once');
    // Both saw the same state: the window's head is the last raced counter.
    const win = new ReplayWindow(storage, offset);
    const last = base + BigInt(2 * perWorker + race - 1);
    assert.equal(win.validateBig(last), false);
    assert.equal(win.validateBig(last + 1n), true);
  });
}
