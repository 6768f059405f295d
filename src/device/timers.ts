/**
 * WireGuard's per-peer timers, with the semantics of the kernel's drivers/net/wireguard/timers.c,
 * as a state machine for every peer of an interface driven by ONE coarse tick.
 *
 * The five timers of a peer:
 * - retransmit_handshake: resend the initiation if no response came REKEY_TIMEOUT + jitter after
 *   sending it; after MAX_TIMER_HANDSHAKES retries give up (drop staged packets, schedule
 *   zeroing of the keys).
 * - send_keepalive: send an empty packet KEEPALIVE_TIMEOUT after receiving data if we have sent
 *   nothing since.
 * - new_handshake: start a new handshake if we sent data and heard nothing back (not even a
 *   keepalive) for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter.
 * - zero_key_material: zero all keys REJECT_AFTER_TIME * 3 after the last session was derived.
 * - persistent_keepalive: if configured, send an empty packet every interval seconds of silence.
 *
 * Call sites report events through the hooks below (each says when to call it, as timers.c
 * does); `tick` expires what is due and reports each expiry as a TimerAction for the caller to
 * carry out. The module never reads the clock: every hook and the tick take `nowMs`.
 *
 * Scale (an interface may hold 1,000,000 peers): state lives in typed arrays indexed by peer
 * slot, five timer nodes per peer. Armed nodes sit in a hashed timing wheel of `bucketMs`-wide
 * buckets, as intrusive circular doubly-linked lists threaded through the node arrays, so arming,
 * moving and cancelling are O(1) and allocate nothing, and a tick visits only the buckets that
 * elapsed and the nodes in them: its cost follows the armed timers, not the number of peers.
 * A deadline moved later (persistent keepalive pushed forward on every packet, zeroing pushed
 * forward by each new session) only rewrites the deadline; the node stays in its earlier bucket
 * and is moved when that bucket is visited (lazy invalidation). A deadline moved earlier is
 * relinked at once. Invariant: an armed node sits in a bucket whose tick is no later than its
 * deadline's tick and no earlier than the wheel's cursor, so it is visited in time.
 */
import {
  REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME, REJECT_AFTER_TIME, REKEY_TIMEOUT, REKEY_TIMEOUT_JITTER_MAX_MS, KEEPALIVE_TIMEOUT,
  MAX_TIMER_HANDSHAKES, ZERO_KEY_MATERIAL_TIME,
} from '../handshake/constants.js';


const S = 1000;

/** What the tick asks the caller to do for a peer. */
export const TimerAction = {
  /** Send a keepalive (an empty data packet): we received data and have not sent anything. */
  SendKeepalive: 1,
  /**
   * Resend the initiation as a retry (the third argument is the retry number, 1-based). The
   * send path must not reset the retry count, and calls handshakeInitiated once it is sent.
   */
  RetryHandshake: 2,
  /**
   * Start a new handshake: we sent data and heard nothing back. The retry count has already
   * been reset; the send path calls handshakeInitiated once the initiation is sent.
   */
  NewHandshake: 3,
  /** The handshake failed for good: drop the peer's staged packets. Key zeroing is scheduled. */
  GiveUp: 4,
  /** Zero the peer's handshake state and all its keypairs. */
  ZeroKeys: 5,
  /** Send a keepalive for the persistent-keepalive interval. */
  SendPersistentKeepalive: 6,
} as const;
export type TimerAction = (typeof TimerAction)[keyof typeof TimerAction];

/** Receives every expiry of a tick; `attempt` is the retry number for RetryHandshake, else 0. */
export type TimerEmit = (peer: number, action: TimerAction, attempt: number) => void;

/** The five timers of a peer, for isPending/deadlineOf. */
export const TimerKind = {
  RetransmitHandshake: 0,
  SendKeepalive: 1,
  NewHandshake: 2,
  ZeroKeyMaterial: 3,
  PersistentKeepalive: 4,
} as const;
export type TimerKind = (typeof TimerKind)[keyof typeof TimerKind];
const {
  RetransmitHandshake: RETRANSMIT_HANDSHAKE,
  SendKeepalive: SEND_KEEPALIVE,
  NewHandshake: NEW_HANDSHAKE,
  ZeroKeyMaterial: ZERO_KEY_MATERIAL,
} = TimerKind;
/** The node of (peer, kind) is firstNode + peer * KINDS + kind. */
const KINDS = 5;

// Per-peer flag bits.
const LIVE = 1;
const NEED_ANOTHER_KEEPALIVE = 2;
const SENT_LASTMINUTE_HANDSHAKE = 4;

