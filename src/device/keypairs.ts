// Keypair slots in the shared table and each peer's previous / current / next keypairs
// (kernel noise.c: wg_noise_handshake_begin_session / add_new_keypair,
// wg_noise_received_with_keypair, wg_noise_keypairs_clear). The main thread is the only writer
// of slots and peer rows here.
//
// A slot is published by writing keys, indices and birth first and FLAGS last, so a worker
// that sees VALID sees the rest. A slot is retired in two steps: unpublished at once (FLAGS and
// the local index cleared: no new packet uses it), then, once every worker has crossed a batch
// boundary (the quarantine, ./reclaim.ts), its keys are zeroed and the slot is free. So a
// worker that took a counter on a keypair never seals with a different key under it, and a
// stale receiver index never names a reused slot.
import { randomInt } from 'node:crypto';
import { zero } from '../crypto/memory.js';
import type { SessionKeys } from '../handshake/noise.js';
import { ClaimableSlots, SlotPool } from './slots.js';
import type { Reclaimer } from './reclaim.js';
import { SESSION_BITS, type IndexPermutation } from './routable.js';
import { Tables, KeypairRole, now } from '../queues/tables.js';

const SESSIONS = 1 << SESSION_BITS;

export class Keypairs {
  // Slot 0 is never used, so no live local index is 0 (the value of a retired slot).
  private readonly free: SlotPool | ClaimableSlots;
  /** Cluster mode: the slots, taken by number once an index is drawn. */
  private readonly routed: { permutation: IndexPermutation; slots: ClaimableSlots } | undefined;
  /** Bits of an index above its slot bits. */
  private readonly upperBits: number;

  /** `permutation`: the cluster's (cluster mode); without it indices are random. */
  constructor(private readonly t: Tables, private readonly reclaim: Reclaimer, permutation?: IndexPermutation) {
    this.routed = permutation && { permutation, slots: new ClaimableSlots(1, t.desc.keypairCapacity) };
    this.free = this.routed?.slots ?? new SlotPool(1, t.desc.keypairCapacity);
    this.upperBits = 32 - Math.log2(t.keypairs.mask + 1);
  }

  /**
   * Reserves a slot for a handshake about to start and returns the local index naming it, or -1
   * when the table is full. The slot is in the index's low bits; above it are random bits, or,
   * with a keyed permutation, the index is the peer's routable one (`routingId`) whose low bits
   * name a free slot. When no session value gives one (a nearly full table), the index is a
   * random one: that session is simply not routable.
   */
  reserve(peer: number, routingId = -1): number {
    let index = this.routed?.permutation.keyed ? this.routableIndex(this.routed, routingId) : -1;
    if (index < 0) {
      let slot = this.free.take();
      if (slot < 0 && this.reclaim.reclaimNow()) slot = this.free.take();
      if (slot < 0) return -1;
      index = ((this.upperBits === 0 ? 0 : randomInt(2 ** this.upperBits) * (this.t.keypairs.mask + 1)) + slot) >>> 0;
    }
    this.t.keypairs.reserve(index & this.t.keypairs.mask, peer, index);
    return index;
  }

  private routableIndex(routed: NonNullable<Keypairs['routed']>, id: number): number {
    const start = randomInt(SESSIONS);
    for (let i = 0; i < SESSIONS; i++) {
      const index = routed.permutation.index(id, (start + i) & (SESSIONS - 1));
      if (routed.slots.claim(index & this.t.keypairs.mask)) return index;
    }
    return -1;
  }

  /** The slot behind a local index we handed out, or -1 if the index is not (or no longer) ours. */
  slotOf(index: number): number {
    return this.t.keypairs.lookup(index);
  }

  peerOf(slot: number): number {
    return this.t.keypairs.peer(slot);
  }

  /** Returns a reserved slot that never became a keypair (a handshake superseded or failed). */
  release(index: number): void {
    const slot = this.slotOf(index);
    if (slot < 0 || this.t.keypairs.installed(slot)) return;
    this.retire(slot);
  }

  /**
   * Installs the session of a finished handshake in its reserved slot and rotates the peer's
   * keypairs (the kernel's add_new_keypair): an initiator's new keypair becomes current at once;
   * a responder's waits as next until the initiator's first packet confirms it, and the
   * responder drops its previous keypair (so a peer never holds more than three).
   */
  install(peer: number, keys: SessionKeys): boolean {
    const slot = this.slotOf(keys.localIndex);
    if (slot < 0) return false;
    const p = this.t.peers;
    this.t.keypairs.install(slot, keys, now());
    if (keys.isInitiator) {
      const next = p.keypair(peer, KeypairRole.Next);
      const current = p.keypair(peer, KeypairRole.Current);
      const previous = p.keypair(peer, KeypairRole.Previous);
      if (next >= 0) {
        // A responder keypair never confirmed becomes previous; the old current goes.
        p.setKeypair(peer, KeypairRole.Next, -1);
        p.setKeypair(peer, KeypairRole.Previous, next);
        this.retire(current);
      } else {
        p.setKeypair(peer, KeypairRole.Previous, current);
      }
      this.retire(previous);
      p.setKeypair(peer, KeypairRole.Current, slot);
    } else {
      const next = p.keypair(peer, KeypairRole.Next);
      const previous = p.keypair(peer, KeypairRole.Previous);
      p.setKeypair(peer, KeypairRole.Next, slot);
      p.setKeypair(peer, KeypairRole.Previous, -1);
      this.retire(next);
      this.retire(previous);
    }
    this.reclaim.seal();
    return true;
  }

  /** The peer's next keypair was confirmed by a received packet: it becomes current. */
  confirm(peer: number, slot: number): boolean {
    const p = this.t.peers;
    if (p.keypair(peer, KeypairRole.Next) !== slot) return false;
    const previous = p.keypair(peer, KeypairRole.Previous);
    p.setKeypair(peer, KeypairRole.Previous, p.keypair(peer, KeypairRole.Current));
    p.setKeypair(peer, KeypairRole.Current, slot);
    p.setKeypair(peer, KeypairRole.Next, -1);
    this.retire(previous);
    this.reclaim.seal();
    return true;
  }

  current(peer: number): number {
    return this.t.peers.keypair(peer, KeypairRole.Current);
  }

  /** Retires all of a peer's keypairs (key zeroing, peer removal, new private key). */
  clearPeer(peer: number): void {
    const p = this.t.peers;
    for (const role of [KeypairRole.Current, KeypairRole.Previous, KeypairRole.Next]) {
      const slot = p.keypair(peer, role);
      p.setKeypair(peer, role, -1);
      this.retire(slot);
    }
    this.reclaim.seal();
  }

  private retire(slot: number): void {
    if (slot < 0) return;
    const kps = this.t.keypairs;
    kps.unpublish(slot);
    this.reclaim.retire(() => {
      kps.wipe(slot, zero);
      this.free.give(slot);
    });
  }
}
