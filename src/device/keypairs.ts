// Keypair slots in the shared table and each peer's previous / current / next keypairs
// (kernel noise.c: wg_noise_handshake_begin_session, wg_noise_received_with_keypair,
// wg_noise_keypairs_clear). The main thread is the only writer of slots and peer rows here.
//
// A slot is published by writing keys, indices and birth first and FLAGS last, so a worker
// that sees VALID sees the rest. A slot is retired by clearing FLAGS first and zeroing its keys
// after; a worker mid-packet on it at that instant produces one packet that fails to
// authenticate, and its local index (with fresh random high bits on reuse) no longer matches.
import { randomInt } from 'node:crypto';
import { zero } from '../crypto/memory.js';
import type { SessionKeys } from '../handshake/noise.js';
import { REPLAY_STATE_WORDS } from '../replay/replay.js';
import { SlotPool } from './slots.js';
import {
  Tables, now, KP_FLAGS, KP_PEER, KP_LOCAL_INDEX, KP_REMOTE_INDEX, KP_SEND_COUNTER, KP_REPLAY, KP_STRIDE,
  KP_SLOT_BITS, KP_KEYS_BYTES, KPF_VALID, KPF_INITIATOR, P_CURRENT, P_PREVIOUS, P_NEXT, P_STRIDE,
} from './tables.js';

export class Keypairs {
  // Slot 0 is never used, so no live local index is 0 (the value of a retired slot).
  private readonly free: SlotPool;

  constructor(private readonly t: Tables) {
    this.free = new SlotPool(1, t.desc.keypairCapacity);
  }

  /**
   * Reserves a slot for a handshake about to start and returns the local index naming it
   * (the slot in the low bits, random bits above), or -1 when the table is full.
   */
  reserve(peer: number): number {
    const slot = this.free.take();
    if (slot < 0) return -1;
    const index = ((randomInt(1 << (32 - KP_SLOT_BITS)) << KP_SLOT_BITS) | slot) >>> 0;
    const base = slot * KP_STRIDE;
    const kp = this.t.keypairs;
    Atomics.store(kp, base + KP_FLAGS, 0);
    kp[base + KP_PEER] = peer;
    kp[base + KP_LOCAL_INDEX] = index | 0;
    return index;
  }

  /** The slot behind a local index we handed out, or -1 if the index is not (or no longer) ours. */
  slotOf(index: number): number {
    const slot = index & ((1 << KP_SLOT_BITS) - 1);
    if (slot >= this.t.desc.keypairCapacity) return -1;
    return this.t.keypairs[slot * KP_STRIDE + KP_LOCAL_INDEX] === (index | 0) ? slot : -1;
  }

  peerOf(slot: number): number {
    return this.t.keypairs[slot * KP_STRIDE + KP_PEER]!;
  }

  /** Returns a reserved slot that never became a keypair (a handshake superseded or failed). */
  release(index: number): void {
    const slot = this.slotOf(index);
    if (slot < 0 || Atomics.load(this.t.keypairs, slot * KP_STRIDE + KP_FLAGS) !== 0) return;
    this.retire(slot);
  }

