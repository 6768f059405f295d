// The load generator's cheap initiations (src/loadgen/initiation.ts, macs.ts, timeouts.ts)
// against our own Noise responder: a precomputed initiation is the very message
// Noise.createInitiation writes with the same ephemeral and time, the responder accepts it, and
// both sides derive the same session keys; a client's consecutive initiations carry increasing
// timestamps even when the clock stands still, while a replayed one is refused; the macs
// verify with the responder's CookieChecker, cookie round included; stale timeout entries of a
// reused initiation are skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Noise, Handshake, HandshakeState, SessionKeys } from '../src/handshake/noise.js';
import { CookieChecker } from '../src/handshake/cookie.js';
import { writeTai64n } from '../src/handshake/tai64n.js';
import { publicKeyOf } from '../src/crypto/x25519.js';
import { INIT_LEN, INIT_MAC1, RESP_LEN, COOKIE_REPLY_LEN, readU32 } from '../src/handshake/messages.js';
import { Initiation, PrecomputedInitiations, STAMP_STEP_MS, nextStampMs, writeFresh, writeStamp } from '../src/loadgen/initiation.js';
import { ClientMacs } from '../src/loadgen/macs.js';
import { TimeoutQueue } from '../src/loadgen/timeouts.js';

/** A static identity: its private and public key and a Noise holding it. */
function identity(seed: number): { noise: Noise; publicKey: Uint8Array } {
  const priv = new Uint8Array(32).fill(seed);
  const noise = new Noise();
  noise.setPrivateKey(priv);
  return { noise, publicKey: noise.publicKey };
}

/** Ephemeral key pairs from a counter: the same sequence for two generators made alike. */
function countingEphemerals(start: number): (priv: Uint8Array, pub: Uint8Array) => void {
  let n = start;
  return (priv, pub) => {
    priv.fill(n++);
    publicKeyOf(pub, priv);
  };
}

const server = identity(0x51);
const client = identity(0x7c);

/** The responder's view of the client: a Handshake for its static key. */
function responderPeer(): Handshake {
  const hs = new Handshake(client.publicKey, 1);
  assert.ok(server.noise.precompute(hs));
  return hs;
}

/** The client's never-sent Handshake with DH(s_i, S_r), as the engine's Client keeps it. */
function clientStaticStatic(): Handshake {
  const hs = new Handshake(server.publicKey, 0);
  assert.ok(client.noise.precompute(hs));
  return hs;
}

test('a precomputed initiation is the message Noise.createInitiation writes with the same ephemeral and time', () => {
  const ss = clientStaticStatic();
  const pool = new PrecomputedInitiations(server.publicKey, 3, 2, countingEphemerals(40));
  // Filled in order, two per client: client 1's second ephemeral is key byte 40 + 2 * 1 + 1.
  for (let c = 0; c < 3; c++) assert.ok(pool.fill(c, client.noise, ss.precomputedStaticStatic));
  const fast = new Initiation(server.publicKey);
  const unixMs = Date.UTC(2026, 11, 3, 12, 0, 0, 123);
  pool.write(fast, 1, 1, 0xdeadbeef, unixMs);

  const reference = new Noise({ generateEphemeral: countingEphemerals(43) });
  reference.setPrivateKey(new Uint8Array(32).fill(0x7c));
  const slow = new Initiation(server.publicKey);
  assert.ok(writeFresh(reference, ss, ss.precomputedStaticStatic, slow, 0xdeadbeef, unixMs));

  assert.deepEqual(Buffer.from(fast.bytes.subarray(0, INIT_MAC1)), Buffer.from(slow.bytes.subarray(0, INIT_MAC1)));
  assert.deepEqual(Buffer.from(fast.hash), Buffer.from(slow.hash), 'hash after the timestamp');
  assert.deepEqual(Buffer.from(fast.chainKey), Buffer.from(slow.chainKey), 'chaining key');
  assert.deepEqual(Buffer.from(fast.localEphemeral), Buffer.from(slow.localEphemeral), 'the ephemeral private key, for the response');
  assert.deepEqual([fast.hs.state, fast.hs.localIndex], [HandshakeState.InitiationCreated, 0xdeadbeef]);
  pool.destroy();
});

