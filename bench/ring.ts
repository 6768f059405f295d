// Ring hand-off between two worker threads: items/s at several batch sizes, and one-way wake-up
// latency measured as half a ping-pong round trip (parking every time vs spinning first), and a
// round trip through a main thread that waits with Atomics.waitAsync.
// This file is also the worker script.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { Ring, SPIN_POLLS, type RingDesc } from '../src/queues/ring.js';

type Job =
  | { role: 'produce' | 'consume'; ring: RingDesc; total: number; batch: number }
  | { role: 'ping' | 'pong'; rx: RingDesc; tx: RingDesc; rounds: number; spinPolls: number };

function runWorker(job: Job): Record<string, number> {
  switch (job.role) {
    case 'produce': {
      const ring = Ring.fromShared(job.ring);
      const src = new Uint32Array(job.batch);
      let next = 0;
      while (next < job.total) {
        const n = Math.min(job.batch, job.total - next);
        for (let i = 0; i < n; i++) src[i] = next + i;
        let done = 0;
        // Offer what did not fit again: the benchmark wants every item through.
        while (done < n) done += ring.pushBatch(done === 0 ? src : src.subarray(done), n - done);
        next += n;
      }
      return {};
    }
    case 'consume': {
      const ring = Ring.fromShared(job.ring);
      const dst = new Uint32Array(job.batch);
      let got = 0;
      let start = 0;
      while (got < job.total) {
        const k = ring.popBatch(dst, job.batch);
        if (k === 0) {
          ring.waitForData(1000);
          continue;
        }
        if (got === 0) start = performance.now();
        got += k;
      }
      return { seconds: (performance.now() - start) / 1000, parks: ring.doorbell.parks };
    }
    case 'ping':
    case 'pong': {
      const rx = Ring.fromShared(job.rx);
      const tx = Ring.fromShared(job.tx);
      rx.spinPolls = job.spinPolls;
      const start = performance.now();
      if (job.role === 'ping') tx.push(0);
      for (let i = 0; i < job.rounds; i++) {
        while (!rx.waitForData(1000));
        const v = rx.pop();
        if (job.role === 'pong' || i + 1 < job.rounds) tx.push(v + 1);
      }
      return { micros: (performance.now() - start) * 1000, parks: rx.doorbell.parks };
    }
  }
}

function spawn(job: Job): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: job });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

async function throughput(batch: number, total: number): Promise<string[]> {
  const ring = Ring.create(1024);
  const [, c] = await Promise.all([
    spawn({ role: 'produce', ring: ring.desc, total, batch }),
    spawn({ role: 'consume', ring: ring.desc, total, batch }),
  ]);
  return [`batch ${batch}`, `${(total / c.seconds / 1e6).toFixed(2)} M items/s`, `${((c.seconds * 1e9) / total).toFixed(1)} ns/item`, `${c.parks} parks`];
}

async function wake(spinPolls: number, rounds: number): Promise<string[]> {
  const a = Ring.create(8);
  const b = Ring.create(8);
  const [ping, pong] = await Promise.all([
    spawn({ role: 'ping', rx: b.desc, tx: a.desc, rounds, spinPolls }),
    spawn({ role: 'pong', rx: a.desc, tx: b.desc, rounds, spinPolls }),
  ]);
  const oneWay = ping.micros / rounds / 2;
  const label = spinPolls === 0 ? 'park every time' : `spin ${spinPolls} polls`;
  return [`wake, ${label}`, `${oneWay.toFixed(2)} µs one-way`, `${rounds} round trips`, `${ping.parks + pong.parks} parks`];
}

/** Main thread as the ping side, waiting with Atomics.waitAsync (the event loop stays free). */
async function wakeMain(rounds: number): Promise<string[]> {
  const rx = Ring.create(8);
  const tx = Ring.create(8);
  // The worker spins, so the round trip is mostly the main thread's wake-up through the event loop.
  const pong = spawn({ role: 'pong', rx: tx.desc, tx: rx.desc, rounds, spinPolls: SPIN_POLLS });
  const start = performance.now();
  tx.push(0);
  for (let i = 0; i < rounds; i++) {
    while (!(await rx.waitForDataAsync(1000)));
    const v = rx.pop();
    if (i + 1 < rounds) tx.push(v + 1);
  }
  const roundTrip = ((performance.now() - start) * 1000) / rounds;
  await pong;
  return ['wake, main thread waitAsync', `${roundTrip.toFixed(2)} µs round trip`, `${rounds} round trips`, `${rx.doorbell.parks} main parks`];
}

function print(rows: string[][]): void {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i])).join('  '));
}

if (!isMainThread) {
  parentPort!.postMessage(runWorker(workerData as Job));
} else {
  const rows = [['case', 'rate', 'cost', 'notes']];
  rows.push(await throughput(1, 5_000_000));
  rows.push(await throughput(32, 50_000_000));
  rows.push(await throughput(128, 100_000_000));
  rows.push(await wake(0, 5_000));
  rows.push(await wake(SPIN_POLLS, 50_000));
  rows.push(await wakeMain(5_000));
  print(rows);
}
