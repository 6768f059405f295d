// Cost of one full handshake (initiation created and consumed, response created and consumed,
// both sessions derived) with sodium X25519, and of each step, on this machine. A second table
// splits the responder as the daemon runs it under load: the offload pool prepares (four of the
// five X25519), the main thread checks mac1 and mac2 and finishes; the main thread's share is
// what bounds the handshakes per second.
//
//   node dist/bench/handshake.js [--rounds N]
import { Handshake, PREPARED_BYTES, SessionKeys } from '../src/handshake/noise.js';
import { CookieChecker, CookieGenerator } from '../src/handshake/cookie.js';
import { identity } from '../test/helpers.js';
import { numberArg } from './pairings.js';
import { COOKIE_REPLY_LEN, INIT_LEN, RESP_LEN } from '../src/handshake/messages.js';

const rounds = numberArg('--rounds', 2000);

const a = identity();
const b = identity();
const hsA = new Handshake(b.pub, 0);
const hsB = new Handshake(a.pub, 0);
a.noise.precompute(hsA);
b.noise.precompute(hsB);
const cookiesA = new CookieGenerator(b.pub);
const cookiesB = new CookieGenerator(a.pub);
const checkA = new CookieChecker();
checkA.setPublicKey(a.pub);
const checkB = new CookieChecker();
checkB.setPublicKey(b.pub);
const init = new Uint8Array(INIT_LEN);
const resp = new Uint8Array(RESP_LEN);
const ka = new SessionKeys();
const kb = new SessionKeys();
const steps = { 'create initiation + mac1': 0, 'check mac1 + consume initiation': 0, 'create response + mac1': 0, 'check mac1 + consume response': 0, 'derive both sessions': 0 };
const split = { 'pool thread: open the static key, ephemeral and its DHs': 0, 'main thread: check mac1 and mac2, finish the initiation': 0, 'main thread: response + macs, session': 0 };
let clock = 0;
const timed = <S extends Record<string, number>>(table: S, step: keyof S & string, f: () => unknown): void => {
  const t0 = performance.now();
  if (!f()) throw new Error(`${step} failed`);
  (table as Record<string, number>)[step] += performance.now() - t0;
};

for (let r = 0; r < rounds; r++) {
  clock += 1000; // past the flood limit and the timestamp granularity
  timed(steps, 'create initiation + mac1', () => {
    const ok = a.noise.createInitiation(hsA, 1, Date.now() + clock, init);
    cookiesA.addMacs(init, INIT_LEN, clock);
    return ok;
  });
  timed(steps, 'check mac1 + consume initiation', () => checkB.checkMac1(init, INIT_LEN) && b.noise.consumeInitiation(init, clock, () => hsB).ok);
  timed(steps, 'create response + mac1', () => {
    const ok = b.noise.createResponse(hsB, 2, resp);
    cookiesB.addMacs(resp, RESP_LEN, clock);
    return ok;
  });
  timed(steps, 'check mac1 + consume response', () => checkA.checkMac1(resp, RESP_LEN) && a.noise.consumeResponse(resp, () => hsA).ok);
  timed(steps, 'derive both sessions', () => a.noise.beginSession(hsA, ka) && b.noise.beginSession(hsB, kb));
}

// Under load every message carries mac2: the initiator holds a cookie from the responder.
const source = Uint8Array.of(10, 0, 0, 1, 0xca, 0x6c);
const reply = new Uint8Array(COOKIE_REPLY_LEN);
const prepared = new Uint8Array(PREPARED_BYTES);
cookiesA.addMacs(init, INIT_LEN, 0);
checkB.createReply(reply, init, INIT_LEN, 1, source, 0);
if (!cookiesA.consumeReply(reply, 0)) throw new Error('cookie reply refused');
// On a shared machine a preempted step inflates a sum: this table gives the median over
// batches of BATCH rounds of each batch's mean.
const BATCH = 100;
const batchMeans: Record<keyof typeof split, number[]> = { 'pool thread: open the static key, ephemeral and its DHs': [], 'main thread: check mac1 and mac2, finish the initiation': [], 'main thread: response + macs, session': [] };
for (let r = 0; r < rounds; r++) {
  clock += 1000;
  if (!a.noise.createInitiation(hsA, 1, Date.now() + clock, init)) throw new Error('initiation failed');
  cookiesA.addMacs(init, INIT_LEN, 0); // the cookie's time, not the handshake's
  timed(split, 'pool thread: open the static key, ephemeral and its DHs', () => b.noise.prepareInitiation(init, prepared) === undefined);
  timed(split, 'main thread: check mac1 and mac2, finish the initiation', () => checkB.checkMac1(init, INIT_LEN) && checkB.checkMac2(init, INIT_LEN, source, 0)
    && b.noise.consumePrepared(init, prepared, clock, () => hsB).ok);
  timed(split, 'main thread: response + macs, session', () => {
    if (!b.noise.createResponse(hsB, 2, resp, prepared)) return false;
    cookiesB.addMacs(resp, RESP_LEN, clock);
    return b.noise.beginSession(hsB, kb);
  });
  if ((r + 1) % BATCH === 0) {
    for (const k of Object.keys(split) as (keyof typeof split)[]) {
      batchMeans[k].push(split[k] / BATCH);
      split[k] = 0;
    }
  }
}
const median = (v: number[]): number => v.sort((x, y) => x - y)[v.length >> 1] ?? NaN;

const us = (ms: number): string => ((ms * 1000) / rounds).toFixed(1);
const total = Object.values(steps).reduce((x, y) => x + y, 0);
console.log(`Noise IKpsk2 handshake, ${rounds} rounds, sodium X25519`);
console.log('| step | µs |');
console.log('|---|---|');
for (const [k, v] of Object.entries(steps)) console.log(`| ${k} | ${us(v)} |`);
console.log(`| **one initiation + response, both sides** | **${us(total)}** |`);
console.log(`| responder side only (consume initiation, create response) | ${us(steps['check mac1 + consume initiation'] + steps['create response + mac1'])} |`);
console.log(`\nThe responder under load, split as the daemon runs it (with the offload pool); median of ${BATCH}-round batch means`);
console.log('| step | µs |');
console.log('|---|---|');
const mainSteps = ['main thread: check mac1 and mac2, finish the initiation', 'main thread: response + macs, session'] as const;
for (const k of Object.keys(batchMeans) as (keyof typeof split)[]) console.log(`| ${k} | ${(median(batchMeans[k]) * 1000).toFixed(1)} |`);
const mainPerRound = batchMeans[mainSteps[0]].map((v, i) => v + batchMeans[mainSteps[1]][i]!);
console.log(`| **main thread per handshake** | **${(median(mainPerRound) * 1000).toFixed(1)}** |`);
