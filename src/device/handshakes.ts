// The control plane's packet work on the main thread (the kernel's receive.c handshake path and
// send.c's handshake and keepalive sending): records from the workers, handshake messages in and
// out, cookies under load, and the coarse tick that turns the workers' per-peer timestamps into
// timer events and runs every peer's timers. It reaches the device only through the narrow
// HandshakeContext below.
import type { Logger } from 'pino';
import { SessionKeys, type ConsumeResult, type Handshake, type Noise, type Rejection } from '../handshake/noise.js';
import { HandshakeOffload, type PrepareBatch } from '../handshake/offload.js';
import { markUnderLoad, underLoad, type CookieChecker } from '../handshake/cookie.js';
import type { RateLimiter } from '../handshake/ratelimiter.js';
import type { EphemeralPool } from '../handshake/ephemerals.js';
import {
  INIT_LEN, RESP_LEN, COOKIE_REPLY_LEN, MSG_INITIATION, MSG_RESPONSE, MSG_COOKIE_REPLY, INIT_SENDER, RESP_SENDER,
  COOKIE_RECEIVER, messageType, readU32,
} from '../handshake/messages.js';
import { REKEY_TIMEOUT } from '../handshake/constants.js';
import { TransportCrypto } from '../workers/transport.js';
import { Records, RecordKind } from '../queues/records.js';
import type { Slab } from '../queues/slab.js';
import { DatagramBatch } from '../net/datagram-batch.js';
import { EndpointTable, formatEndpoint } from '../net/endpoint.js';
import { TimerAction, shouldRekeyOnSend, type Timers } from './timers.js';
import {
  Tables, now, S_LAST_DATA_SENT, S_LAST_DATA_RECEIVED, S_LAST_AUTH_SENT, S_LAST_AUTH_RECEIVED, S_TX_BYTES, S_RX_BYTES, D_MTU,
  D_KEYS_GEN, D_ROUTABLE, SEND_COUNTER_REKEY,
} from '../queues/tables.js';
import type { Keypairs } from './keypairs.js';
import type { Peer } from './peer.js';
import { RoutedInitiations } from './routable.js';

/** What the handshake code needs of the device, and nothing more. */
export interface HandshakeContext {
  readonly noise: Noise;
  /** The ephemerals `noise` takes; refilled here in idle time. */
  readonly ephemerals: EphemeralPool;
  readonly checker: CookieChecker;
  readonly limiter: RateLimiter;
  readonly timers: Timers;
  readonly tables: Tables;
  readonly keypairs: Keypairs;
  readonly log: Logger;
  /** The stats row the main thread writes. */
  readonly mainRow: number;
  readonly pool: {
    readonly slab: Slab;
    readonly slotEndpoints: EndpointTable;
    pending(): number;
    wakeAll(): void;
    /** Wakes the workers holding staged packets; call after bumping D_KEYS_GEN. */
    wakeStaged(): void;
  };
  peerByKey(publicKey: Uint8Array): Peer | undefined;
  peerAt(slot: number): Peer | undefined;
  /** The peers a cluster-routable index may belong to (none without routable indices). */
  routedPeers(index: number): Peer[];
  /** The socket the main thread sends from. */
  udpFd(): number;
  deviceGone(): void;
}

/** Handshake messages the main thread will queue before declaring itself under load. */
const HANDSHAKE_QUEUE_CAPACITY = 1024;
const REKEY_TIMEOUT_MS = REKEY_TIMEOUT * 1000;

/**
 * Why a handshake message was rejected: before the Noise work, or by it (noise.ts); `queue`:
 * the offload pool already held HANDSHAKE_QUEUE_CAPACITY initiations (the bounded queue).
 */
type HandshakeRejection = 'mac1' | 'cookie' | 'ratelimit' | 'queue' | Rejection;
const noRejections = (): Record<HandshakeRejection, number> =>
  ({ mac1: 0, cookie: 0, ratelimit: 0, queue: 0, dh: 0, decrypt: 0, 'unknown-peer': 0, replay: 0, flood: 0, state: 0 });

export interface HandshakeOptions {
  /** Threads of the offload pool; 0 answers every initiation on the main thread. */
  threads: number;
  /** Queue depth (messages waiting in the workers' rings, plus those waiting for a pool thread) from which initiations go to the pool. */
  offloadDepth: number;
}

