// The tables the control plane publishes to the data-plane workers, in SharedArrayBuffers.
//
// Ownership: the main thread is the only writer of everything here except the words marked
// "worker-written" (send counters, replay windows, the CONFIRMED flag, per-worker stats and
// timestamps), which workers update with Atomics or in their own per-worker rows. Workers never
// take a lock on the peer or keypair tables: a keypair becomes visible by setting FLAGS last
// (Atomics.store) after its keys and indices are written, and an endpoint is read under a
// per-peer sequence counter (a seqlock, as the kernel's endpoint_lock is a rwlock).
//
// Receiver indices encode the keypair slot in their low bits (KP_SLOT_BITS) and random bits
// above it, so a worker finds the keypair of an incoming packet with a mask and one compare,
// with no hash table; the random bits keep a stale index from matching a reused slot.
import { EndpointTable } from '../net/endpoint.js';
import { REPLAY_STATE_WORDS } from '../replay/replay.js';
import { REJECT_AFTER_TIME } from './timers.js';

export const KP_SLOT_BITS = 22;
export const KP_SLOT_MASK = (1 << KP_SLOT_BITS) - 1;

// Keypair table, Int32 words per slot.
export const KP_FLAGS = 0;
export const KP_PEER = 1;
export const KP_LOCAL_INDEX = 2;
export const KP_REMOTE_INDEX = 3;
/** Worker-written: the next send counter, taken with Atomics.add. */
export const KP_SEND_COUNTER = 4;
export const KP_REPLAY = 8; // 16-byte aligned start of the replay window
export const KP_STRIDE = KP_REPLAY + REPLAY_STATE_WORDS;
export const KP_KEYS_BYTES = 64; // send key, then receive key

export const KPF_VALID = 1;
export const KPF_INITIATOR = 2;
/** Worker-written: a packet authenticated on this keypair (the responder may now send). */
export const KPF_CONFIRMED = 4;

/**
 * Send counters are 32-bit so a worker takes one with a single Atomics.add on an Int32Array
 * (a BigInt counter would allocate per packet). A keypair lives at most 180 s, which at 20
 * Mpps is 3.6e9 packets, under 2^32; past SEND_COUNTER_LIMIT a keypair refuses to send and the
 * peer rekeys, which is stricter than REKEY_AFTER_MESSAGES (2^60) and never reuses a nonce.
 */
export const SEND_COUNTER_LIMIT = 0xffff0000;
export const SEND_COUNTER_REKEY = 0xf0000000;

// Peer table, Int32 words per slot (word 0 unused).
export const P_CURRENT = 1; // keypair slots, -1 for none
export const P_PREVIOUS = 2;
export const P_NEXT = 3;
/** Seqlock of the endpoint row: odd while the main thread rewrites it. */
export const P_ENDPOINT_SEQ = 4;
export const P_STRIDE = 8;

// Per-worker, per-peer statistics and timestamps (Float64, one row block per worker, single
// writer): the main thread sums bytes over workers and takes the latest of each timestamp.
export const S_RX_BYTES = 0;
export const S_TX_BYTES = 1;
/** Times are ms on the shared clock `now()` below. */
export const S_LAST_DATA_SENT = 2;
export const S_LAST_DATA_RECEIVED = 3;
export const S_LAST_AUTH_SENT = 4;
export const S_LAST_AUTH_RECEIVED = 5;
export const S_STRIDE = 6;

// Device-wide drop and traffic counters, per worker (Float64).
export const C_RX_PACKETS = 0;
export const C_TX_PACKETS = 1;
export const C_DROP_NO_ROUTE = 2;
export const C_DROP_NO_KEYPAIR = 3;
export const C_DROP_DECRYPT = 4;
export const C_DROP_REPLAY = 5;
export const C_DROP_SOURCE = 6; // inner source not in the peer's allowed IPs
export const C_DROP_MALFORMED = 7;
export const C_DROP_RING_FULL = 8;
/** A peer with a session but no endpoint to send to (the kernel's EDESTADDRREQ). */
export const C_DROP_NO_ENDPOINT = 9;
export const C_STRIDE = 16;
export const COUNTER_NAMES = ['rx_packets', 'tx_packets', 'drop_no_route', 'drop_no_keypair', 'drop_decrypt', 'drop_replay', 'drop_source', 'drop_malformed', 'drop_ring_full', 'drop_no_endpoint'];

