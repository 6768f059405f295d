// The tables the control plane shares with the data-plane workers, in SharedArrayBuffers, and
// the one typed view of each that both sides use (no raw word offset leaves this file).
//
// Ownership: the main thread writes peers and keypairs; workers write only the words named
// "worker-written" below (send counters, replay windows, the CONFIRMED flag, endpoints when a
// peer roams, per-worker stats rows, the handshake-wanted flag) and only with Atomics or in
// their own rows. Nobody takes a lock to read:
// - a keypair becomes visible by storing FLAGS last, after its keys and indices;
// - an endpoint row is read under a per-peer sequence counter (a seqlock); its writers (the
//   main thread on `wg set`, any worker that authenticated a packet from a new address) take
//   the counter from even to odd with a compare-exchange, so they exclude one another;
// - a peer or keypair slot is never reused while a worker may still hold it: a freed slot is
//   quarantined until every worker has crossed a batch boundary (./epoch.ts), the role RCU
//   plays in the kernel; and a peer slot carries a generation so that anything that outlives a
//   batch (a staged packet, a record to the main thread) names a peer as (slot, generation).
//
// Receiver indices encode the keypair slot in their low bits (as many as the table's capacity
// needs, at most KP_SLOT_BITS) and other bits above it, so a worker finds the keypair of an
// incoming packet with a mask and one compare (src/device/keypairs.ts chooses the other bits).
import { EndpointTable, copyEndpoint, endpointEquals } from '../net/endpoint.js';
import { ReplayWindow, REPLAY_STATE_WORDS } from '../replay/replay.js';
import { REJECT_AFTER_TIME } from '../handshake/constants.js';
import { EpochDomain } from './epoch.js';

export const KP_SLOT_BITS = 22;

/** The low bits of a receiver index that name the keypair slot, for a table of `capacity` slots. */
export function slotMask(capacity: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(2, capacity))) - 1;
}

// Keypair table, Int32 words per slot.
const KP_FLAGS = 0;
const KP_PEER = 1;
const KP_LOCAL_INDEX = 2;
const KP_REMOTE_INDEX = 3;
/** Worker-written: the next send counter, claimed with a compare-exchange. */
const KP_SEND_COUNTER = 4;
const KP_REPLAY = 8; // 16-byte aligned start of the replay window
const KP_STRIDE = KP_REPLAY + REPLAY_STATE_WORDS;
const KP_KEYS_BYTES = 64; // send key, then receive key

const KPF_VALID = 1;
const KPF_INITIATOR = 2;
/** Worker-written: a packet authenticated on this keypair (the responder may now send). */
const KPF_CONFIRMED = 4;

/**
 * Send counters are 32-bit so a worker claims one with a compare-exchange on an Int32Array (a
 * BigInt counter would allocate per packet). A keypair lives at most 180 s, which at 20 Mpps is
 * 3.6e9 packets, under 2^32; the claim never passes SEND_COUNTER_LIMIT, after which the keypair
 * refuses to send and the peer rekeys: stricter than REKEY_AFTER_MESSAGES (2^60), and no nonce
 * is ever used twice.
 */
export const SEND_COUNTER_LIMIT = 0xffff0000;
export const SEND_COUNTER_REKEY = 0xf0000000;

/** A keypair's usable lifetime, ms (the one age rule for receiving and sending). */
export const REJECT_AFTER_MS = REJECT_AFTER_TIME * 1000;

