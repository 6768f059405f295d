// SlotPool hands out slots in the order a stack of every slot would: never-used ones in order,
// freed ones last-freed first, -1 when full.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SlotPool } from '../src/device/slots.js';

test('slots come in order, freed ones first (last freed first), then -1 when all are taken', () => {
  const p = new SlotPool(1, 5);
  assert.deepEqual([p.take(), p.take(), p.take()], [1, 2, 3]);
  p.give(2);
  p.give(1);
  assert.deepEqual([p.take(), p.take(), p.take(), p.take()], [1, 2, 4, -1]);
  p.give(3);
  assert.deepEqual([p.take(), p.take()], [3, -1]);
});