test('the responder accepts a precomputed initiation and both sides derive the same session keys', () => {
  const ss = clientStaticStatic();
  const pool = new PrecomputedInitiations(server.publicKey, 1, 1);
  assert.ok(pool.fill(0, client.noise, ss.precomputedStaticStatic));
  const peer = responderPeer();
  const init = new Initiation(server.publicKey);
  let stampMs = -Infinity;
  for (let round = 0; round < 3; round++) {
    // The same ephemeral every round: only the timestamp and the sender index change.
    stampMs = nextStampMs(stampMs, Date.now());
    pool.write(init, 0, 0, 100 + round, stampMs);
    const consumed = server.noise.consumeInitiation(init.bytes, 1000 + 50 * round, (pk) => (Buffer.from(pk).equals(Buffer.from(client.publicKey)) ? peer : undefined));
    assert.ok(consumed.ok, `round ${round}: ${JSON.stringify(consumed)}`);
    assert.equal(peer.remoteIndex, 100 + round);
    const response = new Uint8Array(RESP_LEN);
    assert.ok(server.noise.createResponse(peer, 7 + round, response));
    const serverKeys = new SessionKeys();
    assert.ok(server.noise.beginSession(peer, serverKeys));

    const answered = client.noise.consumeResponse(response, (i) => (i === 100 + round ? init.hs : undefined));
    assert.ok(answered.ok, JSON.stringify(answered));
    const clientKeys = new SessionKeys();
    assert.ok(client.noise.beginSession(init.hs, clientKeys));
    assert.deepEqual(Buffer.from(clientKeys.sendKey), Buffer.from(serverKeys.receiveKey));
    assert.deepEqual(Buffer.from(clientKeys.receiveKey), Buffer.from(serverKeys.sendKey));
    assert.deepEqual([clientKeys.localIndex, clientKeys.remoteIndex, clientKeys.isInitiator], [100 + round, 7 + round, true]);
    assert.ok(!clientKeys.sendKey.every((b) => b === 0));
  }
  pool.destroy();
});

test('consecutive initiations of one client carry increasing timestamps, even with a clock that stands still; a replay is refused', () => {
  const ss = clientStaticStatic();
  const pool = new PrecomputedInitiations(server.publicKey, 1, 2);
  assert.ok(pool.fill(0, client.noise, ss.precomputedStaticStatic));
  const peer = responderPeer();
  const lookup = (): Handshake => peer;
  const frozen = Date.UTC(2026, 11, 3, 12, 0, 0, 990);
  let stampMs = -Infinity;
  let previous = new Uint8Array(12);
  const sent: Uint8Array[] = [];
  for (let k = 0; k < 6; k++) {
    stampMs = nextStampMs(stampMs, frozen);
    assert.equal(stampMs, frozen + k * STAMP_STEP_MS);
    const init = new Initiation(server.publicKey);
    pool.write(init, 0, k % 2, k, stampMs);
    sent.push(Uint8Array.from(init.bytes));
    // 30 ms apart on the responder's clock: not a flood.
    const r = server.noise.consumeInitiation(init.bytes, 1000 + 30 * k, lookup);
    assert.ok(r.ok, `initiation ${k}: ${JSON.stringify(r)}`);
    const stamp = Uint8Array.from(peer.lastTimestamp);
    assert.ok(Buffer.compare(Buffer.from(stamp), Buffer.from(previous)) > 0, `timestamp ${k} is later than the one before`);
    previous = stamp;
    peer.clear();
  }
  // (frozen is 10 ms before a second boundary: the stamps above crossed it.)
  const replay = server.noise.consumeInitiation(sent[3]!, 2000, lookup);
  assert.deepEqual(replay, { ok: false, reason: 'replay' });
  // A clock that moved on wins over the step.
  assert.equal(nextStampMs(frozen, frozen + 1000), frozen + 1000);
  pool.destroy();
});

