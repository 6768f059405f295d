// Ephemeral key pairs made ahead of time, so that answering (or sending) an initiation on an
// idle device does not wait for a key generation: one of the four X25519 operations a
// responder runs, ~30 µs of CPU, off the round trip. The owner refills the pool when it has
// nothing else to do (Handshakes does it between event-loop turns while no handshake message
// waits); under load the pool runs dry and keys are made on demand, as before, so the total
// work is the same.
//
// Each pair is used once: `take` copies it out and wipes its place. The pairs are secrets
// until used: `wipe` clears the pool (the device is closing or losing its key).
import { KEY_LEN, generateKeyPair } from '../crypto/x25519.js';
import { zero } from '../crypto/memory.js';

const PAIR = 2 * KEY_LEN;

export class EphemeralPool {
  private readonly pairs: Uint8Array;
  private count = 0;

  constructor(readonly capacity = 8) {
    this.pairs = new Uint8Array(capacity * PAIR);
  }

  get size(): number {
    return this.count;
  }

  /** Fills `privateKey` and `publicKey` with a pair made ahead of time, or a fresh one. */
  take(privateKey: Uint8Array, publicKey: Uint8Array): void {
    if (this.count === 0) {
      generateKeyPair(privateKey, publicKey);
      return;
    }
    const at = --this.count * PAIR;
    const pair = this.pairs.subarray(at, at + PAIR);
    privateKey.set(pair.subarray(0, KEY_LEN));
    publicKey.set(pair.subarray(KEY_LEN));
    zero(pair);
  }

  /** Makes one pair ahead of time; false when the pool is full already. */
  refill(): boolean {
    if (this.count === this.capacity) return false;
    const at = this.count * PAIR;
    generateKeyPair(this.pairs.subarray(at, at + KEY_LEN), this.pairs.subarray(at + KEY_LEN, at + PAIR));
    this.count++;
    return true;
  }

  wipe(): void {
    zero(this.pairs);
    this.count = 0;
  }
}
