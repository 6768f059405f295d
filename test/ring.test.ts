// Slab and ring semantics, single-threaded and across worker threads. This file is also the
// worker script: started with workerData it runs one role instead of registering tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Slab, SlotState, Meta, HEADROOM, SLOT_SIZE, type SlabDesc } from '../src/queues/slab.js';
import { Ring, Doorbell, type RingDesc } from '../src/queues/ring.js';
import { seededRandom } from './helpers.js';

type Job =
  | { role: 'produce'; ring: RingDesc; total: number; seed: number }
  | { role: 'consume'; ring: RingDesc; total: number; seed: number }
  | { role: 'park'; rings: RingDesc[] }
  | { role: 'slab-write'; slab: SlabDesc; slot: number }
  | { role: 'slab-churn'; slab: SlabDesc; id: number; rounds: number; seed: number };

function runWorker(job: Job): unknown {
  switch (job.role) {
    case 'produce': {
      const ring = Ring.fromShared(job.ring);
      const rand = seededRandom(job.seed);
      const src = new Uint32Array(256);
      let next = 0;
      while (next < job.total) {
        const n = Math.min(1 + Math.floor(rand() * 256), job.total - next);
        for (let i = 0; i < n; i++) src[i] = next + i;
        // A full ring drops the rest; this producer just offers the remainder again next round.
        next += ring.pushBatch(src, n);
      }
      return { dropped: ring.dropped() };
    }
    case 'consume': {
      const ring = Ring.fromShared(job.ring);
      const rand = seededRandom(job.seed);
      const dst = new Uint32Array(256);
      let expect = 0;
      while (expect < job.total) {
        const k = ring.popBatch(dst, 1 + Math.floor(rand() * 256));
        if (k === 0 && !ring.waitForData(5000)) return { error: `stalled at ${expect}` };
        for (let i = 0; i < k; i++, expect++) {
          if (dst[i] !== expect) return { error: `got ${dst[i]} expected ${expect}` };
        }
      }
      return { received: expect, leftover: ring.size(), parks: ring.doorbell.parks };
    }
    case 'park': {
      const bell = Doorbell.fromShared(job.rings[0].doorbell);
      const rings = job.rings.map((d) => Ring.fromShared(d, bell));
      const ready = (): boolean => rings.some((r) => r.size() > 0);
      const woke = bell.wait(ready, 30_000, 0);
      const values = rings.map((r) => r.pop());
      return { woke, values, parks: bell.parks, timeouts: bell.timeouts };
    }
    case 'slab-write': {
      const slab = Slab.fromShared(job.slab);
      const v = slab.view(job.slot);
      for (let i = 0; i < 100; i++) v[slab.headroom + i] = i ^ 0x5a;
      slab.setLength(job.slot, 100);
      slab.setPeer(job.slot, 7);
      slab.setEndpoint(job.slot, 9);
      slab.setState(job.slot, SlotState.Crypted);
      return { done: true };
    }
    case 'slab-churn': {
      // Each allocated slot is claimed in its PEER word with a compare-exchange: a slot handed
      // to two threads at once fails the claim.
      const slab = Slab.fromShared(job.slab);
      const rand = seededRandom(job.seed);
      const held = new Uint32Array(64);
      let allocs = 0;
      for (let r = 0; r < job.rounds; r++) {
        const k = slab.allocBatch(held, 1 + Math.floor(rand() * 64));
        for (let i = 0; i < k; i++) {
          if (Atomics.compareExchange(slab.meta, slab.record(held[i]) + Meta.PEER, -1, job.id) !== -1) {
            return { error: `slot ${held[i]} owned twice` };
          }
        }
        allocs += k;
        for (let i = 0; i < k; i++) Atomics.store(slab.meta, slab.record(held[i]) + Meta.PEER, -1);
        slab.freeBatch(held, k);
      }
      return { allocs };
    }
  }
}

