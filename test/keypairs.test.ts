// Keypair slots and their rotation (device/keypairs.ts), against the kernel's add_new_keypair:
// a responder's new keypair waits as next and drops the previous one; an initiator's becomes
// current at once; a peer never holds more than previous/current/next; retired slots are freed
// only after the quarantine. And the send counter's claim (queues/tables.ts) never passes
// SEND_COUNTER_LIMIT, from one thread or several.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { Tables, KeypairRole, SEND_COUNTER_LIMIT } from '../src/queues/tables.js';
import { Reclaimer } from '../src/device/reclaim.js';
import { Keypairs } from '../src/device/keypairs.js';
import { SessionKeys } from '../src/handshake/noise.js';

function setup(keypairCapacity = 16): { t: Tables; reclaimer: Reclaimer; kps: Keypairs } {
  const t = Tables.create(4, keypairCapacity, 1);
  for (let p = 0; p < 4; p++) t.peers.reset(p);
  const reclaimer = new Reclaimer(t.epochs);
  return { t, reclaimer, kps: new Keypairs(t, reclaimer) };
}

/** A handshake's outcome for `peer`: reserve a slot, install the session in it. Returns the slot. */
function session(kps: Keypairs, peer: number, isInitiator: boolean, fill = 1): number {
  const index = kps.reserve(peer);
  assert.ok(index >= 0, 'a slot is free');
  const s = new SessionKeys();
  s.localIndex = index;
  s.remoteIndex = 0x1000 + fill;
  s.isInitiator = isInitiator;
  s.sendKey.fill(fill);
  s.receiveKey.fill(fill + 1);
  assert.ok(kps.install(peer, s));
  return kps.slotOf(index);
}

/** What a worker and then the main thread do when the first packet arrives on a responder's keypair. */
function confirm(t: Tables, kps: Keypairs, peer: number, slot: number): boolean {
  t.keypairs.confirmOnce(slot);
  return kps.confirm(peer, slot);
}

const roles = (t: Tables, peer: number): { previous: number; current: number; next: number } => ({
  previous: t.peers.keypair(peer, KeypairRole.Previous),
  current: t.peers.keypair(peer, KeypairRole.Current),
  next: t.peers.keypair(peer, KeypairRole.Next),
});

test('responder: the new keypair waits as next, the previous one is dropped (kernel add_new_keypair)', () => {
  const { t, kps } = setup();
  const a = session(kps, 0, false, 1);
  assert.deepEqual(roles(t, 0), { previous: -1, current: -1, next: a });
  assert.ok(confirm(t, kps, 0, a));
  assert.deepEqual(roles(t, 0), { previous: -1, current: a, next: -1 });
  const b = session(kps, 0, false, 2);
  assert.ok(confirm(t, kps, 0, b));
  assert.deepEqual(roles(t, 0), { previous: a, current: b, next: -1 });
  const c = session(kps, 0, false, 3);
  assert.deepEqual(roles(t, 0), { previous: -1, current: b, next: c }, 'previous (a) dropped on a new responder session');
  assert.equal(t.keypairs.usable(a, Date.now()), false, 'a is unpublished');
  assert.equal(t.keypairs.canSend(c, Date.now()), false, 'an unconfirmed responder keypair does not send');
  assert.equal(t.peers.sendingKeypair(0, t.keypairs, Date.now()), b);
  // A second responder session before the first was confirmed replaces it.
  const d = session(kps, 0, false, 4);
  assert.deepEqual(roles(t, 0), { previous: -1, current: b, next: d });
  assert.equal(t.keypairs.usable(c, Date.now()), false, 'the unconfirmed next (c) is gone');
  assert.equal(confirm(t, kps, 0, c), false, 'a confirmation of a replaced keypair is ignored');
});

test('initiator: the new keypair is current at once; current becomes previous; an unconfirmed next becomes previous', () => {
  const { t, kps } = setup();
  const a = session(kps, 1, true, 1);
  assert.deepEqual(roles(t, 1), { previous: -1, current: a, next: -1 });
  const b = session(kps, 1, true, 2);
  assert.deepEqual(roles(t, 1), { previous: a, current: b, next: -1 });
  const c = session(kps, 1, true, 3);
  assert.deepEqual(roles(t, 1), { previous: b, current: c, next: -1 });
  assert.equal(t.keypairs.usable(a, Date.now()), false);
  const d = session(kps, 1, false, 4); // the peer initiated meanwhile
  assert.deepEqual(roles(t, 1), { previous: -1, current: c, next: d });
  const e = session(kps, 1, true, 5); // and our own initiation completed
  assert.deepEqual(roles(t, 1), { previous: d, current: e, next: -1 });
  assert.equal(t.keypairs.usable(c, Date.now()), false, 'the old current (c) is gone');
});