test('stamps are those of tai64n.ts writeTai64n', () => {
  const a = new Uint8Array(12);
  const b = new Uint8Array(14);
  for (const ms of [0, 999, 1000, 1_700_000_000_123, Date.UTC(2026, 0, 1, 0, 0, 0, 16), Date.UTC(2106, 1, 7, 6, 28, 16, 1), Date.now()]) {
    writeTai64n(a, ms);
    writeStamp(b, 2, ms);
    assert.deepEqual(Buffer.from(b.subarray(2)), Buffer.from(a), `at ${ms}`);
  }
});

test('macs: mac1 always, mac2 once the cookie of a cookie reply is held; both verify with the responder', () => {
  const checker = new CookieChecker();
  checker.setPublicKey(server.publicKey);
  const macs = new ClientMacs(server.publicKey, 4);
  const ss = clientStaticStatic();
  const init = new Initiation(server.publicKey);
  assert.ok(writeFresh(client.noise, ss, ss.precomputedStaticStatic, init, 9, Date.now()));
  macs.add(init, 2, 1000);
  assert.ok(checker.checkMac1(init.bytes, INIT_LEN));
  assert.ok(init.mac2.every((b) => b === 0), 'no cookie yet: mac2 is zeros');
  assert.ok(!macs.hasCookie(2, 1000));

  const source = Uint8Array.of(10, 99, 1, 7, 0xca, 0xfe);
  const reply = new Uint8Array(COOKIE_REPLY_LEN);
  checker.createReply(reply, init.bytes, INIT_LEN, readU32(init.bytes, 4), source, 1000);
  const tampered = Uint8Array.from(reply);
  tampered[40]! ^= 1;
  assert.ok(!macs.consumeReply(tampered, init, 2, 1001));
  assert.ok(macs.consumeReply(reply, init, 2, 1001));
  assert.ok(macs.hasCookie(2, 1001) && !macs.hasCookie(1, 1001), 'the cookie is client 2\'s alone');
  macs.add(init, 2, 1002);
  assert.ok(checker.checkMac1(init.bytes, INIT_LEN));
  assert.ok(checker.checkMac2(init.bytes, INIT_LEN, source, 1002), 'mac2 with the cookie');
  assert.ok(!checker.checkMac2(init.bytes, INIT_LEN, Uint8Array.of(10, 99, 1, 8, 0xca, 0xfe), 1002), 'bound to the source address');
  // Two minutes on, the cookie is stale and mac2 goes back to zeros.
  macs.add(init, 2, 1001 + 120_001);
  assert.ok(init.mac2.every((b) => b === 0));
  macs.destroy();
});

test('timeouts leave in send order, stale entries of a reused initiation are skipped, and the ring grows in order', () => {
  const q = new TimeoutQueue<{ generation: number; id: number }>();
  assert.equal(q.oldestMs(), Infinity);
  assert.equal(q.shift(), undefined);
  const items = Array.from({ length: 3000 }, (_, id) => ({ generation: 0, id }));
  for (const it of items) q.push(it, it.id);
  // Item 5 answered and reused for a later initiation: its first entry is stale.
  items[5]!.generation++;
  q.push(items[5]!, 5000);
  const out: number[] = [];
  while (q.oldestMs() <= 2999) {
    const it = q.shift();
    if (it !== undefined) out.push(it.id);
  }
  assert.deepEqual(out, items.map((it) => it.id).filter((id) => id !== 5));
  assert.equal(q.oldestMs(), 5000);
  assert.equal(q.shift()?.id, 5);
  assert.equal(q.length, 0);
});
