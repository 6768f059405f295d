import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Noise, Handshake, SessionKeys, HandshakeState, PREPARED_BYTES } from '../src/handshake/noise.js';
import { CookieChecker, CookieGenerator, underLoad, COOKIE_REFRESH_TIME_MS } from '../src/handshake/cookie.js';
import { writeTai64n, tai64nAfter } from '../src/handshake/tai64n.js';
import {
  INIT_LEN, RESP_LEN, COOKIE_REPLY_LEN, INIT_MAC1, INIT_MAC2, RESP_MAC1, MSG_INITIATION, MSG_RESPONSE,
  MSG_COOKIE_REPLY, MSG_DATA, messageType, readU32, INIT_SENDER,
} from '../src/handshake/messages.js';
import { clamp, publicKeyOf } from '../src/crypto/x25519.js';
import { seal, open, CounterNonce } from '../src/crypto/aead.js';
import { identity } from './helpers.js';

interface Side { noise: Noise; pub: Uint8Array; hs: Handshake; cookies: CookieGenerator; checker: CookieChecker }

function pair(psk?: Uint8Array): { a: Side; b: Side } {
  const x = identity();
  const y = identity();
  const side = (me: typeof x, them: typeof x, peer: number): Side => {
    const hs = new Handshake(them.pub, peer);
    if (psk) hs.presharedKey.set(psk);
    assert.ok(me.noise.precompute(hs));
    const checker = new CookieChecker();
    checker.setPublicKey(me.pub);
    return { ...me, hs, cookies: new CookieGenerator(them.pub), checker };
  };
  return { a: side(x, y, 1), b: side(y, x, 2) };
}

function handshake(a: Side, b: Side, now = 1000): { ka: SessionKeys; kb: SessionKeys } {
  const init = new Uint8Array(INIT_LEN);
  assert.ok(a.noise.createInitiation(a.hs, 0x11111111, Date.now(), init));
  a.cookies.addMacs(init, INIT_LEN, now);
  assert.equal(messageType(init, 0, INIT_LEN), MSG_INITIATION);
  assert.ok(b.checker.checkMac1(init, INIT_LEN));
  const r1 = b.noise.consumeInitiation(init, now, (pk) => (Buffer.compare(pk, b.hs.remoteStatic) === 0 ? b.hs : undefined));
  assert.ok(r1.ok, JSON.stringify(r1));
  const resp = new Uint8Array(RESP_LEN);
  assert.ok(b.noise.createResponse(b.hs, 0x22222222, resp));
  b.cookies.addMacs(resp, RESP_LEN, now);
  assert.ok(a.checker.checkMac1(resp, RESP_LEN));
  const r2 = a.noise.consumeResponse(resp, (i) => (i === a.hs.localIndex ? a.hs : undefined));
  assert.ok(r2.ok, JSON.stringify(r2));
  const ka = new SessionKeys();
  const kb = new SessionKeys();
  assert.ok(a.noise.beginSession(a.hs, ka));
  assert.ok(b.noise.beginSession(b.hs, kb));
  return { ka, kb };
}

test('initiator and responder derive mirrored transport keys', () => {
  for (const psk of [undefined, Uint8Array.from({ length: 32 }, (_, i) => i + 1)]) {
    const { a, b } = pair(psk);
    const { ka, kb } = handshake(a, b);
    assert.deepEqual(ka.sendKey, kb.receiveKey);
    assert.deepEqual(ka.receiveKey, kb.sendKey);
    assert.notDeepEqual(ka.sendKey, ka.receiveKey);
    assert.equal(ka.isInitiator, true);
    assert.equal(kb.isInitiator, false);
    assert.equal(ka.localIndex, 0x11111111);
    assert.equal(ka.remoteIndex, 0x22222222);
    assert.equal(kb.localIndex, 0x22222222);
    assert.equal(kb.remoteIndex, 0x11111111);
    // Handshake state is wiped once the session exists.
    assert.equal(a.hs.state, HandshakeState.Zeroed);
    assert.ok(a.hs.chainKey.every((x) => x === 0) && b.hs.hash.every((x) => x === 0));
    const nonce = new CounterNonce().set(0, 0);
    const msg = new TextEncoder().encode('ping');
    const sealed = new Uint8Array(msg.length + 16);
    seal(sealed, msg, undefined, nonce, ka.sendKey);
    const out = new Uint8Array(msg.length);
    assert.ok(open(out, sealed, undefined, nonce, kb.receiveKey));
    assert.deepEqual(out, msg);
  }
});

