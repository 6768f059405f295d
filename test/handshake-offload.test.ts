// The handshake offload pool (src/handshake/offload.ts) with real piscina threads, no sockets:
// batches come back prepared exactly as the main thread would have opened them, tampered
// messages come back rejected, a key change marks batches queued under the old key stale, and
// the bounded queue refuses what is over capacity.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Handshake, SessionKeys } from '../src/handshake/noise.js';
import { HandshakeOffload, type PrepareBatch } from '../src/handshake/offload.js';
import { BATCH_MAX } from '../src/handshake/prepare-batch.js';
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
