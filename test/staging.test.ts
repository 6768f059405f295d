// The bounds of a worker's staged packets (workers/staging.ts): MAX_STAGED_PACKETS per peer, the
// worker's own slots in total, entries that name their peer as (slot, generation) so that the
// data path's sweep drops a packet whose peer was removed (the generation moved on).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Staging, StagedFate } from '../src/workers/staging.js';
import { MAX_STAGED_PACKETS } from '../src/handshake/constants.js';

const slots = (n: number, first = 1000): number[] => Array.from({ length: n }, (_, i) => first + i);

function stage(s: Staging, peer: number, gen: number, nowMs = 0): boolean {
  const slot = s.take(peer);
  if (slot < 0) return false;
  s.add(slot, peer, gen, 100, nowMs);
  return true;
}

test('at most MAX_STAGED_PACKETS per peer; other peers still stage', () => {
  const s = new Staging(slots(1024), 8);
  let staged = 0;
  while (stage(s, 3, 1)) staged++;
  assert.equal(staged, MAX_STAGED_PACKETS);
  assert.equal(s.take(3), -1);
  assert.ok(stage(s, 4, 1), 'another peer is not affected');
  assert.equal(s.count, MAX_STAGED_PACKETS + 1);
});

test('at most the worker\'s own slots in total, and only slots it owns', () => {
  const owned = slots(256);
  const s = new Staging(owned, 10_000);
  const taken = new Set<number>();
  for (let peer = 0; peer < 10_000; peer++) {
    const slot = s.take(peer);
    if (slot < 0) continue;
    taken.add(slot);
    s.add(slot, peer, 1, 100, 0);
  }
  assert.equal(s.count, 256, 'a flood to 10,000 peers stages 256 packets');
  assert.equal(taken.size, 256);
  assert.ok([...taken].every((x) => owned.includes(x)));
});

test('a sweep that drops entries of a removed peer (generation changed) frees their slots at once', () => {
  const s = new Staging(slots(8), 4);
  const gens = [5, 7];
  stage(s, 0, 5);
  stage(s, 1, 7);
  stage(s, 0, 5);
  stage(s, 1, 7);
  // Peer 1 removed and its slot reused: its generation moved on.
  gens[1] = 8;
  const seen: number[] = [];
  s.sweep((_slot, peer, gen) => {
    seen.push(peer);
    return gen !== gens[peer] ? StagedFate.Drop : StagedFate.Keep;
  });
  assert.deepEqual(seen, [0, 1, 0, 1], 'visited in arrival order');
  assert.equal(s.count, 2);
  const left: number[] = [];
  s.sweep((_slot, peer) => (left.push(peer), StagedFate.Keep));
  assert.deepEqual(left, [0, 0], 'only the live peer\'s packets remain, in order');
  // Peer 1's per-peer count went back to zero: its new generation may stage its own packets.
  let staged = 0;
  while (staged < MAX_STAGED_PACKETS && stage(s, 1, 8)) staged++;
  assert.equal(staged, 6, 'bounded by the free slots (8 minus 2 kept), not by stale counts');
});

test('Sent entries leave the queue but their slots return only on release; Stop keeps the rest in order', () => {
  const s = new Staging(slots(4), 2);
  for (let i = 0; i < 4; i++) stage(s, 0, 1, i);
  assert.equal(s.take(1), -1, 'all four slots in use');
  const sent: number[] = [];
  s.sweep((slot, _peer, _gen, _len, time) => {
    if (time >= 2) return StagedFate.Stop;
    sent.push(slot);
    return StagedFate.Sent;
  });
  assert.equal(s.count, 2);
  assert.equal(s.take(1), -1, 'sent slots are still in flight');
  for (const slot of sent) s.release(slot);
  assert.ok(s.take(1) >= 0);
  const times: number[] = [];
  s.sweep((_slot, _peer, _gen, _len, time) => (times.push(time), StagedFate.Keep));
  assert.deepEqual(times, [2, 3]);
});