/**
 * A millisecond clock that is the same in every thread (performance.now() alone is relative to
 * each thread's start).
 */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export interface TablesDesc {
  peerCapacity: number;
  keypairCapacity: number;
  workers: number;
  peers: SharedArrayBuffer;
  endpoints: SharedArrayBuffer;
  keypairs: SharedArrayBuffer;
  keypairBirth: SharedArrayBuffer;
  keys: SharedArrayBuffer;
  stats: SharedArrayBuffer;
  counters: SharedArrayBuffer;
  /** Device-wide words: [0] MTU, [1] allowed-IPs generation, [2] shutdown flag. */
  device: SharedArrayBuffer;
}

export const D_MTU = 0;
export const D_ROUTES_GEN = 1;
export const D_SHUTDOWN = 2;

/** A keypair's usable lifetime, ms (both threads' age checks). */
export const REJECT_AFTER_MS = REJECT_AFTER_TIME * 1000;

/**
 * Whether keypair `kp` may carry packets out at `nowMs`: valid, younger than REJECT_AFTER_TIME,
 * and with one of the flags `anyOf` (by default: we initiated it, or the peer confirmed it).
 * The one rule the workers and the main thread both send by.
 */
export function canSend(t: Tables, kp: number, nowMs: number, anyOf = KPF_INITIATOR | KPF_CONFIRMED): boolean {
  const flags = Atomics.load(t.keypairs, kp * KP_STRIDE + KP_FLAGS);
  return (flags & KPF_VALID) !== 0 && (flags & anyOf) !== 0 && nowMs - t.birth[kp]! < REJECT_AFTER_MS;
}

/** Typed views over a TablesDesc; each thread builds its own once. */
export class Tables {
  readonly peers: Int32Array;
  readonly endpoints: EndpointTable;
  readonly keypairs: Int32Array;
  readonly birth: Float64Array;
  readonly keys: Uint8Array;
  readonly stats: Float64Array;
  readonly counters: Float64Array;
  readonly device: Int32Array;

  static create(peerCapacity: number, keypairCapacity: number, workers: number): Tables {
    if (keypairCapacity > KP_SLOT_MASK + 1) throw new RangeError(`at most ${KP_SLOT_MASK + 1} keypairs`);
    const sab = (bytes: number): SharedArrayBuffer => new SharedArrayBuffer(bytes);
    return new Tables({
      peerCapacity,
      keypairCapacity,
      workers,
      peers: sab(peerCapacity * P_STRIDE * 4),
      endpoints: sab(EndpointTable.bytesFor(peerCapacity)),
      keypairs: sab(keypairCapacity * KP_STRIDE * 4),
      keypairBirth: sab(keypairCapacity * 8),
      keys: sab(keypairCapacity * KP_KEYS_BYTES),
      stats: sab(workers * peerCapacity * S_STRIDE * 8),
      counters: sab(workers * C_STRIDE * 8),
      device: sab(64),
    });
  }

  constructor(readonly desc: TablesDesc) {
    this.peers = new Int32Array(desc.peers);
    this.endpoints = new EndpointTable(desc.peerCapacity, desc.endpoints);
    this.keypairs = new Int32Array(desc.keypairs);
    this.birth = new Float64Array(desc.keypairBirth);
    this.keys = new Uint8Array(desc.keys);
    this.stats = new Float64Array(desc.stats);
    this.counters = new Float64Array(desc.counters);
    this.device = new Int32Array(desc.device);
  }

  statsBase(worker: number, peer: number): number {
    return (worker * this.desc.peerCapacity + peer) * S_STRIDE;
  }
}
