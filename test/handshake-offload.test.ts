// The handshake offload pool (src/handshake/offload.ts) with real piscina threads, no sockets:
// batches come back prepared exactly as the main thread would have opened them, tampered
// messages come back rejected, a key change marks batches queued under the old key stale, and
// the bounded queue refuses what is over capacity. Idle threads take a key change without a
// task; a pool whose threads throw or hang (WGTS_TEST_FAULT) goes down once, says so once, and
// comes back when a new one works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Handshake, SessionKeys } from '../src/handshake/noise.js';
import { HandshakeOffload, FAILURES_BEFORE_DOWN, TASK_TIMEOUT_MS, type PrepareBatch } from '../src/handshake/offload.js';
import { BATCH_MAX, TEST_FAULT_ENV } from '../src/handshake/prepare-batch.js';
import { INIT_LEN, RESP_LEN, INIT_STATIC } from '../src/handshake/messages.js';
import { identity } from './helpers.js';
import { EndpointTable, parseEndpoint } from '../src/net/endpoint.js';

/** An offload whose finished batches arrive through a queue of promises. */
function pool(capacity = 1024): { offload: HandshakeOffload; next: () => Promise<{ batch: PrepareBatch; current: boolean; copy: Uint8Array[] }> } {
  const waiting: ((v: { batch: PrepareBatch; current: boolean; copy: Uint8Array[] }) => void)[] = [];
  const ready: { batch: PrepareBatch; current: boolean; copy: Uint8Array[] }[] = [];
  const offload = new HandshakeOffload({
    threads: 1,
    capacity,
    // The prepared outputs are wiped after `done` returns: keep copies to check.
    done: (batch, current) => {
      const v = { batch, current, copy: Array.from({ length: batch.count }, (_, i) => batch.prepared(i).slice()) };
      const w = waiting.shift();
      if (w) w(v);
      else ready.push(v);
    },
    failed: (_count, err) => { throw err; },
    health: (healthy, why) => assert.fail(`health ${healthy}: ${why}`),
  });
  const next = () => new Promise<{ batch: PrepareBatch; current: boolean; copy: Uint8Array[] }>((resolve) => {
    const v = ready.shift();
    if (v) resolve(v);
    else waiting.push(resolve);
  });
  return { offload, next };
}

const from = new EndpointTable(1);
parseEndpoint('192.0.2.7:5555', from, 0);

test('initiations prepared in the pool complete handshakes the initiator accepts', async () => {
  const server = identity();
  const { offload, next } = pool();
  try {
    offload.setPrivateKey(server.priv);
    const clients = Array.from({ length: BATCH_MAX + 3 }, () => identity());
    const inits = clients.map((c, i) => {
      const hs = new Handshake(server.pub, i);
      const msg = new Uint8Array(INIT_LEN);
      assert.ok(c.noise.createInitiation(hs, 100 + i, Date.now(), msg));
      return { hs, msg };
    });
    for (const { msg } of inits) assert.ok(offload.add(msg, from, 0));
    assert.equal(offload.inFlight, clients.length);
    // A full batch goes at once, the rest when this turn ends: two batches in all.
    const first = await next();
    const second = await next();
    assert.equal(first.batch.count + second.batch.count, clients.length);
    assert.equal(offload.inFlight, 0);
    let i = 0;
    for (const { batch, current, copy } of [first, second]) {
      assert.ok(current);
      for (let k = 0; k < batch.count; k++, i++) {
        assert.equal(batch.rejection(k), undefined);
        assert.deepEqual(batch.message(k), inits[i]!.msg, 'the message comes back with its result');
        assert.equal(batch.from.port[k], 5555);
        const peerHs = new Handshake(clients[i]!.pub, i);
        const r = server.noise.consumePrepared(batch.message(k), copy[k]!, 1000, (pk) => (Buffer.compare(pk, clients[i]!.pub) === 0 ? peerHs : undefined));
        assert.ok(r.ok, `initiation ${i}`);
        const resp = new Uint8Array(RESP_LEN);
        assert.ok(server.noise.createResponse(peerHs, 900 + i, resp, copy[k]));
        const ks = new SessionKeys();
        assert.ok(server.noise.beginSession(peerHs, ks));
        assert.ok(clients[i]!.noise.consumeResponse(resp, () => inits[i]!.hs).ok, `client ${i} accepts the response`);
        const kc = new SessionKeys();
        assert.ok(clients[i]!.noise.beginSession(inits[i]!.hs, kc));
        assert.deepEqual(kc.sendKey, ks.receiveKey);
      }
    }
  } finally {
    await offload.close();
  }
});

test('a tampered initiation comes back rejected, a key change marks queued batches stale, and the queue is bounded', async () => {
  const server = identity();
  const client = identity();
  const { offload, next } = pool(2);
  try {
    offload.setPrivateKey(server.priv);
    const msg = new Uint8Array(INIT_LEN);
    assert.ok(client.noise.createInitiation(new Handshake(server.pub, 0), 1, Date.now(), msg));
    const bad = msg.slice();
    bad[INIT_STATIC]! ^= 0x80;
    assert.ok(offload.add(bad, from, 0));
    assert.ok(offload.add(msg, from, 0));
    assert.equal(offload.add(msg, from, 0), false, 'over capacity');
    assert.equal(offload.add(msg.subarray(1), from, 0), false, 'not an initiation');
    const r1 = await next();
    assert.equal(r1.batch.rejection(0), 'decrypt');
    assert.equal(r1.batch.rejection(1), undefined);
    assert.ok(r1.copy[0]!.every((b) => b === 0), 'nothing prepared for a rejected message');

    assert.ok(offload.add(msg, from, 0));
    offload.setPrivateKey(identity().priv);
    const r2 = await next();
    assert.equal(r2.current, false, 'queued under the old key');
    assert.ok(offload.add(msg, from, 0));
    const r3 = await next();
    assert.ok(r3.current);
    assert.equal(r3.batch.rejection(0), 'decrypt', 'the pool uses the new key');
  } finally {
    await offload.close();
  }
});