test('mismatched preshared keys fail at the response', () => {
  const { a, b } = pair();
  b.hs.presharedKey.fill(9);
  const init = new Uint8Array(INIT_LEN);
  a.noise.createInitiation(a.hs, 1, Date.now(), init);
  assert.ok(b.noise.consumeInitiation(init, 0, () => b.hs).ok);
  const resp = new Uint8Array(RESP_LEN);
  b.noise.createResponse(b.hs, 2, resp);
  const r = a.noise.consumeResponse(resp, () => a.hs);
  assert.deepEqual(r, { ok: false, reason: 'decrypt' });
  assert.equal(a.hs.state, HandshakeState.InitiationCreated, 'a forged response leaves the handshake in flight');
});

test('replayed initiations and floods are rejected', () => {
  const { a, b } = pair();
  const init = new Uint8Array(INIT_LEN);
  const t0 = Date.now();
  a.noise.createInitiation(a.hs, 1, t0, init);
  const lookup = (): Handshake => b.hs;
  assert.ok(b.noise.consumeInitiation(init, 0, lookup).ok);
  assert.deepEqual(b.noise.consumeInitiation(init, 1000, lookup), { ok: false, reason: 'replay' });
  const init2 = new Uint8Array(INIT_LEN);
  a.noise.createInitiation(a.hs, 1, t0 + 1000, init2);
  assert.deepEqual(b.noise.consumeInitiation(init2, 10, lookup), { ok: false, reason: 'flood' });
  assert.ok(b.noise.consumeInitiation(init2, 1000, lookup).ok);
});

test('unknown peers and a missing private key are rejected', () => {
  const { a, b } = pair();
  const init = new Uint8Array(INIT_LEN);
  a.noise.createInitiation(a.hs, 1, Date.now(), init);
  assert.deepEqual(b.noise.consumeInitiation(init, 0, () => undefined), { ok: false, reason: 'unknown-peer' });
  const resp = new Uint8Array(RESP_LEN);
  assert.equal(b.noise.createResponse(b.hs, 2, resp), false, 'no response without a consumed initiation');
  assert.deepEqual(a.noise.consumeResponse(resp, () => undefined), { ok: false, reason: 'unknown-peer' });
  const bare = new Noise();
  assert.equal(bare.createInitiation(a.hs, 1, Date.now(), init), false);
  assert.deepEqual(bare.consumeInitiation(init, 0, () => b.hs), { ok: false, reason: 'state' });
});

test('flipping any bit of an initiation or response makes it fail a check', () => {
  const { a, b } = pair();
  const init = new Uint8Array(INIT_LEN);
  a.noise.createInitiation(a.hs, 7, Date.now(), init);
  a.cookies.addMacs(init, INIT_LEN, 0);
  for (let bit = 0; bit < INIT_MAC2 * 8; bit++) {
    const m = init.slice();
    m[bit >> 3]! ^= 1 << (bit & 7);
    const typeOk = messageType(m, 0, INIT_LEN) === MSG_INITIATION;
    const mac1Ok = b.checker.checkMac1(m, INIT_LEN);
    assert.ok(!typeOk || !mac1Ok, `bit ${bit} passed the type and mac1 checks`);
  }
  // Past mac1, Noise itself catches every flip of the ephemeral, static or timestamp fields.
  for (let bit = 8 * 8; bit < INIT_MAC1 * 8; bit += 3) {
    const m = init.slice();
    m[bit >> 3]! ^= 1 << (bit & 7);
    const fresh = new Handshake(a.pub, 1);
    b.noise.precompute(fresh);
    const r = b.noise.consumeInitiation(m, 0, () => fresh);
    assert.equal(r.ok, false, `bit ${bit}`);
  }
  assert.ok(b.noise.consumeInitiation(init, 0, () => b.hs).ok);
  const resp = new Uint8Array(RESP_LEN);
  b.noise.createResponse(b.hs, 9, resp);
  b.cookies.addMacs(resp, RESP_LEN, 0);
  for (let bit = 0; bit < RESP_MAC1 * 8; bit++) {
    const m = resp.slice();
    m[bit >> 3]! ^= 1 << (bit & 7);
    assert.equal(a.checker.checkMac1(m, RESP_LEN), false, `bit ${bit}`);
  }
});

