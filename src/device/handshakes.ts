// The control plane's packet work on the main thread (the kernel's receive.c handshake path and
// send.c's handshake, keepalive and staged-packet sending): control records from the workers,
// handshake messages in and out, cookies under load, and the coarse tick that turns the
// workers' per-peer timestamps into timer events and runs every peer's timers.
import { SessionKeys, type ConsumeResult, type Handshake, type Rejection } from '../handshake/noise.js';
import { HandshakeOffload, type PrepareBatch } from '../handshake/offload.js';
import { markUnderLoad, underLoad } from '../handshake/cookie.js';
import {
  INIT_LEN, RESP_LEN, COOKIE_REPLY_LEN, MSG_INITIATION, MSG_RESPONSE, MSG_COOKIE_REPLY, INIT_SENDER, RESP_SENDER,
  COOKIE_RECEIVER, DATA_HEADER_LEN, messageType, readU32,
} from '../handshake/messages.js';
import { TransportCrypto } from '../workers/transport.js';
import { RecordKind, META_KIND, META_ARG } from '../workers/control.js';
import { sendTo } from '../net/udp.js';
import { formatEndpoint, type EndpointTable } from '../net/endpoint.js';
import { TimerAction, REKEY_TIMEOUT, shouldRekeyOnSend } from './timers.js';
import {
  now, canSend, S_LAST_DATA_SENT, S_LAST_DATA_RECEIVED, S_LAST_AUTH_SENT, S_LAST_AUTH_RECEIVED, S_TX_BYTES, S_RX_BYTES, D_MTU,
  SEND_COUNTER_LIMIT, SEND_COUNTER_REKEY,
} from './tables.js';
import type { Device } from './device.js';
import { peerKey, type Peer } from './peer.js';

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
  private readonly msg = new Uint8Array(2048);
  private readonly source = new Uint8Array(18);
  /** Under load until this time (on the shared clock `now()`); the metrics endpoint reads it too. */
  readonly load = { untilMs: 0 };
  /**
   * Counters for the metrics endpoint (src/metrics). `cookie` rejections are the messages answered
   * with a cookie reply instead (mac2 missing under load); `mac1` includes having no private key.
   */
  readonly stats = { completed: 0, cookieRepliesSent: 0, offloaded: 0, rejected: { initiation: noRejections(), response: noRejections() } };
  readonly offload: HandshakeOffload | null;
  /**
   * Peers that hold or held a session until their keys were zeroed: only they can have data-plane
   * activity, so the tick looks at them and not at every configured peer.
   */
  private readonly active = new Map<Peer, Seen>();
  private lastGcMs = 0;
  private readonly scratch: Seen = { dataSent: 0, dataReceived: 0, authSent: 0, authReceived: 0 };

  private readonly lookupStatic = (pk: Uint8Array): Handshake | undefined => this.d.peers.get(peerKey(pk))?.handshake;

  constructor(private readonly d: Device, private readonly o: HandshakeOptions) {
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

  /** The latest of each data-plane timestamp of a peer over all workers. */
  private latest(peer: Peer, out: Seen): void {
    const t = this.d.tables;
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
    const rec = slab.record(slot);
    const kind = slab.meta[rec + META_KIND];
    const peerSlot = slab.peer(slot);
    const start = slab.base(slot) + slab.offset(slot);
    const bytes = slab.bytes.subarray(start, start + slab.length(slot));
    try {
      switch (kind) {
        case RecordKind.Handshake:
          this.receiveHandshake(bytes, slot);
          break;
        case RecordKind.Staged: {
          const peer = this.d.bySlot[peerSlot];
          if (peer) {
            peer.stage(bytes.slice());
            this.sendStaged(peer);
          }
          break;
        }
        case RecordKind.Confirmed: {
          const peer = this.d.bySlot[peerSlot];
          if (peer && this.d.keypairs.confirm(peer.slot, slab.meta[rec + META_ARG]!)) {
            this.d.timers.handshakeComplete(peer.slot);
            peer.lastHandshakeWallMs = Date.now();
            this.stats.completed++;
            this.sendStaged(peer);
          }
          break;
        }
        case RecordKind.Roamed:
          if (this.d.bySlot[peerSlot]) this.d.setEndpointFrom(peerSlot, this.d.pool.slotEndpoints, slot);
          break;
        case RecordKind.DeviceGone:
          this.d.emit('gone');
          break;
      }
    } finally {
      slab.free(slot);
    }
  }

  private queueDepth(): number {
    return this.d.pool.pending() + (this.offload?.backlog() ?? 0);
  }

  private receiveHandshake(msg: Uint8Array, slot: number): void {
    const d = this.d;
    const type = messageType(msg, 0, msg.length);
    const ms = now();
    if (type === MSG_COOKIE_REPLY) {
      this.pendingPeer(readU32(msg, COOKIE_RECEIVER))?.cookies.consumeReply(msg, ms);
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
        if (sendTo(d.udpFds[0]!, reply, ep, slot) > 0) this.stats.cookieRepliesSent++;
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
    const peer = d.bySlot[r.handshake.peer]!;
    this.countRx(peer, msg.length);
    d.setEndpointFrom(peer.slot, from, row);
    d.timers.anyAuthenticatedPacketReceived(peer.slot);
    d.timers.anyAuthenticatedPacketTraversal(peer.slot, ms);
    this.sendResponse(peer, r.handshake, ms, prepared);
  }

  private sendResponse(peer: Peer, hs: Handshake, ms: number, prepared?: Uint8Array): void {
    const d = this.d;
    if (peer.pendingIndex >= 0) d.keypairs.release(peer.pendingIndex);
    peer.pendingIndex = -1;
    const index = d.keypairs.reserve(peer.slot);
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
    this.send(peer, resp);
    d.timers.sessionDerived(peer.slot, ms);
    d.timers.anyAuthenticatedPacketTraversal(peer.slot, ms);
    d.timers.anyAuthenticatedPacketSent(peer.slot);
    d.log.debug({ peer: peer.slot }, 'sent handshake response');
  }

  /** The peer whose handshake in flight has local index `index` (what a response or cookie reply answers). */
  private pendingPeer(index: number): Peer | undefined {
    const d = this.d;
    const kp = d.keypairs.slotOf(index);
    const peer = kp >= 0 ? d.bySlot[d.keypairs.peerOf(kp)] : undefined;
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
    const peer = d.bySlot[r.handshake.peer]!;
    this.countRx(peer, msg.length);
    if (!d.noise.beginSession(r.handshake, this.session)) return;
    peer.pendingIndex = -1;
    d.keypairs.install(peer.slot, this.session);
    this.activate(peer);
    this.session.destroy();
    d.setEndpointFrom(peer.slot, d.pool.slotEndpoints, slot);
    peer.lastHandshakeWallMs = Date.now();
    this.stats.completed++;
    d.timers.anyAuthenticatedPacketReceived(peer.slot);
    d.timers.anyAuthenticatedPacketTraversal(peer.slot, ms);
    d.timers.handshakeComplete(peer.slot);
    d.timers.sessionDerived(peer.slot, ms);
    d.log.debug({ peer: peer.slot }, 'handshake complete (initiator)');
    // Staged packets confirm the session; with none, a keepalive does (kernel receive.c).
    this.sendKeepalive(peer);
  }

  /** Sends a message to the peer's endpoint, counted in its tx bytes as the kernel does. */
  private send(peer: Peer, msg: Uint8Array): void {
    const d = this.d;
    if (sendTo(d.udpFds[0]!, msg, d.tables.endpoints, peer.slot) > 0) {
      d.tables.stats[d.tables.statsBase(d.mainRow, peer.slot) + S_TX_BYTES] += msg.length;
    }
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
    if (d.tables.endpoints.family[peer.slot] === 0) return;
    peer.lastInitiationSentMs = ms;
    if (peer.pendingIndex >= 0) d.keypairs.release(peer.pendingIndex);
    peer.pendingIndex = d.keypairs.reserve(peer.slot);
    if (peer.pendingIndex < 0) return;
    const init = this.msg.subarray(0, INIT_LEN);
    if (!d.noise.createInitiation(peer.handshake, peer.pendingIndex, Date.now(), init)) return;
    peer.cookies.addMacs(init, INIT_LEN, ms);
    d.timers.anyAuthenticatedPacketTraversal(peer.slot, ms);
    d.timers.anyAuthenticatedPacketSent(peer.slot);
    this.send(peer, init);
    d.timers.handshakeInitiated(peer.slot, ms);
    d.log.debug({ peer: peer.slot, retry: isRetry }, 'sent handshake initiation');
  }

  /** A keepalive is an empty staged packet: it also starts a handshake when there is no session. */
  sendKeepalive(peer: Peer): void {
    if (peer.staged.length === 0) peer.stage(new Uint8Array(0));
    this.sendStaged(peer);
  }

  /** The keypair the main thread may send on for a peer, or -1 (same rule as the workers). */
  private sendingKeypair(peer: Peer, ms: number): number {
    const kps = this.d.keypairs;
    const cur = kps.current(peer.slot);
    if (cur < 0 || !canSend(this.d.tables, cur, ms)) return -1;
    return kps.sendCounter(cur) < SEND_COUNTER_LIMIT ? cur : -1;
  }

  /** Sends the peer's staged packets on its current keypair, or asks for a handshake. */
  sendStaged(peer: Peer): void {
    const d = this.d;
    const ms = now();
    const kp = this.sendingKeypair(peer, ms);
    if (kp < 0 || d.tables.endpoints.family[peer.slot] === 0) {
      this.sendInitiation(peer, false);
      return;
    }
    const mtu = d.tables.device[D_MTU]!;
    let sentData = false;
    for (const packet of peer.staged) {
      const counter = d.keypairs.nextCounter(kp);
      if (counter >= SEND_COUNTER_LIMIT) break;
      this.msg.set(packet, DATA_HEADER_LEN);
      const len = this.transport.seal(this.msg, 0, packet.length, mtu, d.keypairs.remoteIndex(kp), counter, 0, d.keypairs.sendKey(kp));
      this.send(peer, this.msg.subarray(0, len));
      sentData ||= packet.length > 0;
    }
    peer.unstage();
    d.timers.anyAuthenticatedPacketTraversal(peer.slot, ms);
    d.timers.anyAuthenticatedPacketSent(peer.slot);
    if (sentData) d.timers.dataSent(peer.slot, ms);
    this.keepKeyFresh(peer, kp, ms);
  }

  /** Rekey when the initiator's keypair is old or worn (kernel send.c keep_key_fresh). */
  private keepKeyFresh(peer: Peer, kp: number, ms: number): void {
    const kps = this.d.keypairs;
    const counter = kps.sendCounter(kp);
    if (counter >= SEND_COUNTER_REKEY || shouldRekeyOnSend(kps.isInitiator(kp), kps.birth(kp), counter, ms)) {
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
    now.dataSent = now.dataReceived = now.authSent = now.authReceived = 0;
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
      if (dataReceived > seen.dataReceived && d.timers.lastMinuteHandshake(peer.slot, d.keypairs.isInitiator(kp), d.keypairs.birth(kp), ms)) {
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
    const peer = this.d.bySlot[slot];
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
        this.sendInitiation(peer, false);
        break;
      case TimerAction.GiveUp:
        peer.unstage();
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
