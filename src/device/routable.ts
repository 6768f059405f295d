// Cluster-routable receiver indices. Every node of a cluster has the server's private key, and
// a client's sessions are per node; when a node dies and the client's route moves to another,
// the client keeps sending on the dead node's session, which the new node cannot read, until its
// own timer gives up on it (KEEPALIVE_TIMEOUT + REKEY_TIMEOUT, 15 s) and it handshakes again.
// So that the new node can start that handshake itself, a node's local indices say which client
// they belong to, to the cluster only:
//
//   index = P(routing id (ID_BITS) | session bits (SESSION_BITS))
//
// P is a keyed permutation of 32-bit numbers (a Feistel network whose round functions are
// tables drawn from a secret that HASH derives from the server's private key), so an index
// still looks random to anyone without the key and two sessions of one client are unlinkable;
// any node inverts it. The routing id is a hash of the client's public key: clients may share
// one (a node then tries each), nothing has to be allocated or stored for it. keypairs.ts picks
// session bits until the index's low bits name a free keypair slot, so workers find the
// keypair as for any index. What the node does with an unknown index, and the limits that keep
// unauthenticated packets from making it an amplifier, are in handshakes.ts (unknownIndex).
import { hash } from '../crypto/blake2s.js';
import { zero } from '../crypto/memory.js';
import { REKEY_TIMEOUT } from '../handshake/constants.js';

/** Bits of an index's plaintext that name the client: a million buckets. */
export const ID_BITS = 20;
export const SESSION_BITS = 32 - ID_BITS;
const ROUNDS = 8;
const HALF = 1 << 16;
const LABEL = new TextEncoder().encode('wireguard-ts cluster receiver index v1');

/**
 * The routing id of a public key, the same on every node. Not keyed: the permutation hides it.
 * All 32 bytes are mixed, so vanity keys that share a prefix do not share an id.
 */
export function routingId(publicKey: Uint8Array): number {
  let h = 0x9e3779b9;
  for (let i = 0; i < 32; i += 4) {
    h = Math.imul(h ^ (publicKey[i]! | (publicKey[i + 1]! << 8) | (publicKey[i + 2]! << 16) | (publicKey[i + 3]! << 24)), 0x85ebca6b);
    h ^= h >>> 15;
  }
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 13)) >>> SESSION_BITS;
}

/**
 * The keyed permutation P over 32-bit indices. Round functions are whole tables (16 bits to
 * 16 bits, ROUNDS of them, 1 MiB) rather than a cheap keyed mixer: random round functions are
 * what the Feistel security arguments assume, and a lookup costs less than computing one.
 */
export class IndexPermutation {
  private readonly rounds = new Uint16Array(ROUNDS * HALF);
  keyed = false;

  /** Derives the round tables from the cluster's private key (null: forgets them). */
  setKey(privateKey: Uint8Array | null): void {
    zero(new Uint8Array(this.rounds.buffer));
    this.keyed = privateKey !== null;
    if (privateKey === null) return;
    const secret = new Uint8Array(32);
    hash(secret, LABEL, privateKey);
    const counter = new Uint8Array(4);
    const counterView = new DataView(counter.buffer);
    const block = new Uint8Array(32);
    const words = new Uint16Array(block.buffer);
    for (let c = 0; c < (ROUNDS * HALF) / words.length; c++) {
      counterView.setUint32(0, c, true);
      hash(block, secret, counter);
      this.rounds.set(words, c * words.length);
    }
    zero(secret);
    zero(block);
  }

  forward(x: number): number {
    let l = x >>> 16;
    let r = x & 0xffff;
    for (let i = 0; i < ROUNDS; i++) {
      const t = l ^ this.rounds[i * HALF + r]!;
      l = r;
      r = t;
    }
    return ((l << 16) | r) >>> 0;
  }

  inverse(y: number): number {
    let l = y >>> 16;
    let r = y & 0xffff;
    for (let i = ROUNDS - 1; i >= 0; i--) {
      const t = r ^ this.rounds[i * HALF + l]!;
      r = l;
      l = t;
    }
    return ((l << 16) | r) >>> 0;
  }

  /** The index of session `session` of routing id `id`. */
  index(id: number, session: number): number {
    return this.forward(((id << SESSION_BITS) | session) >>> 0);
  }

  /** The routing id an index names (meaningful only for indices a node of the cluster made). */
  idOf(index: number): number {
    return this.inverse(index) >>> SESSION_BITS;
  }
}

/** Peer slots by routing id: a chain per id (ids are spread, chains are short). */
export class PeersById {
  private readonly heads = new Int32Array(1 << ID_BITS).fill(-1);
  private readonly next: Int32Array;

  constructor(peerCapacity: number) {
    this.next = new Int32Array(peerCapacity).fill(-1);
  }

  add(id: number, slot: number): void {
    this.next[slot] = this.heads[id]!;
    this.heads[id] = slot;
  }

  remove(id: number, slot: number): void {
    if (this.heads[id] === slot) {
      this.heads[id] = this.next[slot]!;
    } else {
      for (let s = this.heads[id]!; s >= 0; s = this.next[s]!) {
        if (this.next[s] === slot) {
          this.next[s] = this.next[slot]!;
          break;
        }
      }
    }
    this.next[slot] = -1;
  }

  /** The slots of the peers with routing id `id`. */
  slots(id: number): number[] {
    const out: number[] = [];
    for (let s = this.heads[id]!; s >= 0; s = this.next[s]!) out.push(s);
    return out;
  }
}

/** Initiations started for unknown indices, at most, across all clients (with a burst as large). */
export const ROUTED_INITIATIONS_PER_S = 50;
const REKEY_TIMEOUT_MS = REKEY_TIMEOUT * 1000;

/**
 * Whether an initiation for an unknown index may go: at most one per client per REKEY_TIMEOUT
 * (counting the client's other initiations), and at most ROUTED_INITIATIONS_PER_S in all. The
 * packet that asks for it is unauthenticated and anyone can send it from any address, so the
 * global bound is what caps the initiations (148 bytes for a 32-byte packet) a forger can
 * make a node send.
 */
export class RoutedInitiations {
  private tokens: number;
  private lastMs = -Infinity;

  constructor(private readonly perSecond = ROUTED_INITIATIONS_PER_S) {
    this.tokens = perSecond;
  }

  allow(lastInitiationMs: number, nowMs: number): boolean {
    if (nowMs - lastInitiationMs < REKEY_TIMEOUT_MS) return false;
    this.tokens = Math.min(this.perSecond, this.tokens + ((nowMs - this.lastMs) * this.perSecond) / 1000);
    this.lastMs = nowMs;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}