// Peer table, Int32 words per slot.
const P_CURRENT = 0; // keypair slots, -1 for none
const P_PREVIOUS = 1;
const P_NEXT = 2;
/** Seqlock of the endpoint row: odd while a writer rewrites it. */
const P_ENDPOINT_SEQ = 3;
/** Bumped when the slot's peer is added and when it is removed. */
const P_GEN = 4;
/** Worker-written: 1 while a "handshake wanted" record for the peer is on its way to the main thread. */
const P_HANDSHAKE_WANTED = 5;
const P_STRIDE = 8;

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
/** A peer with no endpoint to send to (the kernel's EDESTADDRREQ). */
export const C_DROP_NO_ENDPOINT = 9;
/** A packet larger than this worker can carry (a datagram beyond the MTU's buffers, a UDP payload past 64 KiB). */
export const C_DROP_TOO_BIG = 10;
/** A packet waiting for a session dropped: the per-peer or per-worker bound, its age, or its peer removed. */
export const C_DROP_STAGED = 11;
/** A datagram the kernel refused to send (other than too big). */
export const C_DROP_SEND = 12;
/** Authenticated packets that moved a peer's endpoint (roaming). */
export const C_ROAMED = 13;
export const C_STRIDE = 16;
export const COUNTER_NAMES = [
  'rx_packets', 'tx_packets', 'drop_no_route', 'drop_no_keypair', 'drop_decrypt', 'drop_replay', 'drop_source', 'drop_malformed',
  'drop_ring_full', 'drop_no_endpoint', 'drop_too_big', 'drop_staged', 'drop_send', 'roamed',
];

// Device-wide words.
export const D_MTU = 0;
/** The allowed-IPs snapshot generation workers must route by. */
export const D_ROUTES_GEN = 1;
export const D_SHUTDOWN = 2;
/** Bumped when a peer gains a usable keypair: workers then send what they staged. */
export const D_KEYS_GEN = 3;
/** Tests only (WGTS_TEST_WORKER_FAULT): worker `value - 1` throws at its next batch. */
export const D_TEST_FAULT = 4;
/**
 * 1 when receiver indices are cluster-routable (src/device/routable.ts): workers then report
 * transport messages with an index that is not ours, which may come from another node's client.
 */
export const D_ROUTABLE = 5;
/**
 * Word D_STAGED + k is 1 while worker k holds staged packets (src/workers/staging.ts). A peer
 * that gains a keypair wakes only such workers: a handshake answered for a client (nearly
 * always nothing staged here) then costs no eventfd write and no worker wake-up. Worker k
 * stores the word before it next reads D_KEYS_GEN, the main thread bumps D_KEYS_GEN before it
 * reads the words, so (sequentially consistent atomics) a worker that staged a packet either
 * is woken or sees the new generation itself.
 */
export const D_STAGED = 16;
/** Device words: the fixed ones, then one D_STAGED word per worker (at most MAX_WORKERS). */
const MAX_WORKERS = 64;
const DEVICE_BYTES = (D_STAGED + MAX_WORKERS) * 4;

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
  device: SharedArrayBuffer;
  epochs: SharedArrayBuffer;
}

/** Session keys as the handshake hands them over. */
export interface KeypairKeys {
  sendKey: Uint8Array;
  receiveKey: Uint8Array;
  remoteIndex: number;
  isInitiator: boolean;
}

/** The keypair table: one row per keypair slot, its keys, birth time and replay window. */
export class KeypairTable {
  readonly capacity: number;
  /** Receiver index bits that name the slot (slotMask). */
  readonly mask: number;
  private readonly w: Int32Array;
  private readonly birth: Float64Array;
  private readonly keys: Uint8Array;
  // Views created once per slot and thread, reused for every packet.
  private readonly sendKeys: (Uint8Array | undefined)[] = [];
  private readonly recvKeys: (Uint8Array | undefined)[] = [];
  private readonly windows: (ReplayWindow | undefined)[] = [];

  constructor(desc: TablesDesc) {
    this.capacity = desc.keypairCapacity;
    this.mask = slotMask(desc.keypairCapacity);
    this.w = new Int32Array(desc.keypairs);
    this.birth = new Float64Array(desc.keypairBirth);
    this.keys = new Uint8Array(desc.keys);
  }

  /** The slot a receiver index names, or -1 when it is not (or no longer) one of ours. */
  lookup(index: number): number {
    const kp = index & this.mask;
    return kp < this.capacity && kp !== 0 && this.w[kp * KP_STRIDE + KP_LOCAL_INDEX] === (index | 0) ? kp : -1;
  }

