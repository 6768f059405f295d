// The device as a MetricsSource: per-peer figures exactly as UAPI `get` (and so `wg show`)
// reports them, device counters from the handshake stats and the workers' shared counter rows.
import type { Device } from '../device/device.js';
import { COUNTER_NAMES, C_STRIDE, now } from '../queues/tables.js';
import type { MetricsSource, WorkerCounters } from './collector.js';

export function deviceSource(device: Device, ifname: string): MetricsSource {
  return {
    ifname,
    peerCount: () => device.peerCount,
    peers: () => device.peerStates(),
    handshakes: () => device.handshakes.stats,
    underLoad: () => now() < device.handshakes.load.untilMs,
    pendingRecords: () => device.pool.pending(),
    workerRestarts: () => device.pool.restarts,
    workers: () => workerCounters(device),
  };
}

/** The workers' rows (the main thread's row, mainRow, holds per-peer stats but counts no packets). */
function workerCounters(device: Device): WorkerCounters[] {
  const t = device.tables;
  const rows: WorkerCounters[] = [];
  for (let row = 0; row < device.mainRow; row++) {
    const base = row * C_STRIDE;
    rows.push({
      worker: String(row),
      names: COUNTER_NAMES,
      values: t.counters.subarray(base, base + COUNTER_NAMES.length),
    });
  }
  return rows;
}
