// One engine thread of the load generator (started by threads.ts): it opens the sockets of its
// share of the source addresses and sets up its share of the clients, says it is ready, runs
// when told to, reports its counters every PROGRESS_MS for live progress, and hands back its
// whole result once at the end. Nothing crosses per packet.
import { parentPort, workerData } from 'node:worker_threads';
import { Engine, type EngineOptions } from './engine.js';
import { wipeClients } from './keys.js';
import type { Counters, HistogramState, RunResult } from './stats.js';

/** How often a thread reports its counters: often enough for a progress line a second. */
export const PROGRESS_MS = 250;

/** The main thread's orders. */
export type ToWorker = 'run' | 'stop';
/** A result with its histogram as plain data. */
export type WireResult = Omit<RunResult, 'latency'> & { latency: HistogramState };
export type FromWorker =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'progress'; counters: Counters }
  | { type: 'done'; result: WireResult };

const port = parentPort!;
const o = workerData as EngineOptions;
const post = (m: FromWorker): void => port.postMessage(m);

let engine: Engine | undefined;
try {
  engine = await Engine.open(o);
} catch (err) {
  post({ type: 'failed', message: (err as Error).message });
} finally {
  // The engine's clients hold their own copies of the keys: this thread's copy is done with.
  wipeClients(o.clients);
}

if (engine !== undefined) {
  const e = engine;
  port.on('message', (m: ToWorker) => {
    if (m === 'stop') e.stop();
    else void runOnce(e);
  });
  post({ type: 'ready' });
}

async function runOnce(e: Engine): Promise<void> {
  const progress = setInterval(() => post({ type: 'progress', counters: e.snapshot() }), PROGRESS_MS);
  try {
    const r = await e.run();
    post({ type: 'done', result: { ...r, latency: r.latency.toState() } });
  } finally {
    clearInterval(progress);
    e.close();
  }
}
