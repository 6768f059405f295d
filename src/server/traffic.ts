// Traffic history: every period the sampler reads every peer's counters from the device and
// stores the deltas since its previous reading (src/store keeps minute buckets for a day, hour
// buckets for 90 days, and monthly totals per client).
//
// Deltas, not counters: the device's counters start at zero whenever the daemon starts or a
// peer is removed and added again (disable/enable), and a delta from zero is still right. The
// base is zero at start because the daemon's device is new then; a counter below its base can
// only mean a reset the sampler was not told about, and counts from zero.
import type { Repository, TrafficDelta } from '../store/repository.js';
import type { DeviceControl } from './device.js';
import { keyBase64 } from './keys.js';

export const MINUTE_RETENTION_MS = 24 * 3_600_000;
export const HOUR_RETENTION_MS = 90 * 24 * 3_600_000;

export class TrafficSampler {
  private readonly base = new Map<number, { rx: number; tx: number }>();

  constructor(
    private readonly store: Repository,
    private readonly device: DeviceControl,
    private readonly clientOf: (publicKey: string) => number | undefined,
  ) {}

  /** The device's counters of this client restart at zero (its peer was re-created). */
  reset(clientId: number): void {
    this.base.delete(clientId);
  }

  /** Reads the device, stores the deltas, prunes what is past retention. */
  async sample(now: number): Promise<void> {
    const deltas: TrafficDelta[] = [];
    const next: [number, { rx: number; tx: number }][] = [];
    for (const p of await this.device.peers()) {
      const id = this.clientOf(keyBase64(p.publicKey));
      if (id === undefined) continue;
      const rx = Number(p.rxBytes);
      const tx = Number(p.txBytes);
      const last = this.base.get(id) ?? { rx: 0, tx: 0 };
      const d = { clientId: id, rx: rx >= last.rx ? rx - last.rx : rx, tx: tx >= last.tx ? tx - last.tx : tx };
      next.push([id, { rx, tx }]);
      if (d.rx > 0 || d.tx > 0) deltas.push(d);
    }
    // The bases move only once the deltas are stored: a failed write (a full disk) is counted
    // again by the next sample instead of being lost.
    if (deltas.length > 0) await this.store.addTraffic(now, deltas);
    for (const [id, b] of next) this.base.set(id, b);
    await this.store.pruneTraffic(60, now - MINUTE_RETENTION_MS);
    await this.store.pruneTraffic(3600, now - HOUR_RETENTION_MS);
  }
}
