// Preloaded into a daemon (`node --import`) by faults.test.ts, never loaded by the daemon itself:
// the first WGTS_TEST_RECORD_FAULTS control records (default 1) throw on the main thread instead
// of being handled, as a bug that a packet reaches would.
import { Handshakes } from '../../src/device/handshakes.js';
import type { Device } from '../../src/device/device.js';

let faults = Number(process.env.WGTS_TEST_RECORD_FAULTS ?? 1);
const handle = Handshakes.prototype.onRecord;
Handshakes.prototype.onRecord = function (this: Handshakes, slot: number): void {
  if (faults > 0) {
    faults--;
    // The callee frees the slot, also when it throws.
    (this as unknown as { d: Device }).d.pool.slab.free(slot);
    throw new TypeError('injected control record fault');
  }
  handle.call(this, slot);
};
