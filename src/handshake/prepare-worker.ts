// A piscina task that runs prepareInitiation (noise.ts) over a batch of initiations: the four
// peer-independent X25519 operations of answering one, off the main thread. Our private key
// comes from a SharedArrayBuffer the main thread writes (and wipes), never from a task message.
//
// The thread follows that buffer on its own, not only when a task comes: it waits on the key
// generation word (Atomics.waitAsync) and reloads, or wipes, its copy at every change, then
// counts itself in the acknowledgement word so the main thread can tell when every thread has.
// An idle thread therefore never keeps a key that was replaced or removed.
import { move, workerData } from 'piscina';
import { Handshake, Noise, PREPARED_BYTES } from './noise.js';
import { INIT_LEN } from './messages.js';
import { generateKeyPair } from '../crypto/x25519.js';
import { zero } from '../crypto/memory.js';
import {
  KEY_ACK, KEY_GEN, KEY_OFFSET, PREPARE_REJECTIONS, PREPARE_STATUS, TEST_FAULT_ENV, ackCount, messageAt, preparedAt,
  type PrepareTask, type PrepareWorkerData,
} from './prepare-batch.js';

// Atomics.waitAsync exists in Node >= 16 but is newer than the ES2022 lib this repo compiles against.
const waitAsync = (Atomics as unknown as {
  waitAsync(ta: Int32Array, index: number, value: number): { async: false } | { async: true; value: Promise<unknown> };
}).waitAsync;

const { keyWords } = workerData as PrepareWorkerData;
const noise = new Noise();
const key = new Uint8Array(32);
let keyGen = -1;
let warmed = false;
const fault = process.env[TEST_FAULT_ENV];

/** Initiations a fresh thread answers to itself before its first real batch. */
const WARM_ROUNDS = 64;

/**
 * Runs the whole prepare path on initiations from a throw-away identity, so V8 has compiled it
 * (BLAKE2s interpreted is ~10x slower) before a storm's first batch arrives: a cold pool
 * otherwise backs up at the start and the device declares itself under load.
 */
function warm(): void {
  const self = new Noise();
  const priv = new Uint8Array(32);
  generateKeyPair(priv, new Uint8Array(32));
  self.setPrivateKey(priv);
  zero(priv);
  const hs = new Handshake(noise.publicKey, 0);
  const msg = new Uint8Array(INIT_LEN);
  const out = new Uint8Array(PREPARED_BYTES);
  for (let i = 0; i < WARM_ROUNDS; i++) {
    self.createInitiation(hs, i, Date.now() + i, msg);
    noise.prepareInitiation(msg, out);
  }
  zero(out);
  hs.destroy();
  self.setPrivateKey(null);
}

/** Takes the current key (an all-zero key means none and clears ours) if it changed. */
function loadKey(): void {
  const gen = Atomics.load(keyWords, KEY_GEN);
  if (gen === keyGen) return;
  key.set(new Uint8Array(keyWords.buffer, KEY_OFFSET, 32));
  // A key written while we copied it shows up as a generation change: skip this time rather
  // than keep a torn key; the caller comes back for the newer one.
  if (Atomics.load(keyWords, KEY_GEN) === gen) {
    noise.setPrivateKey(key);
    keyGen = gen;
    acknowledge(gen);
  }
  zero(key);
  if (!warmed && noise.hasPrivateKey) {
    warm();
    warmed = true;
  }
}

/** Counts this thread in the acknowledgement word, unless it already moved to a newer generation. */
function acknowledge(gen: number): void {
  for (;;) {
    const word = Atomics.load(keyWords, KEY_ACK);
    if (ackCount(word, gen) < 0) return;
    if (Atomics.compareExchange(keyWords, KEY_ACK, word, word + 1) === word) return;
  }
}

/** Reloads the key at every change of its generation, for the thread's whole life. */
async function followKey(): Promise<void> {
  for (;;) {
    loadKey();
    const wait = waitAsync(keyWords, KEY_GEN, keyGen);
    if (wait.async) await wait.value;
  }
}
void followKey();

export default function prepare(task: PrepareTask): unknown {
  if (fault !== undefined && task.count > 0) {
    if (fault === 'pool-throw') throw new Error(`${TEST_FAULT_ENV}=pool-throw`);
    if (fault === 'pool-hang') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  }
  const bytes = new Uint8Array(task.buf);
  // The waiter may not have run yet (a task can arrive first): never prepare under an old key.
  loadKey();
  for (let i = 0; i < task.count; i++) {
    // The main thread drops results of another generation too; this only saves the work.
    const why = task.gen === keyGen ? noise.prepareInitiation(messageAt(bytes, i), preparedAt(bytes, i)) : 'state';
    bytes[PREPARE_STATUS + i] = PREPARE_REJECTIONS.indexOf(why);
  }
  return move(task.buf);
}