  /** Installed, not retired, and younger than REJECT_AFTER_TIME at `nowMs` (receive and send alike). */
  usable(kp: number, nowMs: number): boolean {
    return (Atomics.load(this.w, kp * KP_STRIDE + KP_FLAGS) & KPF_VALID) !== 0 && nowMs - this.birth[kp]! < REJECT_AFTER_MS;
  }

  /**
   * Whether keypair `kp` may carry packets out: usable, and with one of the flags `anyOf` (by
   * default: we initiated it, or the peer confirmed it).
   */
  canSend(kp: number, nowMs: number, anyOf = KPF_INITIATOR | KPF_CONFIRMED): boolean {
    return this.usable(kp, nowMs) && (Atomics.load(this.w, kp * KP_STRIDE + KP_FLAGS) & anyOf) !== 0;
  }

  /** A confirmed keypair (the next one, once the initiator's first packet arrived on it). */
  canSendConfirmed(kp: number, nowMs: number): boolean {
    return this.canSend(kp, nowMs, KPF_CONFIRMED);
  }

  /** Takes the next send counter, or -1 once SEND_COUNTER_LIMIT is reached (never passes it). */
  claimCounter(kp: number): number {
    const at = kp * KP_STRIDE + KP_SEND_COUNTER;
    for (;;) {
      const c = Atomics.load(this.w, at);
      if (c >>> 0 >= SEND_COUNTER_LIMIT) return -1;
      if (Atomics.compareExchange(this.w, at, c, (c + 1) | 0) === c) return c >>> 0;
    }
  }

  sendCounter(kp: number): number {
    return Atomics.load(this.w, kp * KP_STRIDE + KP_SEND_COUNTER) >>> 0;
  }

  /** Sets CONFIRMED; true for the one caller that set it. */
  confirmOnce(kp: number): boolean {
    const at = kp * KP_STRIDE + KP_FLAGS;
    return (Atomics.load(this.w, at) & KPF_CONFIRMED) === 0 && (Atomics.or(this.w, at, KPF_CONFIRMED) & KPF_CONFIRMED) === 0;
  }

  isInitiator(kp: number): boolean {
    return (Atomics.load(this.w, kp * KP_STRIDE + KP_FLAGS) & KPF_INITIATOR) !== 0;
  }

  peer(kp: number): number {
    return this.w[kp * KP_STRIDE + KP_PEER]!;
  }

  remoteIndex(kp: number): number {
    return this.w[kp * KP_STRIDE + KP_REMOTE_INDEX]! >>> 0;
  }

  birthOf(kp: number): number {
    return this.birth[kp]!;
  }

  sendKey(kp: number): Uint8Array {
    return (this.sendKeys[kp] ??= this.keys.subarray(kp * KP_KEYS_BYTES, kp * KP_KEYS_BYTES + 32));
  }

  recvKey(kp: number): Uint8Array {
    return (this.recvKeys[kp] ??= this.keys.subarray(kp * KP_KEYS_BYTES + 32, kp * KP_KEYS_BYTES + 64));
  }

  window(kp: number): ReplayWindow {
    return (this.windows[kp] ??= new ReplayWindow(this.w, kp * KP_STRIDE + KP_REPLAY));
  }

  // ---- main thread only ----

  /** Marks slot `kp` as reserved for a handshake of `peer` that will answer to `index`. */
  reserve(kp: number, peer: number, index: number): void {
    const base = kp * KP_STRIDE;
    Atomics.store(this.w, base + KP_FLAGS, 0);
    this.w[base + KP_PEER] = peer;
    this.w[base + KP_LOCAL_INDEX] = index | 0;
  }

  /** Whether a reserved slot has become a keypair. */
  installed(kp: number): boolean {
    return Atomics.load(this.w, kp * KP_STRIDE + KP_FLAGS) !== 0;
  }