/** What the tick last saw of a peer's data-plane timestamps. */
interface Seen { dataSent: number; dataReceived: number; authSent: number; authReceived: number }

export class Handshakes {
  private readonly session = new SessionKeys();
  private readonly transport = new TransportCrypto();
  private readonly msg = new Uint8Array(new ArrayBuffer(2048));
  private readonly source = new Uint8Array(18);
  private readonly records: Records;
  /**
   * Every datagram the main thread sends, queued and sent with one sendmmsg at the end of the
   * synchronous run that produced it (a microtask): under a flood, one syscall per batch of
   * records instead of one per response. `flushQueued` keeps it to one microtask per run.
   */
  private readonly sender: DatagramBatch;
  private flushQueued = false;
  /** Some peer got a keypair in this run: wake the workers once, at the flush, not per handshake. */
  private wakePending = false;
  private readonly flushNow = (): void => this.flush();
  private refillQueued = false;
  /**
   * One ephemeral key pair made ahead of time per event-loop turn while no handshake message
   * waits: the key generation then leaves the next handshake's round trip. Under a flood the
   * queue is never empty, nothing is made ahead and handshakes make their own, so it adds no work.
   */
  private readonly refillStep = (): void => {
    this.refillQueued = false;
    // No key: the device is closing or unconfigured, and made keys would outlive its wipe.
    if (!this.d.noise.hasPrivateKey || this.queueDepth() > 0 || !this.d.ephemerals.refill()) return;
    this.queueRefill();
  };
  /** A peer's endpoint copied out of the shared table (under its seqlock) to send to. */
  private readonly to = new EndpointTable(1);
  /** Under load until this time (on the shared clock `now()`); the metrics endpoint reads it too. */
  readonly load = { untilMs: 0 };
  /**
   * Counters for the metrics endpoint (src/metrics). `cookie` rejections are the messages answered
   * with a cookie reply instead (mac2 missing under load); `mac1` includes having no private key.
   */
  readonly stats = {
    completed: 0, cookieRepliesSent: 0, offloaded: 0, rejected: { initiation: noRejections(), response: noRejections() },
    /** Unknown indices reported by the workers (cluster mode), initiations they started, and those the limits refused. */
    routed: { reports: 0, initiations: 0, limited: 0 },
  };
  private readonly routedLimits = new RoutedInitiations();
  readonly offload: HandshakeOffload | null;
  /**
   * Peers that hold or held a session until their keys were zeroed: only they can have data-plane
   * activity, so the tick looks at them and not at every configured peer.
   */
  private readonly active = new Map<Peer, Seen>();
  private lastGcMs = 0;
  private readonly scratch: Seen = { dataSent: 0, dataReceived: 0, authSent: 0, authReceived: 0 };

  /** The device's key index finds the peer of an initiation without allocating. */
  private readonly lookupStatic = (pk: Uint8Array): Handshake | undefined => this.d.peerByKey(pk)?.handshake;

  constructor(private readonly d: HandshakeContext, private readonly o: HandshakeOptions) {
    this.records = new Records(d.pool.slab);
    this.sender = new DatagramBatch(() => d.udpFd(), (tag, sent, refused) => this.sent(tag, sent, refused));
    this.offload = o.threads > 0
      ? new HandshakeOffload({
        threads: o.threads,
        capacity: HANDSHAKE_QUEUE_CAPACITY,
        done: (batch, current) => this.prepared(batch, current),
        failed: (count, err) => {
          this.stats.rejected.initiation.state += count;
          if (err !== undefined) d.log.error({ err }, 'handshake offload pool failed');
        },
        health: (healthy, why) => {
          if (healthy) d.log.info({ why }, 'handshake offload pool is back');
          else d.log.error({ why }, 'handshake offload pool is down: initiations are answered on the main thread until it is back');
        },
      })
      : null;
  }

  peerRemoved(peer: Peer): void {
    this.active.delete(peer);
  }

  /** Starts watching a peer that has just got a session, from its current timestamps. */
  private activate(peer: Peer): void {
    if (this.active.has(peer)) return;
    const seen = { dataSent: 0, dataReceived: 0, authSent: 0, authReceived: 0 };
    this.latest(peer, seen);
    this.active.set(peer, seen);
  }