test('malformed datagrams get a typed rejection from messageType, never an exception', () => {
  const sizes = [0, 1, 3, 4, 31, 32, 63, 64, 65, 91, 92, 93, 147, 148, 149, 1500];
  for (const len of sizes) {
    for (const type of [0, 1, 2, 3, 4, 5, 255]) {
      const m = new Uint8Array(Math.max(len, 4));
      m[0] = type;
      const t = messageType(m, 0, len);
      const valid = (type === 1 && len === 148) || (type === 2 && len === 92) || (type === 3 && len === 64) || (type === 4 && len >= 32);
      assert.equal(t, valid ? type : 0, `type ${type} len ${len}`);
      m[1] = 1;
      assert.equal(messageType(m, 0, len), 0);
    }
  }
  const { a, b } = pair();
  for (let i = 0; i < 200; i++) {
    const junk = Uint8Array.from({ length: INIT_LEN }, () => (Math.random() * 256) | 0);
    assert.equal(b.noise.consumeInitiation(junk, 0, () => b.hs).ok, false);
    assert.equal(a.noise.consumeResponse(junk.subarray(0, RESP_LEN), () => a.hs).ok, false);
  }
});

test('cookie reply round trip: mac2 is demanded, issued, and then accepted', () => {
  const { a, b } = pair();
  const source = Uint8Array.of(192, 0, 2, 1, 0xca, 0x6c);
  const init = new Uint8Array(INIT_LEN);
  a.noise.createInitiation(a.hs, 0xabcdef01, Date.now(), init);
  a.cookies.addMacs(init, INIT_LEN, 0);
  assert.ok(b.checker.checkMac1(init, INIT_LEN));
  assert.equal(b.checker.checkMac2(init, INIT_LEN, source, 0), false, 'no cookie yet');

  const reply = new Uint8Array(COOKIE_REPLY_LEN);
  b.checker.createReply(reply, init, INIT_LEN, readU32(init, INIT_SENDER), source, 0);
  assert.equal(messageType(reply, 0, COOKIE_REPLY_LEN), MSG_COOKIE_REPLY);
  assert.equal(readU32(reply, 4), 0xabcdef01);
  const tampered = reply.slice();
  tampered[40]! ^= 0x80;
  assert.equal(a.cookies.consumeReply(tampered, 5), false);
  assert.ok(a.cookies.consumeReply(reply, 5));

  a.cookies.addMacs(init, INIT_LEN, 10);
  assert.ok(b.checker.checkMac1(init, INIT_LEN));
  assert.ok(b.checker.checkMac2(init, INIT_LEN, source, 10));
  assert.equal(b.checker.checkMac2(init, INIT_LEN, Uint8Array.of(192, 0, 2, 2, 0xca, 0x6c), 10), false, 'other source');
  const m = init.slice();
  m[INIT_MAC2]! ^= 1;
  assert.equal(b.checker.checkMac2(m, INIT_LEN, source, 10), false, 'flipped mac2');
  m[INIT_MAC2]! ^= 1;
  m[20]! ^= 1;
  assert.equal(b.checker.checkMac1(m, INIT_LEN), false, 'flipped body');
  assert.equal(b.checker.checkMac2(m, INIT_LEN, source, 10), false, 'flipped body');
  // The secret expires after two minutes, and the initiator's cookie too.
  assert.equal(b.checker.checkMac2(init, INIT_LEN, source, COOKIE_REFRESH_TIME_MS + 1), false);
  a.cookies.addMacs(init, INIT_LEN, COOKIE_REFRESH_TIME_MS + 10);
  assert.ok(init.subarray(INIT_MAC2).every((x) => x === 0));
});

test('a cookie reply without a prior message or for another message is refused', () => {
  const { a, b } = pair();
  const init = new Uint8Array(INIT_LEN);
  a.noise.createInitiation(a.hs, 1, Date.now(), init);
  const fresh = new CookieGenerator(b.pub);
  const reply = new Uint8Array(COOKIE_REPLY_LEN);
  b.checker.createReply(reply, init, INIT_LEN, 1, Uint8Array.of(1, 2, 3, 4, 5, 6), 0);
  assert.equal(fresh.consumeReply(reply, 0), false);
  a.cookies.addMacs(init, INIT_LEN, 0); // a different mac1 than the reply was bound to
  assert.equal(a.cookies.consumeReply(reply, 0), false);
});

test('under load: 1/8 of the queue, and for one second after', () => {
  const state = { untilMs: 0 };
  assert.equal(underLoad(state, 127, 1024, 1000), false);
  assert.equal(underLoad(state, 128, 1024, 1000), true);
  assert.equal(underLoad(state, 0, 1024, 1999), true);
  assert.equal(underLoad(state, 0, 1024, 2000), false);
});