  /** Publishes a session in its reserved slot: keys, indices and birth first, FLAGS last. */
  install(kp: number, k: KeypairKeys, nowMs: number): void {
    const base = kp * KP_STRIDE;
    this.keys.set(k.sendKey, kp * KP_KEYS_BYTES);
    this.keys.set(k.receiveKey, kp * KP_KEYS_BYTES + 32);
    this.w[base + KP_REMOTE_INDEX] = k.remoteIndex | 0;
    Atomics.store(this.w, base + KP_SEND_COUNTER, 0);
    this.w.fill(0, base + KP_REPLAY, base + KP_REPLAY + REPLAY_STATE_WORDS);
    this.birth[kp] = nowMs;
    Atomics.store(this.w, base + KP_FLAGS, KPF_VALID | (k.isInitiator ? KPF_INITIATOR : 0));
  }

  /**
   * Unpublishes slot `kp`: no new packet uses it, no index names it. Its keys stay until
   * `wipe`, after the quarantine, because a worker may be sealing with them right now.
   */
  unpublish(kp: number): void {
    const base = kp * KP_STRIDE;
    Atomics.store(this.w, base + KP_FLAGS, 0);
    Atomics.store(this.w, base + KP_LOCAL_INDEX, 0);
  }

  wipe(kp: number, zero: (b: Uint8Array) => void): void {
    zero(this.keys.subarray(kp * KP_KEYS_BYTES, (kp + 1) * KP_KEYS_BYTES));
  }

  /** Every slot's keys (device close). */
  wipeAll(zero: (b: Uint8Array) => void): void {
    zero(this.keys);
  }
}

/** Which of a peer's three keypairs. */
export const KeypairRole = { Current: P_CURRENT, Previous: P_PREVIOUS, Next: P_NEXT } as const;
export type KeypairRole = (typeof KeypairRole)[keyof typeof KeypairRole];

/** The peer table: each peer's keypairs, generation, endpoint (with its seqlock) and flags. */
export class PeerTable {
  readonly capacity: number;
  readonly endpoints: EndpointTable;
  private readonly w: Int32Array;

  constructor(desc: TablesDesc) {
    this.capacity = desc.peerCapacity;
    this.w = new Int32Array(desc.peers);
    this.endpoints = new EndpointTable(desc.peerCapacity, desc.endpoints);
  }

  keypair(peer: number, role: KeypairRole): number {
    return Atomics.load(this.w, peer * P_STRIDE + role);
  }

  /** Main thread only. */
  setKeypair(peer: number, role: KeypairRole, kp: number): void {
    Atomics.store(this.w, peer * P_STRIDE + role, kp);
  }

  /**
   * The keypair to send on, the one rule of both threads: current, or next once the peer has
   * confirmed it (the initiator's first packet arrived and the main thread has not rotated
   * yet); -1 for none.
   */
  sendingKeypair(peer: number, kps: KeypairTable, nowMs: number): number {
    const cur = this.keypair(peer, KeypairRole.Current);
    if (cur >= 0 && kps.canSend(cur, nowMs)) return cur;
    const next = this.keypair(peer, KeypairRole.Next);
    if (next >= 0 && kps.canSendConfirmed(next, nowMs)) return next;
    return -1;
  }

  gen(peer: number): number {
    return Atomics.load(this.w, peer * P_STRIDE + P_GEN);
  }

  /** Main thread only: a new generation for the slot (peer added or removed). Returns it. */
  bumpGen(peer: number): number {
    return (Atomics.add(this.w, peer * P_STRIDE + P_GEN, 1) + 1) | 0;
  }

  /** Sets the handshake-wanted flag; true for the one caller that set it (who tells the main thread). */
  wantHandshake(peer: number): boolean {
    return Atomics.compareExchange(this.w, peer * P_STRIDE + P_HANDSHAKE_WANTED, 0, 1) === 0;
  }