  /** The latest of each data-plane timestamp of a peer over all workers, into `out`. */
  private latest(peer: Peer, out: Seen): void {
    const t = this.d.tables;
    out.dataSent = out.dataReceived = out.authSent = out.authReceived = 0;
    for (let w = 0; w < this.d.mainRow; w++) {
      const s = t.statsBase(w, peer.slot);
      out.dataSent = Math.max(out.dataSent, t.stats[s + S_LAST_DATA_SENT]!);
      out.dataReceived = Math.max(out.dataReceived, t.stats[s + S_LAST_DATA_RECEIVED]!);
      out.authSent = Math.max(out.authSent, t.stats[s + S_LAST_AUTH_SENT]!);
      out.authReceived = Math.max(out.authReceived, t.stats[s + S_LAST_AUTH_RECEIVED]!);
    }
  }

  // ---- records from the workers ----

  onRecord(slot: number): void {
    const slab = this.d.pool.slab;
    try {
      const kind = this.records.kind(slot);
      if (kind === RecordKind.Handshake) {
        const start = slab.base(slot) + slab.offset(slot);
        this.receiveHandshake(slab.bytes.subarray(start, start + slab.length(slot)), slot);
      } else if (kind === RecordKind.DeviceGone) {
        this.d.deviceGone();
      } else if (kind === RecordKind.UnknownIndex) {
        this.unknownIndex(this.records.arg(slot) >>> 0, slot);
      } else {
        // About a peer: only if the slot still holds the peer the worker saw.
        const peer = this.d.peerAt(slab.peer(slot));
        if (peer === undefined || peer.gen !== this.records.peerGen(slot)) return;
        if (kind === RecordKind.Confirmed) this.confirmed(peer, this.records.arg(slot));
        else if (kind === RecordKind.HandshakeWanted) this.handshakeWanted(peer);
      }
    } finally {
      slab.free(slot);
    }
  }

  /** A worker authenticated the first packet on the peer's next keypair: it becomes current. */
  private confirmed(peer: Peer, kp: number): void {
    if (!this.d.keypairs.confirm(peer.slot, kp)) return;
    this.d.timers.handshakeComplete(peer.slot);
    peer.lastHandshakeWallMs = Date.now();
    this.stats.completed++;
    this.keysChanged();
  }

  /** A worker has packets for the peer and no keypair to send them on. */
  private handshakeWanted(peer: Peer): void {
    this.d.tables.peers.clearHandshakeWanted(peer.slot);
    if (this.sendingKeypair(peer, now()) >= 0) this.keysChanged();
    else this.sendInitiation(peer, false);
  }

  /**
   * A transport message came on an index that is not ours, with cluster-routable indices: most
   * likely a client of a node that went away, whose route now leads here, still sending on that
   * node's session. Its index names the client, so we start a handshake to where the message
   * came from instead of waiting for the client's retry timer (15 s). A client that has
   * authenticated a packet here within REKEY_TIMEOUT is using a session with us and is left
   * alone (the message is a straggler). The message is unauthenticated: the initiation goes
   * only to its source, without retries and without touching the peer's endpoint (the response
   * sets that), within RoutedInitiations' limits.
   */
  private unknownIndex(index: number, slot: number): void {
    const d = this.d;
    this.stats.routed.reports++;
    if (!d.noise.hasPrivateKey) return;
    const ms = now();
    for (const peer of d.routedPeers(index)) {
      this.latest(peer, this.scratch);
      if (ms - this.scratch.authReceived < REKEY_TIMEOUT_MS) continue;
      if (!this.routedLimits.allow(peer.lastInitiationSentMs, ms)) {
        this.stats.routed.limited++;
        continue;
      }
      if (this.initiate(peer, d.pool.slotEndpoints, slot, ms)) {
        this.stats.routed.initiations++;
        d.log.debug({ peer: peer.slot }, 'sent handshake initiation for an unknown index');
      }
    }
  }

