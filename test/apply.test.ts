// The order in which a `set` reaches the device through SetSteps (src/device/apply.ts), whatever
// the step budget: replaced peers first, then afterReplace once, then each section and its
// allowed IPs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SetSteps, type SetTarget } from '../src/device/apply.js';
import type { PeerOps } from '../src/uapi/peerops.js';
import { parseSetRequest } from '../src/uapi/protocol.js';

const K = (n: number): string => n.toString(16).padStart(64, '0');

function record(replaced: number[], body: string, budgetMs: number): string[] {
  const calls: string[] = [];
  const target: SetTarget<number> = {
    removePeer: (p) => void calls.push(`remove ${p}`),
    isCurrent: () => true,
    afterReplace: (sections) => void calls.push(`afterReplace ${sections}`),
    applySection: (ops: PeerOps, i: number) => {
      calls.push(`section ${i}`);
      return ops.removes(i) ? undefined : i;
    },
    applyAllowedIp: (peer, ops, j) => void calls.push(`ip ${peer} /${ops.allowedIpCidr(j)}`),
  };
  const { errno, request } = parseSetRequest(body);
  assert.equal(errno, 0);
  const steps = new SetSteps(request.peers, replaced, target);
  while (!steps.step(budgetMs));
  return calls;
}

test('replaced peers go first, then afterReplace with the number of sections, then the sections in order', () => {
  const body = `public_key=${K(1)}\nallowed_ip=10.0.0.1/32\nallowed_ip=10.0.0.2/31\npublic_key=${K(2)}\nremove=true\n`;
  const expected = ['remove 7', 'remove 8', 'afterReplace 2', 'section 0', 'ip 0 /32', 'ip 0 /31', 'section 1'];
  // A budget of 0 ends a step at every clock read: the order must not depend on where steps end.
  for (const budget of [Infinity, 0]) assert.deepEqual(record([7, 8], body, budget), expected, `budget ${budget}`);
});

test('without replace_peers there is no afterReplace', () => {
  assert.deepEqual(record([], `public_key=${K(1)}\n`, Infinity), ['section 0']);
});
