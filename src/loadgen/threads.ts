// The load generator on several threads. One engine is bound by one core's X25519 and BLAKE2s
// work per handshake (~4 DH each), so the clients and the source addresses are dealt out to
// worker threads (worker.ts), each running its own Engine on its own sockets with its share of
// every rate and limit. The main thread only orders start and stop, sums the counters the
// threads report a few times a second for live progress, and merges their final results
// (histograms added, so percentiles cover every sample) into one.
import { Worker } from 'node:worker_threads';
import type { EngineOptions } from './engine.js';
import { addCounters, LatencyHistogram, mergeResults, newCounters, processCpuSince, type Counters, type RunResult } from './stats.js';
import type { FromWorker, ToWorker } from './worker.js';

/**
 * Splits a run over at most `threads` engines: client i and source address i go to thread
 * i mod T, so each thread owns whole sockets and the clients it sends from them. T is capped by
 * the clients, the source addresses (each address keeps exactly one socket) and the initiations
 * (so no thread is left with nothing to start). Rates and limits are shared in proportion to
 * the clients; the shares add up to the totals asked for.
 */
export function splitPlan(o: EngineOptions, threads: number): EngineOptions[] {
  const n = o.clients.length;
  let t = Math.max(1, Math.min(threads, n, o.initiations));
  if (o.sources.length > 0) t = Math.min(t, o.sources.length);
  const pick = <T>(list: readonly T[], k: number): T[] => list.filter((_, i) => i % t === k);
  /** Clients of threads before k: the shares of a total are differences of a cumulative floor. */
  const before = (k: number): number => k * Math.floor(n / t) + Math.min(k, n % t);
  const share = (total: number, k: number): number => {
    if (!Number.isFinite(total)) return total;
    return Math.floor((total * before(k + 1)) / n) - Math.floor((total * before(k)) / n);
  };
  return Array.from({ length: t }, (_, k) => {
    const clients = pick(o.clients, k);
    return {
      ...o,
      clients,
      sources: pick(o.sources, k),
      rate: (o.rate * clients.length) / n,
      dataRate: (o.dataRate * clients.length) / n,
      initiations: share(o.initiations, k),
      packets: share(o.packets, k),
    };
  });
}

interface Thread { worker: Worker; counters: Counters; result?: RunResult }

/** The same face as an Engine (open, run, stop, snapshot, close), over worker threads. */
export class ThreadedEngine {
  private readonly threads: Thread[] = [];
  private failure: ((err: Error) => void) | undefined;
  private finished: (() => void) | undefined;

  private constructor() {}

  /** Starts the threads and resolves once every one has its sockets open and its clients set up. */
  static async open(o: EngineOptions, threads: number): Promise<ThreadedEngine> {
    const e = new ThreadedEngine();
    try {
      await Promise.all(splitPlan(o, threads).map((plan) => e.start(plan)));
    } catch (err) {
      e.close();
      throw err;
    }
    return e;
  }

  private start(plan: EngineOptions): Promise<void> {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: plan });
    const t: Thread = { worker, counters: newCounters() };
    this.threads.push(t);
    return new Promise<void>((resolve, reject) => {
      const fail = (err: Error): void => {
        reject(err);
        this.failure?.(err);
      };
      worker.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'ready': return resolve();
          case 'failed': return fail(new Error(m.message));
          case 'progress':
            t.counters = m.counters;
            return;
          case 'done':
            t.counters = m.result.counters;
            t.result = { ...m.result, latency: LatencyHistogram.fromState(m.result.latency) };
            if (this.threads.every((x) => x.result !== undefined)) this.finished?.();
        }
      });
      worker.on('error', fail);
      worker.on('exit', (code) => {
        if (t.result === undefined) fail(new Error(`a load generator thread exited (code ${code}) before its run was over`));
      });
    });
  }

  /** Runs every thread's sending phase and drain; resolves with their merged result. */
  run(): Promise<RunResult> {
    const cpu = process.cpuUsage();
    return new Promise<void>((resolve, reject) => {
      this.finished = resolve;
      this.failure = reject;
      this.order('run');
    }).then(() => ({ ...mergeResults(this.threads.map((t) => t.result!)), ...processCpuSince(cpu) }));
  }

  /** Ends the sending phase of every thread now; the drain still happens. */
  stop(): void {
    this.order('stop');
  }

  /** The sum of the counters the threads last reported (at most PROGRESS_MS old). */
  snapshot(): Counters {
    const sum = newCounters();
    for (const t of this.threads) addCounters(sum, t.counters);
    return sum;
  }

  close(): void {
    this.failure = undefined;
    for (const t of this.threads) {
      t.worker.removeAllListeners('exit');
      void t.worker.terminate();
    }
  }

  private order(m: ToWorker): void {
    for (const t of this.threads) t.worker.postMessage(m);
  }
}