  /** A peer has a keypair to send on now: workers send what they staged (woken at the flush). */
  private keysChanged(): void {
    Atomics.add(this.d.tables.device, D_KEYS_GEN, 1);
    this.wakePending = true;
    this.queueFlush();
  }

  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(this.flushNow);
  }

  /**
   * Sends what this run queued and wakes the workers if a keypair appeared. Runs as a microtask
   * after every synchronous run that queued something; callers may also call it directly.
   */
  flush(): void {
    this.flushQueued = false;
    try {
      this.sender.flush();
    } finally {
      if (this.wakePending) {
        this.wakePending = false;
        this.d.pool.wakeStaged();
      }
      this.queueRefill();
    }
  }

  private queueRefill(): void {
    if (this.refillQueued || this.d.ephemerals.size === this.d.ephemerals.capacity) return;
    this.refillQueued = true;
    setImmediate(this.refillStep);
  }

  /**
   * What became of a queued datagram: `tag` is the peer slot it went to (counted in its tx
   * bytes; a refused sticky source is forgotten for the workers too), or -1 for a cookie reply.
   * The flush runs in the same turn as the queueing, so the slot still holds that peer.
   */
  private sent(tag: number, sent: number, sourceRefused: boolean): void {
    const d = this.d;
    if (tag < 0) {
      if (sent > 0) this.stats.cookieRepliesSent++;
      return;
    }
    if (sent > 0) d.tables.stats[d.tables.statsBase(d.mainRow, tag) + S_TX_BYTES] += sent;
    // The kernel refused the sticky source: routed from now on, for the workers too.
    if (sourceRefused) d.tables.peers.writeEndpoint(tag, (t, row) => t.clearSource(row));
  }

  private queueDepth(): number {
    return this.d.pool.pending() + (this.offload?.backlog() ?? 0);
  }

  private receiveHandshake(msg: Uint8Array, slot: number): void {
    const d = this.d;
    const type = messageType(msg, 0, msg.length);
    const ms = now();
    if (type === MSG_COOKIE_REPLY) {
      // It answers an initiation we sent or a response (whose sender index is a keypair slot
      // we reserved for the session): either way the index names the peer.
      this.peerByIndex(readU32(msg, COOKIE_RECEIVER))?.cookies.consumeReply(msg, ms);
      return;
    }
    const rejected = type === MSG_INITIATION ? this.stats.rejected.initiation : this.stats.rejected.response;
    if (!d.noise.hasPrivateKey || !d.checker.checkMac1(msg, msg.length)) {
      rejected.mac1++;
      return;
    }
    const ep = d.pool.slotEndpoints;
    if (underLoad(this.load, this.queueDepth(), HANDSHAKE_QUEUE_CAPACITY, ms)) {
      this.source.set(ep.addr.subarray(16 * slot, 16 * slot + 16));
      this.source[16] = ep.port[slot]! >> 8;
      this.source[17] = ep.port[slot]! & 0xff;
      if (!d.checker.checkMac2(msg, msg.length, this.source, ms)) {
        const sender = readU32(msg, type === MSG_INITIATION ? INIT_SENDER : RESP_SENDER);
        const reply = this.msg.subarray(0, COOKIE_REPLY_LEN);
        d.checker.createReply(reply, msg, msg.length, sender, this.source, ms);
        this.sender.queue(this.msg, 0, COOKIE_REPLY_LEN, ep, slot, -1);
        this.queueFlush();
        rejected.cookie++;
        return;
      }
      const v4 = ep.family[slot] === 4;
      if (!d.limiter.allow(ep.addr, 16 * slot + (v4 ? 12 : 0), v4 ? 4 : 16, ms * 1e6)) {
        rejected.ratelimit++;
        return;
      }
    }
    if (type === MSG_INITIATION) this.receiveInitiation(msg, slot, ms);
    else if (type === MSG_RESPONSE) this.receiveResponse(msg, slot, ms);
  }

  private receiveInitiation(msg: Uint8Array, slot: number, ms: number): void {
    const d = this.d;
    const offload = this.offload;
    if (offload !== null && offload.healthy && this.queueDepth() >= this.o.offloadDepth) {
      if (offload.add(msg, d.pool.slotEndpoints, slot)) this.stats.offloaded++;
      else {
        // The bounded queue is full: that is load, whatever the rings hold right now.
        markUnderLoad(this.load, ms);
        this.stats.rejected.initiation.queue++;
      }
      return;
    }
    this.initiationConsumed(d.noise.consumeInitiation(msg, ms, this.lookupStatic), msg, d.pool.slotEndpoints, slot, ms);
  }

  /** A batch back from the offload pool: finish each initiation as receiveInitiation would. */
  private prepared(batch: PrepareBatch, current: boolean): void {
    const d = this.d;
    const ms = now();
    for (let i = 0; i < batch.count; i++) {
      const why = current ? batch.rejection(i) : 'state';
      const msg = batch.message(i);
      const prepared = batch.prepared(i);
      const r: ConsumeResult = why !== undefined ? { ok: false, reason: why } : d.noise.consumePrepared(msg, prepared, ms, this.lookupStatic);
      this.initiationConsumed(r, msg, batch.from, i, ms, prepared);
    }
  }

  private initiationConsumed(r: ConsumeResult, msg: Uint8Array, from: EndpointTable, row: number, ms: number, prepared?: Uint8Array): void {
    const d = this.d;
    if (!r.ok) {
      this.stats.rejected.initiation[r.reason]++;
      // Formatting the address allocates: not for every message of a flood unless asked to.
      if (d.log.isLevelEnabled('debug')) d.log.debug({ reason: r.reason, from: formatEndpoint(from, row) }, 'initiation rejected');
      return;
    }
    const peer = d.peerAt(r.handshake.peer)!;
    this.countRx(peer, msg.length);
    d.tables.peers.writeEndpointFrom(peer.slot, from, row);
    d.timers.anyAuthenticatedPacketReceived(peer.slot);
    d.timers.anyAuthenticatedPacketTraversal(peer.slot, ms);
    this.sendResponse(peer, r.handshake, ms, prepared);
  }

  private sendResponse(peer: Peer, hs: Handshake, ms: number, prepared?: Uint8Array): void {
    const d = this.d;
    if (peer.pendingIndex >= 0) d.keypairs.release(peer.pendingIndex);
    peer.pendingIndex = -1;
    const index = d.keypairs.reserve(peer.slot, peer.routingId);
    if (index < 0) return;
    const resp = this.msg.subarray(0, RESP_LEN);
    if (!d.noise.createResponse(hs, index, resp, prepared) || !d.noise.beginSession(hs, this.session)) {
      d.keypairs.release(index);
      return;
    }
    peer.cookies.addMacs(resp, RESP_LEN, ms);
    d.keypairs.install(peer.slot, this.session);
    this.activate(peer);
    this.session.destroy();
    this.send(peer, RESP_LEN);
    d.timers.sessionDerived(peer.slot, ms);
    d.timers.anyAuthenticatedPacketTraversal(peer.slot, ms);
    d.timers.anyAuthenticatedPacketSent(peer.slot);
    d.log.debug({ peer: peer.slot }, 'sent handshake response');
  }

  /** The peer a local index of ours was handed to (a handshake in flight or a session), or undefined. */
  private peerByIndex(index: number): Peer | undefined {
    const kp = this.d.keypairs.slotOf(index);
    return kp >= 0 ? this.d.peerAt(this.d.keypairs.peerOf(kp)) : undefined;
  }

  /** The peer whose initiation in flight has local index `index` (what a response answers). */
  private pendingPeer(index: number): Peer | undefined {
    const peer = this.peerByIndex(index);
    return peer && peer.pendingIndex === index ? peer : undefined;
  }

  private receiveResponse(msg: Uint8Array, slot: number, ms: number): void {
    const d = this.d;
    const r = d.noise.consumeResponse(msg, (index) => this.pendingPeer(index)?.handshake);
    if (!r.ok) {
      this.stats.rejected.response[r.reason]++;
      d.log.debug({ reason: r.reason }, 'response rejected');
      return;
    }
    const peer = d.peerAt(r.handshake.peer)!;
    this.countRx(peer, msg.length);
    if (!d.noise.beginSession(r.handshake, this.session)) return;
    peer.pendingIndex = -1;
    d.keypairs.install(peer.slot, this.session);
    this.activate(peer);
    this.session.destroy();
    d.tables.peers.writeEndpointFrom(peer.slot, d.pool.slotEndpoints, slot);
    peer.lastHandshakeWallMs = Date.now();
    this.stats.completed++;
    d.timers.anyAuthenticatedPacketReceived(peer.slot);
    d.timers.anyAuthenticatedPacketTraversal(peer.slot, ms);
    d.timers.handshakeComplete(peer.slot);
    d.timers.sessionDerived(peer.slot, ms);
    d.log.debug({ peer: peer.slot }, 'handshake complete (initiator)');
    // The workers' staged packets confirm the session; a keepalive does too, at once (kernel receive.c).
    this.keysChanged();
    this.sendKeepalive(peer);
  }

  /**
   * Queues `this.msg[0, len)` for the peer's endpoint (from its sticky source); it leaves at the
   * flush and is counted in the peer's tx bytes then, as the kernel does.
   */
  private send(peer: Peer, len: number): void {
    if (!this.d.tables.peers.readEndpoint(peer.slot, this.to, 0)) return;
    this.sender.queue(this.msg, 0, len, this.to, 0, peer.slot);
    this.queueFlush();
  }

  /** Authenticated handshake messages count in the peer's rx bytes (kernel, wireguard-go). */
  private countRx(peer: Peer, len: number): void {
    const d = this.d;
    d.tables.stats[d.tables.statsBase(d.mainRow, peer.slot) + S_RX_BYTES] += len;
  }

  /** Sends an initiation unless one went out less than REKEY_TIMEOUT ago. */
  sendInitiation(peer: Peer, isRetry: boolean): void {
    const d = this.d;
    const ms = now();
    if (!isRetry) d.timers.handshakeRequested(peer.slot);
    if (!d.noise.hasPrivateKey || ms - peer.lastInitiationSentMs < REKEY_TIMEOUT_MS) return;
    if (!d.tables.peers.readEndpoint(peer.slot, this.to, 0) || !this.initiate(peer, this.to, 0, ms)) return;
    d.timers.handshakeInitiated(peer.slot, ms);
    d.log.debug({ peer: peer.slot, retry: isRetry }, 'sent handshake initiation');
  }

  /** Queues a new initiation to the peer at endpoint row `row` of `to`; false when none could be made. */
  private initiate(peer: Peer, to: EndpointTable, row: number, ms: number): boolean {
    const d = this.d;
    peer.lastInitiationSentMs = ms;
    if (peer.pendingIndex >= 0) d.keypairs.release(peer.pendingIndex);
    peer.pendingIndex = d.keypairs.reserve(peer.slot, peer.routingId);
    if (peer.pendingIndex < 0) return false;
    const init = this.msg.subarray(0, INIT_LEN);
    if (!d.noise.createInitiation(peer.handshake, peer.pendingIndex, Date.now(), init)) return false;
    peer.cookies.addMacs(init, INIT_LEN, ms);
    d.timers.anyAuthenticatedPacketTraversal(peer.slot, ms);
    d.timers.anyAuthenticatedPacketSent(peer.slot);
    this.sender.queue(this.msg, 0, INIT_LEN, to, row, peer.slot);
    this.queueFlush();
    return true;
  }

  /** Sends a keepalive (an empty transport message) on the peer's keypair, or starts a handshake without one. */
  sendKeepalive(peer: Peer): void {
    const d = this.d;
    const ms = now();
    const kps = d.tables.keypairs;
    const kp = this.sendingKeypair(peer, ms);
    const counter = kp < 0 ? -1 : kps.claimCounter(kp);
    if (counter < 0) {
      this.sendInitiation(peer, false);
      return;
    }
    const len = this.transport.seal(this.msg, 0, 0, d.tables.device[D_MTU]!, kps.remoteIndex(kp), counter, 0, kps.sendKey(kp));
    this.send(peer, len);
    d.timers.anyAuthenticatedPacketTraversal(peer.slot, ms);
    d.timers.anyAuthenticatedPacketSent(peer.slot);
    this.keepKeyFresh(peer, kp, ms);
  }

  /** The keypair the main thread may send on for a peer, or -1: the workers' rule (PeerTable.sendingKeypair). */
  private sendingKeypair(peer: Peer, ms: number): number {
    return this.d.tables.peers.sendingKeypair(peer.slot, this.d.tables.keypairs, ms);
  }

  /** Rekey when the initiator's keypair is old or worn (kernel send.c keep_key_fresh). */
  private keepKeyFresh(peer: Peer, kp: number, ms: number): void {
    const kps = this.d.tables.keypairs;
    const counter = kps.sendCounter(kp);
    if (counter >= SEND_COUNTER_REKEY || shouldRekeyOnSend(kps.isInitiator(kp), kps.birthOf(kp), counter, ms)) {
      this.sendInitiation(peer, false);
    }
  }

  // ---- the coarse tick ----

  tick(): void {
    const d = this.d;
    const ms = now();
    for (const [peer, seen] of this.active) this.observe(peer, seen, ms);
    d.timers.tick(ms, (slot, action) => this.onTimer(slot, action));
    if (ms - this.lastGcMs >= 1000) {
      this.lastGcMs = ms;
      d.limiter.gc(ms * 1e6);
    }
  }

  /** Turns the workers' timestamps since the last tick into the timer events they stand for. */
  private observe(peer: Peer, seen: Seen, ms: number): void {
    const d = this.d;
    const now: Seen = this.scratch;
    this.latest(peer, now);
    const { dataSent, dataReceived, authSent, authReceived } = now;
    const sent = authSent > seen.authSent;
    const received = authReceived > seen.authReceived;
    if (!sent && !received) return;
    // Replay the two kinds of event in the order they happened.
    if (sent && received && authSent < authReceived) {
      this.sentSince(peer.slot, now, seen);
      this.receivedSince(peer.slot, now, seen);
    } else {
      if (received) this.receivedSince(peer.slot, now, seen);
      if (sent) this.sentSince(peer.slot, now, seen);
    }
    const kp = d.keypairs.current(peer.slot);
    if (kp >= 0) {
      if (dataSent > seen.dataSent) this.keepKeyFresh(peer, kp, ms);
      if (dataReceived > seen.dataReceived && d.timers.lastMinuteHandshake(peer.slot, d.tables.keypairs.isInitiator(kp), d.tables.keypairs.birthOf(kp), ms)) {
        this.sendInitiation(peer, false);
      }
    }
    seen.dataSent = dataSent;
    seen.dataReceived = dataReceived;
    seen.authSent = authSent;
    seen.authReceived = authReceived;
  }

  /** Timer events for authenticated packets sent since `seen` (methods, not closures per peer per tick). */
  private sentSince(slot: number, now: Seen, seen: Seen): void {
    const t = this.d.timers;
    t.anyAuthenticatedPacketTraversal(slot, now.authSent);
    t.anyAuthenticatedPacketSent(slot);
    if (now.dataSent > seen.dataSent) t.dataSent(slot, now.dataSent);
  }

  private receivedSince(slot: number, now: Seen, seen: Seen): void {
    const t = this.d.timers;
    t.anyAuthenticatedPacketReceived(slot);
    t.anyAuthenticatedPacketTraversal(slot, now.authReceived);
    if (now.dataReceived > seen.dataReceived) t.dataReceived(slot, now.dataReceived);
  }

  private onTimer(slot: number, action: TimerAction): void {
    const peer = this.d.peerAt(slot);
    if (!peer) return;
    switch (action) {
      case TimerAction.SendKeepalive:
      case TimerAction.SendPersistentKeepalive:
        this.sendKeepalive(peer);
        break;
      case TimerAction.RetryHandshake:
        this.sendInitiation(peer, true);
        break;
      case TimerAction.NewHandshake:
        // In a cluster, data sent without an answer for 15 s most likely means the client's route
        // now leads to another node, which answers it (unknownIndex). Chasing the client from here
        // would start a retry loop of up to 90 s per node it ever used, and each such initiation
        // it answers replaces the handshake that node is completing with it. The client's own
        // timer covers a path that broke without a move.
        if (this.d.tables.device[D_ROUTABLE] === 1) break;
        this.sendInitiation(peer, false);
        break;
      case TimerAction.GiveUp:
        // The workers drop what they staged for the peer once it is REKEY_ATTEMPT_TIME old.
        break;
      case TimerAction.ZeroKeys:
        this.active.delete(peer);
        this.d.keypairs.clearPeer(slot);
        peer.handshake.clear();
        if (peer.pendingIndex >= 0) this.d.keypairs.release(peer.pendingIndex);
        peer.pendingIndex = -1;
        break;
    }
  }
}