  /** Main thread, on receiving the request: later packets may ask again. */
  clearHandshakeWanted(peer: number): void {
    Atomics.store(this.w, peer * P_STRIDE + P_HANDSHAKE_WANTED, 0);
  }

  /** Copies the peer's endpoint into `dst` row `row`; false when it has none. */
  readEndpoint(peer: number, dst: EndpointTable, row: number): boolean {
    const at = peer * P_STRIDE + P_ENDPOINT_SEQ;
    for (;;) {
      const seq = Atomics.load(this.w, at);
      if ((seq & 1) !== 0) continue;
      copyEndpoint(this.endpoints, peer, dst, row);
      if (Atomics.load(this.w, at) === seq) break;
    }
    return dst.family[row] !== 0;
  }

  /** Whether the peer's endpoint (remote and local address) equals `src` row `row`. */
  endpointIs(peer: number, src: EndpointTable, row: number): boolean {
    const at = peer * P_STRIDE + P_ENDPOINT_SEQ;
    for (;;) {
      const seq = Atomics.load(this.w, at);
      if ((seq & 1) !== 0) continue;
      const same = endpointEquals(this.endpoints, peer, src, row);
      if (Atomics.load(this.w, at) === seq) return same;
    }
  }

  /** Sets the peer's endpoint to `src` row `row` (any thread: roaming, or the main thread). */
  writeEndpointFrom(peer: number, src: EndpointTable, row: number): void {
    this.lockEndpoint(peer);
    copyEndpoint(src, row, this.endpoints, peer);
    this.unlockEndpoint(peer);
  }

  /** Runs `write` on the peer's endpoint row with the writers' lock held (short, never throws). */
  writeEndpoint(peer: number, write: (t: EndpointTable, row: number) => void): void {
    this.lockEndpoint(peer);
    write(this.endpoints, peer);
    this.unlockEndpoint(peer);
  }

  private lockEndpoint(peer: number): void {
    const at = peer * P_STRIDE + P_ENDPOINT_SEQ;
    for (;;) {
      const seq = Atomics.load(this.w, at);
      if ((seq & 1) === 0 && Atomics.compareExchange(this.w, at, seq, (seq + 1) | 0) === seq) return;
    }
  }

  private unlockEndpoint(peer: number): void {
    Atomics.add(this.w, peer * P_STRIDE + P_ENDPOINT_SEQ, 1);
  }

  /** Main thread only: a fresh slot: no keypairs, no endpoint, nothing wanted. */
  reset(peer: number): void {
    this.setKeypair(peer, KeypairRole.Current, -1);
    this.setKeypair(peer, KeypairRole.Previous, -1);
    this.setKeypair(peer, KeypairRole.Next, -1);
    this.clearHandshakeWanted(peer);
    this.writeEndpoint(peer, (t, row) => (t.family[row] = 0));
  }
}

/** Typed views over a TablesDesc; each thread builds its own once. */
export class Tables {
  readonly peers: PeerTable;
  readonly keypairs: KeypairTable;
  readonly stats: Float64Array;
  readonly counters: Float64Array;
  readonly device: Int32Array;
  readonly epochs: EpochDomain;

  static create(peerCapacity: number, keypairCapacity: number, workers: number): Tables {
    if (keypairCapacity > 2 ** KP_SLOT_BITS) throw new RangeError(`at most ${2 ** KP_SLOT_BITS} keypairs`);
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
      device: sab(DEVICE_BYTES),
      epochs: EpochDomain.createBuffer(workers),
    });
  }

  constructor(readonly desc: TablesDesc) {
    this.peers = new PeerTable(desc);
    this.keypairs = new KeypairTable(desc);
    this.stats = new Float64Array(desc.stats);
    this.counters = new Float64Array(desc.counters);
    this.device = new Int32Array(desc.device);
    this.epochs = new EpochDomain(desc.epochs, desc.workers);
  }

  statsBase(worker: number, peer: number): number {
    return (worker * this.desc.peerCapacity + peer) * S_STRIDE;
  }
}