test('TAI64N timestamps are ordered and whitened', () => {
  const a = new Uint8Array(12);
  const b = new Uint8Array(12);
  writeTai64n(a, 1_700_000_000_000);
  writeTai64n(b, 1_700_000_000_005);
  assert.equal(tai64nAfter(b, a), false, 'within 2^24 ns the timestamps are equal');
  writeTai64n(b, 1_700_000_000_020);
  assert.equal(tai64nAfter(b, a), true);
  assert.equal(Buffer.from(a.subarray(0, 8)).readBigUInt64BE(), 2n ** 62n + 1_700_000_000n);
  assert.equal(tai64nAfter(a, a), false);
});

test('message type constants', () => {
  assert.deepEqual([MSG_INITIATION, MSG_RESPONSE, MSG_COOKIE_REPLY, MSG_DATA], [1, 2, 3, 4]);
  assert.deepEqual([INIT_LEN, RESP_LEN, COOKIE_REPLY_LEN], [148, 92, 64]);
});

test('a prepared initiation (offload path) gives the same response and keys as the direct path', () => {
  const psk = Uint8Array.from({ length: 32 }, (_, i) => 200 - i);
  // One fixed responder ephemeral for both responders, so their responses must be byte-identical.
  const fixedEphemeral = (priv: Uint8Array, pub: Uint8Array): void => {
    priv.set(Uint8Array.from({ length: 32 }, (_, i) => (i * 13 + 5) & 0xff));
    clamp(priv);
    publicKeyOf(pub, priv);
  };
  const { a, b } = pair(psk);
  const direct = new Noise({ generateEphemeral: fixedEphemeral });
  const prepare = new Noise({ generateEphemeral: fixedEphemeral });
  const finish = new Noise();
  // b's identity in three Noise instances: one responds directly, one prepares, one finishes.
  for (const n of [direct, prepare, finish]) n.setPrivateKey(b.noise.privateKey);
  const hsDirect = new Handshake(a.pub, 2);
  const hsPrepared = new Handshake(a.pub, 2);
  for (const hs of [hsDirect, hsPrepared]) hs.presharedKey.set(psk);

  const init = new Uint8Array(INIT_LEN);
  assert.ok(a.noise.createInitiation(a.hs, 0x31313131, Date.now(), init));
  const respDirect = new Uint8Array(RESP_LEN);
  assert.ok(direct.consumeInitiation(init, 1000, () => hsDirect).ok);
  assert.ok(direct.createResponse(hsDirect, 0x42424242, respDirect));

  const prepared = new Uint8Array(PREPARED_BYTES);
  assert.equal(prepare.prepareInitiation(init, prepared), undefined);
  let seen: Uint8Array | undefined;
  const r = finish.consumePrepared(init, prepared, 1000, (pk) => { seen = Uint8Array.from(pk); return hsPrepared; });
  assert.ok(r.ok);
  assert.deepEqual(seen, a.pub, 'the prepared static key is the initiator');
  const respPrepared = new Uint8Array(RESP_LEN);
  assert.ok(finish.createResponse(hsPrepared, 0x42424242, respPrepared, prepared));
  assert.deepEqual(respPrepared, respDirect);

  const kb = new SessionKeys();
  assert.ok(finish.beginSession(hsPrepared, kb));
  assert.ok(a.noise.consumeResponse(respPrepared, () => a.hs).ok);
  const ka = new SessionKeys();
  assert.ok(a.noise.beginSession(a.hs, ka));
  assert.deepEqual(ka.sendKey, kb.receiveKey);
  assert.deepEqual(ka.receiveKey, kb.sendKey);
});

test('prepareInitiation rejects a tampered or foreign initiation; consumePrepared still checks replay', () => {
  const { a, b } = pair();
  const init = new Uint8Array(INIT_LEN);
  assert.ok(a.noise.createInitiation(a.hs, 1, Date.now(), init));
  const prepared = new Uint8Array(PREPARED_BYTES);
  const bad = init.slice();
  bad[INIT_SENDER + 40]! ^= 1; // inside the encrypted static key
  assert.equal(b.noise.prepareInitiation(bad, prepared), 'decrypt');
  assert.equal(a.noise.prepareInitiation(init, prepared), 'decrypt', 'sent to b, not to a');
  assert.equal(new Noise().prepareInitiation(init, prepared), 'state', 'no private key');

  assert.equal(b.noise.prepareInitiation(init, prepared), undefined);
  assert.equal(b.noise.consumePrepared(init, prepared, 1000, () => undefined).ok, false);
  assert.ok(b.noise.consumePrepared(init, prepared, 1000, () => b.hs).ok);
  const again = b.noise.consumePrepared(init, prepared, 5000, () => b.hs);
  assert.deepEqual(again, { ok: false, reason: 'replay' });
});