  /**
   * Installs the session of a finished handshake in its reserved slot and rotates the peer's
   * keypairs: an initiator's new keypair becomes current at once; a responder's waits as next
   * until the initiator's first packet confirms it.
   */
  install(peer: number, keys: SessionKeys): boolean {
    const slot = this.slotOf(keys.localIndex);
    if (slot < 0) return false;
    const t = this.t;
    const base = slot * KP_STRIDE;
    t.keys.set(keys.sendKey, slot * KP_KEYS_BYTES);
    t.keys.set(keys.receiveKey, slot * KP_KEYS_BYTES + 32);
    t.keypairs[base + KP_REMOTE_INDEX] = keys.remoteIndex | 0;
    Atomics.store(t.keypairs, base + KP_SEND_COUNTER, 0);
    t.keypairs.fill(0, base + KP_REPLAY, base + KP_REPLAY + REPLAY_STATE_WORDS);
    t.birth[slot] = now();
    Atomics.store(t.keypairs, base + KP_FLAGS, KPF_VALID | (keys.isInitiator ? KPF_INITIATOR : 0));

    const row = peer * P_STRIDE;
    const p = t.peers;
    if (keys.isInitiator) {
      const next = p[row + P_NEXT]!;
      if (next >= 0) {
        // A responder keypair never confirmed: it becomes previous, the old current goes.
        Atomics.store(p, row + P_NEXT, -1);
        this.setPrevious(peer, next);
        this.retire(p[row + P_CURRENT]!);
      } else {
        this.setPrevious(peer, p[row + P_CURRENT]!);
      }
      Atomics.store(p, row + P_CURRENT, slot);
    } else {
      const old = p[row + P_NEXT]!;
      Atomics.store(p, row + P_NEXT, slot);
      this.retire(old);
    }
    return true;
  }

  /** The peer's next keypair was confirmed by a received packet: it becomes current. */
  confirm(peer: number, slot: number): boolean {
    const row = peer * P_STRIDE;
    const p = this.t.peers;
    if (p[row + P_NEXT] !== slot) return false;
    this.setPrevious(peer, p[row + P_CURRENT]!);
    Atomics.store(p, row + P_CURRENT, slot);
    Atomics.store(p, row + P_NEXT, -1);
    return true;
  }

  current(peer: number): number {
    return this.t.peers[peer * P_STRIDE + P_CURRENT]!;
  }

  isInitiator(slot: number): boolean {
    return (Atomics.load(this.t.keypairs, slot * KP_STRIDE + KP_FLAGS) & KPF_INITIATOR) !== 0;
  }

  birth(slot: number): number {
    return this.t.birth[slot]!;
  }

  sendCounter(slot: number): number {
    return Atomics.load(this.t.keypairs, slot * KP_STRIDE + KP_SEND_COUNTER) >>> 0;
  }

  /** Takes the next send counter of a keypair (for keepalives sent by the main thread). */
  nextCounter(slot: number): number {
    return Atomics.add(this.t.keypairs, slot * KP_STRIDE + KP_SEND_COUNTER, 1) >>> 0;
  }

  remoteIndex(slot: number): number {
    return this.t.keypairs[slot * KP_STRIDE + KP_REMOTE_INDEX]! >>> 0;
  }

  sendKey(slot: number): Uint8Array {
    return this.t.keys.subarray(slot * KP_KEYS_BYTES, slot * KP_KEYS_BYTES + 32);
  }

  /** Retires all of a peer's keypairs (key zeroing, peer removal, new private key). */
  clearPeer(peer: number): void {
    const row = peer * P_STRIDE;
    const p = this.t.peers;
    for (const f of [P_CURRENT, P_PREVIOUS, P_NEXT]) {
      const slot = p[row + f]!;
      Atomics.store(p, row + f, -1);
      this.retire(slot);
    }
  }

  initPeer(peer: number): void {
    const row = peer * P_STRIDE;
    const p = this.t.peers;
    Atomics.store(p, row + P_CURRENT, -1);
    Atomics.store(p, row + P_PREVIOUS, -1);
    Atomics.store(p, row + P_NEXT, -1);
  }

  private setPrevious(peer: number, slot: number): void {
    const at = peer * P_STRIDE + P_PREVIOUS;
    const old = this.t.peers[at]!;
    Atomics.store(this.t.peers, at, slot);
    if (old !== slot) this.retire(old);
  }

  private retire(slot: number): void {
    if (slot < 0) return;
    const t = this.t;
    const base = slot * KP_STRIDE;
    Atomics.store(t.keypairs, base + KP_FLAGS, 0);
    t.keypairs[base + KP_LOCAL_INDEX] = 0;
    zero(t.keys.subarray(slot * KP_KEYS_BYTES, (slot + 1) * KP_KEYS_BYTES));
    this.free.give(slot);
  }
}