test('the backlog counts initiations waiting for a thread, not the batch a thread is working on', async () => {
  const server = identity();
  const client = identity();
  const { offload, next } = pool();
  try {
    offload.setPrivateKey(server.priv);
    const msg = new Uint8Array(INIT_LEN);
    assert.ok(client.noise.createInitiation(new Handshake(server.pub, 0), 1, Date.now(), msg));
    for (let i = 0; i < 3 * BATCH_MAX + 5; i++) assert.ok(offload.add(msg, from, 0));
    // One thread: the first full batch runs, two wait, and 5 sit in the batch being filled.
    assert.equal(offload.backlog(), 2 * BATCH_MAX + 5);
    let seen = 0;
    while (seen < 3 * BATCH_MAX + 5) seen += (await next()).batch.count;
    assert.equal(offload.backlog(), 0);
    assert.equal(offload.inFlight, 0);
  } finally {
    await offload.close();
  }
});

/** Polls `cond` every 5 ms until it holds or `ms` pass. */
async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('every idle thread takes a key change, and wipes its copy on removal, without being given a task', async () => {
  const { offload } = pool();
  const two = new HandshakeOffload({ threads: 2, capacity: 64, done: () => {}, failed: () => {}, health: () => {} });
  try {
    for (const o of [offload, two]) {
      o.setPrivateKey(identity().priv);
      await until('the threads to take the first key', () => o.keyTaken());
      o.setPrivateKey(identity().priv);
      await until('the threads to take the new key', () => o.keyTaken(), 1000);
      o.setPrivateKey(null);
      await until('the threads to wipe the key', () => o.keyTaken(), 1000);
    }
  } finally {
    await offload.close();
    await two.close();
  }
});

/** An offload with a test fault in its threads, recording what it reports. */
function faulty(fault: string, retryFirstMs = 60_000): { offload: HandshakeOffload; failed: number[]; health: [boolean, string][]; done: PrepareBatch[] } {
  const failed: number[] = [];
  const health: [boolean, string][] = [];
  const done: PrepareBatch[] = [];
  process.env[TEST_FAULT_ENV] = fault;
  try {
    const offload = new HandshakeOffload({
      threads: 1, capacity: 1024, retryFirstMs,
      done: (b) => void done.push(b),
      failed: (count) => void failed.push(count),
      health: (healthy, why) => void health.push([healthy, why]),
    });
    offload.setPrivateKey(identity().priv);
    return { offload, failed, health, done };
  } finally {
    // Threads copy the environment when they start: a pool started later runs clean.
    delete process.env[TEST_FAULT_ENV];
  }
}

function initiation(): Uint8Array {
  const msg = new Uint8Array(INIT_LEN);
  assert.ok(identity().noise.createInitiation(new Handshake(identity().pub, 0), 1, Date.now(), msg));
  return msg;
}

test('a pool whose batches throw goes down after a few, says so once, and comes back when a new pool works', async () => {
  const { offload, failed, health, done } = faulty('pool-throw', 300);
  try {
    const msg = initiation();
    for (let i = 0; i < FAILURES_BEFORE_DOWN; i++) {
      assert.ok(offload.healthy);
      assert.ok(offload.add(msg, from, 0));
      await until(`batch ${i} to fail`, () => failed.length === i + 1);
    }
    assert.equal(offload.healthy, false, 'down after repeated failures');
    assert.equal(offload.add(msg, from, 0), false, 'nothing goes to a pool that is down');
    assert.equal(offload.inFlight, 0);
    assert.equal(health.length, 1);
    assert.equal(health[0]![0], false);
    assert.match(health[0]![1], /in a row failed.*pool-throw/);
    // The retry starts a new pool, whose threads no longer have the fault.
    await until('the retry', () => offload.healthy);
    assert.ok(offload.add(msg, from, 0));
    await until('a batch prepared by the new pool', () => done.length === 1);
    assert.deepEqual(health[1], [true, 'a batch was prepared again']);
    assert.equal(health.length, 2);
  } finally {
    await offload.close();
  }
});

test(`a hung pool thread is cut after ${TASK_TIMEOUT_MS} ms and the pool goes down at once`, async () => {
  const { offload, failed, health } = faulty('pool-hang');
  try {
    await until('the thread to take the key', () => offload.keyTaken());
    const started = Date.now();
    for (let i = 0; i < 3; i++) assert.ok(offload.add(initiation(), from, 0));
    await until('the hung batch to time out', () => !offload.healthy, 3 * TASK_TIMEOUT_MS);
    const ms = Date.now() - started;
    assert.ok(ms >= TASK_TIMEOUT_MS - 50 && ms < TASK_TIMEOUT_MS + 1500, `down after ${ms} ms`);
    await until('its initiations to be given up', () => offload.inFlight === 0);
    assert.equal(failed.reduce((a, b) => a + b, 0), 3);
    assert.equal(health.length, 1);
    assert.match(health[0]![1], new RegExp(`longer than ${TASK_TIMEOUT_MS} ms`));
  } finally {
    // close() must not wait on the hung thread for ever.
    await offload.close();
  }
});