test('a peer never holds more than three slots: 1,000 mixed handshakes in a table of 4 slots (slot 0 unused)', () => {
  const { t, reclaimer, kps } = setup(4);
  for (let i = 0; i < 1000; i++) {
    const responder = i % 3 !== 0;
    const slot = session(kps, 2, !responder, i);
    if (responder && i % 2 === 0) assert.ok(confirm(t, kps, 2, slot));
    const r = roles(t, 2);
    const held = [r.previous, r.current, r.next].filter((s) => s >= 0);
    assert.ok(held.length <= 3, `round ${i}: ${JSON.stringify(r)}`);
    assert.equal(new Set(held).size, held.length, `round ${i}: distinct slots ${JSON.stringify(r)}`);
    reclaimer.poll(); // no worker holds anything here: retired slots come back
  }
});

test('a retired keypair is unpublished at once but its slot and keys wait for the quarantine', () => {
  const { t, reclaimer, kps } = setup(4);
  const a = session(kps, 0, true, 9);
  const indexA = kps.reserve(3); // hold a slot so the table is nearly full
  t.epochs.enter(0); // a worker is inside a batch and may be sealing with a
  kps.clearPeer(0);
  assert.equal(t.keypairs.usable(a, Date.now()), false, 'no new packet uses it');
  assert.ok(t.keypairs.sendKey(a).every((b) => b === 9), 'its keys stay while the worker may use them');
  assert.equal(reclaimer.poll(), 0);
  // The last free slot goes; then the table is full until the worker passes.
  assert.ok(kps.reserve(3) >= 0);
  assert.equal(kps.reserve(3), -1, 'the quarantined slot is not handed out');
  t.epochs.enter(0);
  assert.equal(reclaimer.poll(), 1);
  assert.ok(t.keypairs.sendKey(a).every((b) => b === 0), 'keys zeroed after the quarantine');
  const again = kps.reserve(3);
  assert.ok(again >= 0 && kps.slotOf(again) === a, 'the slot is reused only now');
  assert.ok(indexA >= 0);
});

/** The word index of keypair `kp`'s send counter, found by watching claims (the layout stays private to tables.ts). */
function counterWord(t: Tables, kp: number): { w: Int32Array; at: number } {
  const w = new Int32Array(t.desc.keypairs);
  const before = Int32Array.from(w);
  for (let i = 0; i < 5; i++) t.keypairs.claimCounter(kp);
  const at = w.findIndex((v, i) => v - before[i]! === 5);
  assert.ok(at >= 0, 'found the counter word');
  return { w, at };
}

test('claimCounter hands out every counter once and stops at SEND_COUNTER_LIMIT, never wrapping', () => {
  const { t, kps } = setup();
  const kp = session(kps, 0, true);
  assert.equal(t.keypairs.claimCounter(kp), 0);
  const { w, at } = counterWord(t, kp);
  assert.equal(t.keypairs.claimCounter(kp), 6);
  Atomics.store(w, at, (SEND_COUNTER_LIMIT - 3) | 0);
  assert.equal(t.keypairs.claimCounter(kp), SEND_COUNTER_LIMIT - 3);
  assert.equal(t.keypairs.claimCounter(kp), SEND_COUNTER_LIMIT - 2);
  assert.equal(t.keypairs.claimCounter(kp), SEND_COUNTER_LIMIT - 1);
  for (let i = 0; i < 100; i++) assert.equal(t.keypairs.claimCounter(kp), -1);
  assert.equal(t.keypairs.sendCounter(kp), SEND_COUNTER_LIMIT, 'the counter stays at the limit');
  // Past 2^31 the signed word is negative: the claim still compares unsigned.
  Atomics.store(w, at, 0x7fffffff);
  assert.equal(t.keypairs.claimCounter(kp), 0x7fffffff);
  assert.equal(t.keypairs.claimCounter(kp), 0x80000000);
});

test('claimCounter from four threads racing to the limit: no counter twice, none past the limit', async () => {
  const { t, kps } = setup();
  const kp = session(kps, 0, true);
  const { w, at } = counterWord(t, kp);
  const PER_RACE = 200_000;
  Atomics.store(w, at, (SEND_COUNTER_LIMIT - PER_RACE) | 0);
  const tablesUrl = new URL('../src/queues/tables.js', import.meta.url).href;
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(workerData.url).then(({ Tables }) => {
      const t = new Tables(workerData.desc);
      const got = [];
      for (;;) { const c = t.keypairs.claimCounter(workerData.kp); if (c < 0) break; got.push(c); }
      parentPort.postMessage(Float64Array.from(got));
    });`;
  const results = await Promise.all(Array.from({ length: 4 }, () => new Promise<Float64Array>((resolve, reject) => {
    const worker = new Worker(code, { eval: true, workerData: { url: tablesUrl, desc: t.desc, kp } });
    worker.once('message', (m: Float64Array) => {
      resolve(m);
      void worker.terminate();
    });
    worker.once('error', reject);
  })));
  const all = results.flatMap((r) => Array.from(r));
  assert.equal(all.length, PER_RACE, 'exactly the counters below the limit were claimed');
  assert.equal(new Set(all).size, all.length, 'no counter twice');
  assert.ok(all.every((c) => c >= SEND_COUNTER_LIMIT - PER_RACE && c < SEND_COUNTER_LIMIT));
  assert.equal(t.keypairs.sendCounter(kp), SEND_COUNTER_LIMIT);
});
