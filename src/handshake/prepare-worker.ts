// A piscina task that runs prepareInitiation (noise.ts) over a batch of initiations: the four
// peer-independent X25519 operations of answering one, off the main thread. Our private key
// comes from a SharedArrayBuffer the main thread writes (and wipes), never from a task message.
import { move } from 'piscina';
import { Noise } from './noise.js';
import { zero } from '../crypto/memory.js';
import { KEY_GEN, KEY_OFFSET, PREPARE_REJECTIONS, PREPARE_STATUS, messageAt, preparedAt, type PrepareTask } from './prepare-batch.js';

const noise = new Noise();
const key = new Uint8Array(32);
let keyGen = -1;

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
  for (let i = 0; i < task.count; i++) {
    // The main thread drops results of another generation too; this only saves the work.
    const why = task.gen === keyGen ? noise.prepareInitiation(messageAt(bytes, i), preparedAt(bytes, i)) : 'state';
    bytes[PREPARE_STATUS + i] = PREPARE_REJECTIONS.indexOf(why);
  }
  return move(task.buf);
}