/** `next` of a node that is in no list. */
const UNLINKED = -1;
/** Peer slots and wheel buckets stay below this, so node indices fit an Int32Array. */
const MAX_SLOTS = 1 << 24;

export interface TimersOptions {
  /** Initial number of peer slots; grows on demand (init). Default 1024. */
  capacity?: number;
  /**
   * Width of a wheel bucket in ms (default 100): about the tick period. Timers fire on the
   * first tick at or after their deadline whatever the width; it only sets how nodes spread.
   */
  bucketMs?: number;
  /** Buckets in the wheel, a power of two; bucketMs × buckets should exceed 540 s. Default 8192. */
  buckets?: number;
  /** Uniform in [0, 1), for the handshake jitter. Default Math.random. */
  random?: () => number;
}

export class Timers {
  private readonly bucketMs: number;
  private readonly bucketMask: number;
  /** Sentinel of the list of due nodes waiting for their action during a tick. */
  private readonly expired: number;
  /** First timer node: buckets' sentinels are nodes 0..buckets-1, then `expired`. */
  private readonly firstNode: number;
  private readonly random: () => number;
  private capacityPeers = 0;
  /**
   * Peers whose nodes were ever marked UNLINKED (by `init`, not by `grow`): the arrays of a
   * large capacity stay untouched zero pages, no resident memory, until peers use them.
   */
  private readyPeers = 0;
  private next = new Int32Array(0);
  private prev = new Int32Array(0);
  private deadline = new Float64Array(0);
  private flags = new Uint8Array(0);
  private attempts = new Uint8Array(0);
  private keepaliveInterval = new Uint16Array(0);
  /** Tick number (floor(ms / bucketMs)) of the bucket the next tick starts from. */
  private cursor = -Infinity;
  private visited = 0;
  private bucketsVisited = 0;

