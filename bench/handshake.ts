// Cost of one full handshake (initiation created and consumed, response created and consumed,
// both sessions derived) with sodium X25519, and of each step, on this machine.
//
//   node dist/bench/handshake.js [--rounds N]
import { Handshake, SessionKeys } from '../src/handshake/noise.js';
import { CookieChecker, CookieGenerator } from '../src/handshake/cookie.js';
import { identity } from '../test/helpers.js';
import { numberArg } from './pairings.js';
import { INIT_LEN, RESP_LEN } from '../src/handshake/messages.js';

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
type Step = keyof typeof steps;
let clock = 0;
const timed = (step: Step, f: () => unknown): void => {
  const t0 = performance.now();
  if (!f()) throw new Error(`${step} failed`);
  steps[step] += performance.now() - t0;
};

for (let r = 0; r < rounds; r++) {
  clock += 1000; // past the flood limit and the timestamp granularity
  timed('create initiation + mac1', () => {
    const ok = a.noise.createInitiation(hsA, 1, Date.now() + clock, init);
    cookiesA.addMacs(init, INIT_LEN, clock);
    return ok;
  });
  timed('check mac1 + consume initiation', () => checkB.checkMac1(init, INIT_LEN) && b.noise.consumeInitiation(init, clock, () => hsB).ok);
  timed('create response + mac1', () => {
    const ok = b.noise.createResponse(hsB, 2, resp);
    cookiesB.addMacs(resp, RESP_LEN, clock);
    return ok;
  });
  timed('check mac1 + consume response', () => checkA.checkMac1(resp, RESP_LEN) && a.noise.consumeResponse(resp, () => hsA).ok);
  timed('derive both sessions', () => a.noise.beginSession(hsA, ka) && b.noise.beginSession(hsB, kb));
}

const us = (ms: number): string => ((ms * 1000) / rounds).toFixed(1);
const total = Object.values(steps).reduce((x, y) => x + y, 0);
console.log(`Noise IKpsk2 handshake, ${rounds} rounds, sodium X25519`);
console.log('| step | µs |');
console.log('|---|---|');
for (const [k, v] of Object.entries(steps)) console.log(`| ${k} | ${us(v)} |`);
console.log(`| **one initiation + response, both sides** | **${us(total)}** |`);
console.log(`| responder side only (consume initiation, create response) | ${us(steps['check mac1 + consume initiation'] + steps['create response + mac1'])} |`);
