// A piscina task that runs prepareInitiation (noise.ts) over a batch of initiations: the four
// peer-independent X25519 operations of answering one, off the main thread. Our private key
// comes from a SharedArrayBuffer the main thread writes (and wipes), never from a task message.
import { move } from 'piscina';
import { Handshake, Noise, PREPARED_BYTES } from './noise.js';
import { INIT_LEN } from './messages.js';
import { generateKeyPair } from '../crypto/x25519.js';
import { zero } from '../crypto/memory.js';
import { KEY_GEN, KEY_OFFSET, PREPARE_REJECTIONS, PREPARE_STATUS, messageAt, preparedAt, type PrepareTask } from './prepare-batch.js';

const noise = new Noise();
const key = new Uint8Array(32);
let keyGen = -1;
let warmed = false;

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

export default function prepare(task: PrepareTask): unknown {
  const bytes = new Uint8Array(task.buf);
  const gen = Atomics.load(task.keyWords, KEY_GEN);
  if (gen !== keyGen) {
    key.set(new Uint8Array(task.keyWords.buffer, KEY_OFFSET, 32));
    // A key written while we copied it shows up as a generation change: skip this time rather
    // than keep a torn key (an all-zero key means none and clears ours).
    if (Atomics.load(task.keyWords, KEY_GEN) === gen) {
      noise.setPrivateKey(key);
      keyGen = gen;
    }
    zero(key);
  }
  if (!warmed && noise.hasPrivateKey) {
    warm();
    warmed = true;
  }
  for (let i = 0; i < task.count; i++) {
    // The main thread drops results of another generation too; this only saves the work.
    const why = task.gen === keyGen ? noise.prepareInitiation(messageAt(bytes, i), preparedAt(bytes, i)) : 'state';
    bytes[PREPARE_STATUS + i] = PREPARE_REJECTIONS.indexOf(why);
  }
  return move(task.buf);
}