  constructor(options: TimersOptions = {}) {
    const buckets = options.buckets ?? 8192;
    const bucketMs = options.bucketMs ?? 100;
    if (!Number.isSafeInteger(buckets) || buckets < 2 || buckets > MAX_SLOTS || (buckets & (buckets - 1)) !== 0) {
      throw new RangeError(`Timers buckets must be a power of two in [2, 2^24], got ${buckets}`);
    }
    if (!(bucketMs > 0 && bucketMs < Infinity)) {
      throw new RangeError(`Timers bucketMs must be positive, got ${bucketMs}`);
    }
    this.bucketMs = bucketMs;
    this.bucketMask = buckets - 1;
    this.expired = buckets;
    this.firstNode = buckets + 1;
    const capacity = options.capacity ?? 1024;
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > MAX_SLOTS) {
      throw new RangeError(`Timers capacity must be an integer in [1, 2^24], got ${capacity}`);
    }
    this.random = options.random ?? Math.random;
    this.grow(capacity);
  }

  /** Peer slots currently allocated. */
  get capacity(): number {
    return this.capacityPeers;
  }

  /** Timer nodes examined by the last tick: the measure of its cost. */
  get lastTickVisited(): number {
    return this.visited;
  }

  /** Wheel buckets examined by the last tick. */
  get lastTickBuckets(): number {
    return this.bucketsVisited;
  }

  // ---- Peer lifecycle ----

  /** Call when a peer is created in slot `peer` (wg_timers_init): no timer armed, counters reset. */
  init(peer: number): void {
    if (!Number.isSafeInteger(peer) || peer < 0 || peer >= MAX_SLOTS) {
      throw new RangeError(`Timers peer slot must be an integer in [0, 2^24), got ${peer}`);
    }
    if (peer >= this.capacityPeers) this.grow(Math.min(Math.max(peer + 1, this.capacityPeers * 2), MAX_SLOTS));
    if (peer >= this.readyPeers) {
      this.next.fill(UNLINKED, this.node(this.readyPeers, 0), this.node(peer + 1, 0));
      this.readyPeers = peer + 1;
    }
    this.cancelAll(peer);
    this.flags[peer] = LIVE;
    this.attempts[peer] = 0;
    this.keepaliveInterval[peer] = 0;
  }

  /**
   * Call after the peer was unpublished and marked dead (wg_timers_stop): cancels all its
   * timers, and hooks for the slot do nothing until `init` is called for it again.
   */
  stop(peer: number): void {
    if (!this.isLive(peer)) return;
    this.cancelAll(peer);
    this.flags[peer] = 0;
  }

  /**
   * Set the persistent-keepalive interval in seconds (0 disables). Returns true when the caller
   * should send a keepalive now: the interval was just turned on (netlink.c does this so that
   * the traversal re-arms the timer). Turning it off leaves an armed timer to expire harmlessly.
   */
  setPersistentKeepalive(peer: number, intervalSec: number): boolean {
    if (!Number.isInteger(intervalSec) || intervalSec < 0 || intervalSec > 0xffff) {
      throw new RangeError(`persistent keepalive interval must be an integer in [0, 65535], got ${intervalSec}`);
    }
    if (!this.isLive(peer)) return false;
    const turnedOn = this.keepaliveInterval[peer] === 0 && intervalSec !== 0;
    this.keepaliveInterval[peer] = intervalSec;
    return turnedOn;
  }

  /** The persistent-keepalive interval in seconds (0: off). */
  persistentKeepalive(peer: number): number {
    return this.isLive(peer) ? this.keepaliveInterval[peer]! : 0;
  }

  /** Retries of the current handshake so far. */
  handshakeAttempts(peer: number): number {
    return this.isLive(peer) ? this.attempts[peer]! : 0;
  }

  /** Whether the timer `kind` of a peer is armed (for tests and introspection). */
  isPending(peer: number, kind: TimerKind): boolean {
    return this.isLive(peer) && this.next[this.node(peer, kind)] !== UNLINKED;
  }

  /** Deadline in ms of an armed timer, or NaN. */
  deadlineOf(peer: number, kind: TimerKind): number {
    return this.isPending(peer, kind) ? this.deadline[this.node(peer, kind)]! : NaN;
  }

  // ---- Event hooks ----

  /** Call after an authenticated data packet is sent. */
  dataSent(peer: number, nowMs: number): void {
    if (!this.isLive(peer)) return;
    const n = this.node(peer, NEW_HANDSHAKE);
    if (this.next[n] === UNLINKED) this.arm(n, nowMs + (KEEPALIVE_TIMEOUT + REKEY_TIMEOUT) * S + this.jitter());
  }

  /** Call after an authenticated data packet is received. */
  dataReceived(peer: number, nowMs: number): void {
    if (!this.isLive(peer)) return;
    const n = this.node(peer, SEND_KEEPALIVE);
    if (this.next[n] === UNLINKED) this.arm(n, nowMs + KEEPALIVE_TIMEOUT * S);
    else this.flags[peer] |= NEED_ANOTHER_KEEPALIVE;
  }

  /** Call after any authenticated packet is sent: keepalive, data or handshake. */
  anyAuthenticatedPacketSent(peer: number): void {
    if (this.isLive(peer)) this.cancel(this.node(peer, SEND_KEEPALIVE));
  }

  /** Call after any authenticated packet is received: keepalive, data or handshake. */
  anyAuthenticatedPacketReceived(peer: number): void {
    if (this.isLive(peer)) this.cancel(this.node(peer, NEW_HANDSHAKE));
  }

  /** Call after a handshake initiation message is sent (first try or retry). */
  handshakeInitiated(peer: number, nowMs: number): void {
    if (!this.isLive(peer)) return;
    this.arm(this.node(peer, RETRANSMIT_HANDSHAKE), nowMs + REKEY_TIMEOUT * S + this.jitter());
  }

  /**
   * Call when a handshake initiation is queued for any reason but a retry (keys getting old on
   * send or receive, staged packets without a usable key, a configuration change): like
   * send.c's wg_packet_send_queued_handshake_initiation(peer, false), restarts the retry count.
   */
  handshakeRequested(peer: number): void {
    if (this.isLive(peer)) this.attempts[peer] = 0;
  }

  /**
   * Call after a handshake response is received and processed, or when the first data message
   * on a new keypair confirms it (responder side). The caller records the handshake wall time.
   */
  handshakeComplete(peer: number): void {
    if (!this.isLive(peer)) return;
    this.cancel(this.node(peer, RETRANSMIT_HANDSHAKE));
    this.attempts[peer] = 0;
    this.flags[peer] &= ~SENT_LASTMINUTE_HANDSHAKE;
  }

  /**
   * Call after an ephemeral key is created: before sending a handshake response, or after
   * receiving one.
   */
  sessionDerived(peer: number, nowMs: number): void {
    if (!this.isLive(peer)) return;
    this.arm(this.node(peer, ZERO_KEY_MATERIAL), nowMs + ZERO_KEY_MATERIAL_TIME * S);
  }

  /** Call before any authenticated packet is sent, or after one is received. */
  anyAuthenticatedPacketTraversal(peer: number, nowMs: number): void {
    if (!this.isLive(peer)) return;
    const interval = this.keepaliveInterval[peer]!;
    if (interval !== 0) this.arm(this.node(peer, TimerKind.PersistentKeepalive), nowMs + interval * S);
  }

  /**
   * The receive path's keep_key_fresh: call after a data packet is received on the current
   * keypair. True (at most once per handshake, until handshakeComplete) when the initiator
   * should start a handshake before the keypair expires; the caller then queues an initiation
   * and calls handshakeRequested.
   */
  lastMinuteHandshake(peer: number, isInitiator: boolean, keypairBirthMs: number, nowMs: number): boolean {
    if (!this.isLive(peer) || (this.flags[peer]! & SENT_LASTMINUTE_HANDSHAKE) !== 0) return false;
    if (!shouldRekeyOnReceive(isInitiator, keypairBirthMs, nowMs)) return false;
    this.flags[peer] |= SENT_LASTMINUTE_HANDSHAKE;
    return true;
  }

  // ---- The tick ----

  /**
   * Expire every timer due at `nowMs` and report each as an action. Call periodically (every
   * bucketMs or so) for the whole interface: a timer fires on the first tick at or after its
   * deadline. Timers due in the same tick fire in no particular order (like timers of one
   * jiffy in the kernel); `emit` may call any hook, and a timer it cancels or re-arms before
   * its own turn comes does not fire (as with del_timer/mod_timer).
   */
  tick(nowMs: number, emit: TimerEmit): void {
    if (!Number.isFinite(nowMs)) throw new RangeError(`Timers.tick needs a finite nowMs, got ${nowMs}`);
    const next = this.next;
    const deadline = this.deadline;
    const mask = this.bucketMask;
    const target = Math.max(Math.floor(nowMs / this.bucketMs), this.cursor);
    // Past buckets are revisited from the cursor; after a gap longer than the wheel one lap
    // visits every node once, which is all it takes.
    const count = Math.min(target - this.cursor + 1, mask + 1);
    let visited = 0;
    for (let t = target - count + 1; t <= target; t++) {
      const bucket = t & mask;
      let n = next[bucket]!;
      while (n !== bucket) {
        const after = next[n]!;
        visited++;
        const d = deadline[n]!;
        if (d <= nowMs) {
          this.unlink(n);
          this.linkBefore(n, this.expired);
        } else {
          const home = Math.floor(d / this.bucketMs) & mask;
          if (home !== bucket) {
            this.unlink(n);
            this.linkBefore(n, home);
          }
        }
        n = after;
      }
    }
    // The current bucket stays at the cursor: it may still hold nodes due later in this tick.
    this.cursor = target;
    this.visited = visited;
    this.bucketsVisited = count;

    // Actions run hooks, and init() may grow (replace) the arrays: no cached views from here.
    const expired = this.expired;
    for (let n = this.next[expired]!; n !== expired; n = this.next[expired]!) {
      this.unlink(n);
      // A hook run by an earlier action may have moved this deadline later.
      if (this.deadline[n]! > nowMs) this.link(n);
      else this.expire(n, nowMs, emit);
    }
  }

  // ---- Internals ----

  private expire(n: number, nowMs: number, emit: TimerEmit): void {
    const rel = n - this.firstNode;
    const peer = Math.floor(rel / KINDS);
    switch (rel - peer * KINDS) {
      case RETRANSMIT_HANDSHAKE:
        if (this.attempts[peer]! > MAX_TIMER_HANDSHAKES) {
          this.cancel(this.node(peer, SEND_KEEPALIVE));
          emit(peer, TimerAction.GiveUp, 0);
          // The hook may have stopped the peer.
          if (!this.isLive(peer)) return;
          const zero = this.node(peer, ZERO_KEY_MATERIAL);
          if (this.next[zero] === UNLINKED) this.arm(zero, nowMs + ZERO_KEY_MATERIAL_TIME * S);
        } else {
          const attempt = this.attempts[peer]! + 1;
          this.attempts[peer] = attempt;
          emit(peer, TimerAction.RetryHandshake, attempt);
        }
        return;
      case SEND_KEEPALIVE:
        emit(peer, TimerAction.SendKeepalive, 0);
        if (this.isLive(peer) && (this.flags[peer]! & NEED_ANOTHER_KEEPALIVE) !== 0) {
          this.flags[peer] &= ~NEED_ANOTHER_KEEPALIVE;
          this.arm(n, nowMs + KEEPALIVE_TIMEOUT * S);
        }
        return;
      case NEW_HANDSHAKE:
        this.attempts[peer] = 0;
        emit(peer, TimerAction.NewHandshake, 0);
        return;
      case ZERO_KEY_MATERIAL:
        emit(peer, TimerAction.ZeroKeys, 0);
        return;
      default: // persistent keepalive
        if (this.keepaliveInterval[peer] !== 0) emit(peer, TimerAction.SendPersistentKeepalive, 0);
    }
  }

  private isLive(peer: number): boolean {
    // Out-of-range or fractional slots read undefined, which is not live.
    return (this.flags[peer]! & LIVE) !== 0;
  }

  private node(peer: number, kind: number): number {
    return this.firstNode + peer * KINDS + kind;
  }

  private jitter(): number {
    return this.random() * REKEY_TIMEOUT_JITTER_MAX_MS;
  }

  /** mod_timer: arm or re-arm node `n` to fire at `at`. */
  private arm(n: number, at: number): void {
    // A NaN deadline would sit in the wheel forever.
    if (Number.isNaN(at)) throw new RangeError('Timers: a hook was given a NaN nowMs');
    const armed = this.next[n] !== UNLINKED;
    const earlier = at < this.deadline[n]!;
    this.deadline[n] = at;
    if (armed && !earlier) return; // lazy: moved when its current bucket is visited
    if (armed) this.unlink(n);
    this.link(n);
  }

  /** del_timer */
  private cancel(n: number): void {
    if (this.next[n] !== UNLINKED) this.unlink(n);
  }

  private cancelAll(peer: number): void {
    for (let k = 0; k < KINDS; k++) this.cancel(this.node(peer, k));
  }

  /** Link into the bucket of the node's deadline, or the cursor's if that has passed. */
  private link(n: number): void {
    const t = Math.max(Math.floor(this.deadline[n]! / this.bucketMs), this.cursor);
    this.linkBefore(n, t & this.bucketMask);
  }

  /** Append `n` to the circular list whose sentinel is `head`. */
  private linkBefore(n: number, head: number): void {
    const last = this.prev[head]!;
    this.next[last] = n;
    this.prev[n] = last;
    this.next[n] = head;
    this.prev[head] = n;
  }

  private unlink(n: number): void {
    const p = this.prev[n]!;
    const q = this.next[n]!;
    this.next[p] = q;
    this.prev[q] = p;
    this.next[n] = UNLINKED;
  }

  private grow(peers: number): void {
    const nodes = this.firstNode + peers * KINDS;
    const oldNodes = this.next.length;
    const next = new Int32Array(nodes);
    const prev = new Int32Array(nodes);
    const deadline = new Float64Array(nodes);
    next.set(this.next);
    prev.set(this.prev);
    deadline.set(this.deadline);
    if (oldNodes === 0) {
      // Sentinels start as empty circular lists: each points at itself.
      for (let s = 0; s < this.firstNode; s++) next[s] = prev[s] = s;
    }
    this.next = next;
    this.prev = prev;
    this.deadline = deadline;
    const flags = new Uint8Array(peers);
    const attempts = new Uint8Array(peers);
    const interval = new Uint16Array(peers);
    flags.set(this.flags);
    attempts.set(this.attempts);
    interval.set(this.keepaliveInterval);
    this.flags = flags;
    this.attempts = attempts;
    this.keepaliveInterval = interval;
    this.capacityPeers = peers;
  }
}

