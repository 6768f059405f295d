// A worker's report of transport messages on receiver indices that are not ours (the cluster's
// routable indices, src/device/routable.ts): a DataPath over memory doubles receives forged
// messages and the test reads its event ring as the main thread would. Reports go only when the
// device says indices are routable, carry the index and the source endpoint, and stop at
// UNKNOWN_INDEX_REPORTS_PER_S a second however many messages come.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Slab } from '../src/queues/slab.js';
import { Ring } from '../src/queues/ring.js';
import { Records, RecordKind } from '../src/queues/records.js';
import { EndpointTable, formatEndpoint, parseEndpoint } from '../src/net/endpoint.js';
import { AllowedIPs, tablesFromShared } from '../src/allowedips/allowedips.js';
import { Tables, D_ROUTABLE, now } from '../src/queues/tables.js';
import { DataPath, STAGING_SLOTS, UNKNOWN_INDEX_REPORTS_PER_S, type TunIO, type UdpIO } from '../src/workers/datapath.js';
import { MSG_DATA } from '../src/handshake/messages.js';

const BATCH = 32;
const INDEX = 0xdeadbeef;
const SOURCE = '192.0.2.7:40001';

/** A socket that always has a full batch of 48-byte transport messages on INDEX from SOURCE. */
class ForgedData implements UdpIO {
  received = 0;
  /** There is always more. */
  readonly pending = true;

  recvBatch(slab: Uint8Array, offsets: Uint32Array, _maxLen: number, lens: Int32Array, from: EndpointTable, max: number): number {
    for (let k = 0; k < max; k++) {
      const at = offsets[k]!;
      slab.fill(0, at, at + 48);
      slab[at] = MSG_DATA;
      new DataView(slab.buffer, slab.byteOffset + at + 4, 4).setUint32(0, INDEX, true);
      lens[k] = 48;
      parseEndpoint(SOURCE, from, k);
    }
    this.received += max;
    return max;
  }

  sendBatch(): number {
    return 0;
  }
}

const noTun: TunIO = { readBatch: () => 0, writeBatch: (_s, _o, _l, n) => n };

function setup(): { t: Tables; path: DataPath; events: Ring; slab: Slab; endpoints: EndpointTable } {
  const t = Tables.create(4, 16, 1);
  const slab = Slab.create({ slots: 2 * BATCH + STAGING_SLOTS + 256 });
  const take = (n: number): number[] => {
    const a = new Uint32Array(n);
    assert.equal(slab.allocBatch(a, n), n);
    return [...a];
  };
  const endpoints = new EndpointTable(slab.slotCount);
  const events = Ring.create(1024);
  const path = new DataPath(0, t, slab, endpoints, { handshakes: Ring.create(1024), events }, tablesFromShared(new AllowedIPs().snapshot()), BATCH,
    { tunSlots: take(BATCH), udpSlots: take(BATCH), stagingSlots: take(STAGING_SLOTS), largeAt: [] });
  return { t, path, events, slab, endpoints };
}

/** Pops every event record, checks each, frees it; returns how many there were. */
function drain(events: Ring, slab: Slab, endpoints: EndpointTable): number {
  const records = new Records(slab);
  let n = 0;
  for (let slot = events.pop(); slot >= 0; slot = events.pop()) {
    assert.equal(records.kind(slot), RecordKind.UnknownIndex);
    assert.equal(records.arg(slot) >>> 0, INDEX);
    assert.equal(formatEndpoint(endpoints, slot), SOURCE);
    slab.free(slot);
    n++;
  }
  return n;
}

test('unknown indices are reported only with routable indices, with their source, at most UNKNOWN_INDEX_REPORTS_PER_S a second', () => {
  const { t, path, events, slab, endpoints } = setup();
  const udp = new ForgedData();
  for (let i = 0; i < 10; i++) path.inbound(udp, noTun);
  assert.equal(drain(events, slab, endpoints), 0, 'a single server stays silent');

  Atomics.store(t.device, D_ROUTABLE, 1);
  const start = now();
  let reports = 0;
  // A flood: far more messages than the budget, within one second.
  for (let i = 0; i < 20; i++) {
    path.inbound(udp, noTun);
    reports += drain(events, slab, endpoints);
  }
  assert.ok(now() - start < 1000, 'the flood fits in one window');
  assert.equal(reports, UNKNOWN_INDEX_REPORTS_PER_S, `${reports} reports for ${udp.received} messages`);

  // The next second brings a new budget, and no more.
  reports = 0;
  while (reports === 0) {
    assert.ok(now() - start < 3000, 'reports again in the next window');
    path.inbound(udp, noTun);
    reports = drain(events, slab, endpoints);
  }
  for (let i = 0; i < 20; i++) {
    path.inbound(udp, noTun);
    reports += drain(events, slab, endpoints);
  }
  assert.equal(reports, UNKNOWN_INDEX_REPORTS_PER_S);
});