function spawn(job: Job): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: job });
    w.once('message', resolve);
    w.once('error', reject);
    w.once('exit', (code) => code !== 0 && reject(new Error(`worker exited with ${code}`)));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

if (!isMainThread) {
  parentPort!.postMessage(runWorker(workerData as Job));
} else {
  test('slab: allocate all, exhaust, free, reuse', () => {
    const slab = Slab.create({ slots: 100 });
    assert.equal(slab.slotSize, SLOT_SIZE);
    assert.equal(slab.headroom, HEADROOM);
    const all = new Uint32Array(128);
    assert.equal(slab.allocBatch(all, 60), 60);
    assert.equal(slab.allocBatch(all.subarray(60), 68), 40);
    assert.equal(slab.allocBatch(all, 1), 0);
    assert.equal(slab.alloc(), -1);
    assert.deepEqual([...all.subarray(0, 100)].sort((a, b) => a - b), [...Array(100).keys()]);
    for (let i = 0; i < 100; i++) {
      assert.equal(slab.state(all[i]), SlotState.Uncrypted);
      assert.equal(slab.offset(all[i]), HEADROOM);
      assert.equal(slab.length(all[i]), 0);
    }
    slab.freeBatch(all, 100);
    for (let i = 0; i < 100; i++) assert.equal(slab.state(all[i]), SlotState.Free);
    const s = slab.alloc();
    assert.ok(s >= 0);
    slab.free(s);
    assert.equal(slab.allocBatch(all, 128), 100);
  });

  test('slab: double free and out-of-range slots throw', () => {
    const slab = Slab.create({ slots: 4 });
    const s = slab.alloc();
    slab.free(s);
    assert.throws(() => slab.free(s), /freed twice/);
    assert.throws(() => slab.free(4), RangeError);
    assert.throws(() => slab.freeBatch(new Uint32Array(2), -1), RangeError);
    const t = slab.alloc();
    assert.throws(() => slab.freeBatch(new Uint32Array([t, 99]), 2), RangeError);
    assert.equal(slab.state(t), SlotState.Uncrypted, 'a rejected batch frees nothing');
    slab.free(t);
    assert.throws(() => slab.allocBatch(new Uint32Array(2), 3), RangeError);
    assert.throws(() => slab.view(-1), RangeError);
    assert.throws(() => Slab.create({ slots: 0 }), RangeError);
    assert.throws(() => Slab.create({ slots: 4, slotSize: 100 }), RangeError);
    assert.throws(() => Slab.create({ slots: 4, headroom: SLOT_SIZE }), RangeError);
    assert.throws(() => Slab.fromShared({ ...slab.desc, slotSize: 1024 }), RangeError);
  });

  test('slab: metadata, state and views', () => {
    const slab = Slab.create({ slots: 8, slotSize: 256, headroom: 16 });
    const s = slab.alloc();
    assert.equal(slab.peer(s), -1);
    assert.equal(slab.endpoint(s), -1);
    slab.setPeer(s, 3);
    slab.setEndpoint(s, 4);
    slab.setOffset(s, 20);
    slab.setLength(s, 5);
    assert.deepEqual([slab.peer(s), slab.endpoint(s), slab.offset(s), slab.length(s)], [3, 4, 20, 5]);
    assert.equal(slab.casState(s, SlotState.Crypted, SlotState.Dead), false);
    assert.equal(slab.casState(s, SlotState.Uncrypted, SlotState.Crypted), true);
    assert.equal(slab.state(s), SlotState.Crypted);
    const v = slab.view(s);
    assert.equal(v, slab.view(s), 'one view per slot per thread');
    assert.equal(v.length, 256);
    v[0] = 0xab;
    assert.equal(slab.bytes[slab.base(s)], 0xab);
  });

  test('slab: a worker attached with fromShared sees and writes the same memory', async () => {
    const slab = Slab.create({ slots: 16 });
    const s = slab.alloc();
    assert.deepEqual(await spawn({ role: 'slab-write', slab: slab.desc, slot: s }), { done: true });
    assert.equal(slab.state(s), SlotState.Crypted);
    assert.deepEqual([slab.length(s), slab.peer(s), slab.endpoint(s)], [100, 7, 9]);
    const v = slab.view(s);
    for (let i = 0; i < 100; i++) assert.equal(v[slab.headroom + i], i ^ 0x5a);
  });

  test('slab: concurrent alloc/free from two workers never hands a slot out twice or loses one', async () => {
    const slab = Slab.create({ slots: 96 });
    const rounds = 100_000;
    const results = await Promise.all([
      spawn({ role: 'slab-churn', slab: slab.desc, id: 1, rounds, seed: 1 }),
      spawn({ role: 'slab-churn', slab: slab.desc, id: 2, rounds, seed: 2 }),
    ]);
    for (const r of results) assert.equal(r.error, undefined, String(r.error));
    const all = new Uint32Array(128);
    assert.equal(slab.allocBatch(all, 128), 96);
    assert.equal(new Set(all.subarray(0, 96)).size, 96);
  });

  test('ring: rejects bad capacities', () => {
    for (const c of [0, 1, 3, 100, 2 ** 31]) assert.throws(() => Ring.create(c), RangeError);
    assert.throws(() => Ring.fromShared(Ring.create(4).desc, Doorbell.create()), /doorbell/);
  });

  test('ring: empty, full, drops and counts', () => {
    const ring = Ring.create(8);
    const buf = new Uint32Array(16);
    assert.equal(ring.popBatch(buf, 16), 0);
    assert.equal(ring.pop(), -1);
    for (let i = 0; i < 16; i++) buf[i] = 100 + i;
    assert.equal(ring.pushBatch(buf, 5), 5);
    assert.equal(ring.pushBatch(buf.subarray(5), 11), 3);
    assert.equal(ring.dropped(), 8);
    assert.equal(ring.push(1), false);
    assert.equal(ring.pushBatch(buf, 1), 0);
    assert.equal(ring.dropped(), 10);
    assert.equal(ring.size(), 8);
    const out = new Uint32Array(16);
    assert.equal(ring.popBatch(out, 16), 8);
    assert.deepEqual([...out.subarray(0, 8)], [...buf.subarray(0, 8)]);
    assert.equal(ring.size(), 0);
    assert.throws(() => ring.pushBatch(buf, 17), RangeError);
    assert.throws(() => ring.popBatch(out, 17), RangeError);
    assert.throws(() => ring.pushBatch(buf, -1), RangeError);
    assert.throws(() => ring.popBatch(out, -1), RangeError);
  });

  test('ring: wrap-around with mixed batch sizes keeps order', () => {
    const ring = Ring.create(16);
    const rand = seededRandom(42);
    const src = new Uint32Array(32);
    const dst = new Uint32Array(32);
    let next = 0;
    let expect = 0;
    // Many laps around 16 entries; the int32 counters start near their wrap point below.
    for (let round = 0; round < 20_000; round++) {
      const n = Math.floor(rand() * 33);
      for (let i = 0; i < n; i++) src[i] = next + i;
      next += ring.pushBatch(src, n);
      if (rand() < 0.3 && ring.push(next)) next++;
      const k = ring.popBatch(dst, Math.floor(rand() * 33));
      for (let i = 0; i < k; i++) assert.equal(dst[i], expect++);
      if (rand() < 0.3) {
        const v = ring.pop();
        if (v !== -1) assert.equal(v, expect++);
      }
      assert.equal(ring.size(), next - expect);
      assert.ok(ring.size() <= 16);
    }
    assert.ok(next > 100_000);
  });

  test('ring: counters wrap past 2^31 and 2^32', () => {
    const ring = Ring.create(4);
    // White box: start both counters just below the int32 wrap, as after ~2^31 entries.
    const ctl = new Int32Array(ring.desc.buffer);
    ctl[0] = ctl[16] = 0x7ffffffe;
    const r = Ring.fromShared(ring.desc);
    const src = new Uint32Array([1, 2, 3, 4]);
    const dst = new Uint32Array(4);
    for (let lap = 0; lap < 4; lap++) {
      assert.equal(r.pushBatch(src, 4), 4);
      assert.equal(r.size(), 4);
      assert.equal(r.popBatch(dst, 4), 4);
      assert.deepEqual([...dst], [1, 2, 3, 4]);
    }
    ctl[0] = ctl[16] = -2;
    const w = Ring.fromShared(ring.desc);
    assert.equal(w.pushBatch(src, 4), 4);
    assert.equal(w.push(9), false);
    assert.equal(w.popBatch(dst, 4), 4);
    assert.deepEqual([...dst], [1, 2, 3, 4]);
  });

  test('ring: waiting on an empty ring times out; waiting with data returns at once', async () => {
    const ring = Ring.create(4);
    ring.spinPolls = 10;
    // Blocking for 20 ms is fine on a test runner's main thread, never on the daemon's.
    assert.equal(ring.waitForData(20), false);
    assert.equal(await ring.waitForDataAsync(20), false);
    assert.deepEqual([ring.doorbell.parks, ring.doorbell.timeouts], [2, 2]);
    ring.push(5);
    assert.equal(ring.waitForData(60_000), true);
    assert.equal(await ring.waitForDataAsync(60_000), true);
    assert.equal(ring.pop(), 5);
  });

  test('ring: 1,000,000 sequence numbers between two workers, in order and complete', async () => {
    const ring = Ring.create(1024);
    const total = 1_000_000;
    const [prod, cons] = await Promise.all([
      spawn({ role: 'produce', ring: ring.desc, total, seed: 7 }),
      spawn({ role: 'consume', ring: ring.desc, total, seed: 8 }),
    ]);
    assert.equal(cons.error, undefined, String(cons.error));
    assert.equal(cons.received, total);
    assert.equal(cons.leftover, 0);
    assert.equal(typeof prod.dropped, 'number');
  });

  test('ring: worker producer to a main-thread consumer that never blocks', async () => {
    const ring = Ring.create(256);
    const total = 1_000_000;
    const producer = spawn({ role: 'produce', ring: ring.desc, total, seed: 9 });
    const dst = new Uint32Array(128);
    let expect = 0;
    while (expect < total) {
      const k = ring.popBatch(dst, 128);
      if (k === 0) {
        assert.ok(await ring.waitForDataAsync(5000), `stalled at ${expect}`);
        continue;
      }
      for (let i = 0; i < k; i++, expect++) if (dst[i] !== expect) assert.equal(dst[i], expect);
    }
    await producer;
    assert.equal(ring.size(), 0);
  });

  test('ring: a parked consumer wakes when the main thread pushes', async () => {
    const ring = Ring.create(8);
    const worker = spawn({ role: 'park', rings: [ring.desc] });
    await untilParked(ring.desc.doorbell);
    assert.equal(ring.push(1234), true);
    assert.deepEqual(await worker, { woke: true, values: [1234], parks: 1, timeouts: 0 });
  });

  test('ring: several rings share one doorbell; a push on any of them wakes the consumer', async () => {
    const bell = Doorbell.create();
    const rings = [Ring.create(8, bell), Ring.create(8, bell), Ring.create(8, bell)];
    const worker = spawn({ role: 'park', rings: rings.map((r) => r.desc) });
    await untilParked(bell.buffer);
    const src = new Uint32Array([77]);
    assert.equal(rings[2].pushBatch(src, 1), 1);
    assert.deepEqual(await worker, { woke: true, values: [-1, -1, 77], parks: 1, timeouts: 0 });
  });
}

/** White box: waits until the consumer announced itself asleep (doorbell word 0), then gives it time to reach Atomics.wait. */
async function untilParked(doorbell: SharedArrayBuffer): Promise<void> {
  const word = new Int32Array(doorbell);
  while (Atomics.load(word, 0) !== 1) await sleep(2);
  await sleep(50);
}
