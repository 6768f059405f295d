// The slot quarantine of issue 12: a peer or keypair slot unpublished by the main thread is
// released only once every worker has crossed a batch boundary since (queues/epoch.ts,
// device/reclaim.ts), the role of RCU's grace period in the kernel.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EpochDomain } from '../src/queues/epoch.js';
import { Reclaimer } from '../src/device/reclaim.js';

function setup(workers = 2): { domain: EpochDomain; reclaimer: Reclaimer; released: string[]; retire: (name: string) => void } {
  const domain = new EpochDomain(EpochDomain.createBuffer(workers), workers);
  const reclaimer = new Reclaimer(domain);
  const released: string[] = [];
  return { domain, reclaimer, released, retire: (name) => reclaimer.retire(() => released.push(name)) };
}

test('a slot retired while a worker announces an older epoch waits until that worker enters a newer one', () => {
  const { domain, reclaimer, released, retire } = setup();
  domain.enter(0); // worker 0 is in a batch that began before the unpublish
  retire('kp7');
  assert.equal(reclaimer.poll(), 0);
  assert.deepEqual(released, [], 'worker 0 may still hold the slot');
  assert.equal(reclaimer.pending, 1);
  // Still in the same batch: nothing changes however often the main thread polls.
  for (let i = 0; i < 10; i++) reclaimer.poll();
  assert.deepEqual(released, []);
  domain.enter(0); // next batch: it reads the tables afresh
  assert.equal(reclaimer.poll(), 1);
  assert.deepEqual(released, ['kp7']);
  assert.equal(reclaimer.pending, 0);
});

test('a worker that quiesces (parks) releases what waited for it', () => {
  const { domain, reclaimer, released, retire } = setup();
  domain.enter(0);
  domain.enter(1);
  retire('peer3');
  reclaimer.seal();
  domain.enter(1); // worker 1 passes, worker 0 still holds
  reclaimer.poll();
  assert.deepEqual(released, []);
  domain.quiesce(0);
  reclaimer.poll();
  assert.deepEqual(released, ['peer3']);
});

test('workers that hold nothing do not delay a release', () => {
  const { reclaimer, released, retire } = setup();
  retire('a');
  assert.equal(reclaimer.poll(), 1);
  assert.deepEqual(released, ['a']);
});

test('a worker that entered after the unpublish (a newer epoch) does not delay it', () => {
  const { domain, reclaimer, released, retire } = setup();
  domain.enter(0);
  retire('a');
  reclaimer.seal();
  domain.enter(0); // announces the epoch begun after the unpublish
  domain.enter(1);
  reclaimer.poll();
  assert.deepEqual(released, ['a']);
});

test('releases run in retirement order; a later group waits for its own grace period', () => {
  const { domain, reclaimer, released, retire } = setup();
  domain.enter(0);
  retire('first');
  retire('second'); // same group, same epoch
  reclaimer.seal();
  domain.enter(1); // worker 1 in a batch of the new epoch
  retire('third'); // a new group: waits for worker 1 too
  reclaimer.poll();
  assert.deepEqual(released, []);
  domain.enter(0);
  reclaimer.poll();
  assert.deepEqual(released, ['first', 'second'], 'worker 1 announced the epoch of the first group but not the next');
  domain.enter(1);
  reclaimer.poll();
  assert.deepEqual(released, ['first', 'second', 'third']);
});

test('reclaimNow gives up after a bounded spin while a worker holds on, and drainAll releases everything', () => {
  const { domain, reclaimer, released, retire } = setup();
  domain.enter(1);
  retire('a');
  const t0 = Date.now();
  assert.equal(reclaimer.reclaimNow(), false);
  assert.ok(Date.now() - t0 < 1000, 'the spin is bounded');
  assert.deepEqual(released, []);
  reclaimer.drainAll(); // workers stopped
  assert.deepEqual(released, ['a']);
  assert.equal(reclaimer.pending, 0);
  assert.equal(reclaimer.reclaimNow(), false, 'nothing pending');
});

test('many retirements: none released early, all released once workers pass', () => {
  const { domain, reclaimer, released, retire } = setup(3);
  domain.enter(2);
  for (let i = 0; i < 5000; i++) {
    retire(`s${i}`);
    if (i % 7 === 0) reclaimer.seal();
    reclaimer.poll();
  }
  assert.equal(released.length, 0, 'worker 2 still holds a reference from before the first');
  domain.quiesce(2);
  reclaimer.poll();
  assert.equal(released.length, 5000);
  assert.deepEqual(released, Array.from({ length: 5000 }, (_, i) => `s${i}`));
});