// ---- Rekey decisions of send.c and receive.c (keep_key_fresh), pure ----

/**
 * After sending on the current keypair (which the caller has checked is valid for sending):
 * true when a new handshake should be queued, because the keypair has sent more than
 * REKEY_AFTER_MESSAGES, or we initiated it and it is REKEY_AFTER_TIME old. Ages compare as the
 * kernel's wg_birthdate_has_expired does: expired once birth + limit <= now.
 */
export function shouldRekeyOnSend(
  isInitiator: boolean,
  keypairBirthMs: number,
  sendCounter: number,
  nowMs: number,
): boolean {
  return sendCounter > REKEY_AFTER_MESSAGES || (isInitiator && keypairBirthMs + REKEY_AFTER_TIME * S <= nowMs);
}

/**
 * After receiving on the current keypair: true when we initiated it and it is within
 * KEEPALIVE_TIMEOUT + REKEY_TIMEOUT of REJECT_AFTER_TIME, so a handshake must start now to
 * finish before the keypair is rejected. Timers.lastMinuteHandshake adds the once-per-handshake
 * latch that receive.c keeps.
 */
export function shouldRekeyOnReceive(isInitiator: boolean, keypairBirthMs: number, nowMs: number): boolean {
  return isInitiator && keypairBirthMs + (REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT) * S <= nowMs;
}
