// One worker's packet pipeline, run to completion per batch (wireguard-go send.go/receive.go,
// the kernel's send.c/receive.c, collapsed into one thread per queue):
//
//   outbound: staged packets whose peer now has a keypair go first -> TUN batch -> route by
//             destination (allowed IPs) -> the peer's sending keypair -> counter (claimed, never
//             past the limit) -> seal in place in the slot -> one sendmmsg (from each peer's
//             sticky source)
//             no keypair: stage in this worker and ask the main thread for a handshake once
//             no endpoint: drop at once (the kernel's EDESTADDRREQ)
//   inbound:  recvmmsg batch -> type 4: keypair by receiver index (none, with cluster-routable
//             indices: report it, a bounded number a second) -> open in place -> replay
//             window -> the peer's endpoint follows the packet (roaming, sticky source) ->
//             confirmation event -> inner source must route back to the same peer -> one TUN
//             write batch
//             types 1-3: copy to a record on the handshake ring for the main thread
//
// Packets up to a slab slot travel in the batch slots; with an MTU larger than that (a jumbo
// MTU, up to 65,535), a batch uses the worker's few large buffers instead, so memory stays
// bounded. Nothing is cut silently: what cannot be carried is counted as a drop with its reason.
//
// Nothing here allocates per packet: slots, offsets and endpoint rows are preallocated, and
// key and replay-window views are created once per keypair slot and reused. A batch runs
// inside one epoch (see ../queues/epoch.ts): the peers and keypairs it reads cannot be reused
// under it.
import { Slab } from '../queues/slab.js';
import { Ring } from '../queues/ring.js';
import { Records, RecordKind } from '../queues/records.js';
import { EndpointTable, copyEndpoint } from '../net/endpoint.js';
import type { LargeBuffers } from '../net/udp.js';
import { EMSGSIZE } from '../net/libc.js';
import { lookupV4In, lookupV6In, type AllowedIPsTables } from '../allowedips/allowedips.js';
import { TransportCrypto } from './transport.js';
import { Staging, StagedFate, STAGED_MAX_AGE_MS } from './staging.js';
import { messageType, readU32, MSG_DATA, DATA_HEADER_LEN } from '../handshake/messages.js';
import {
  Segmenter, Coalescer, readVnetHeader, writeVnetHeader, completeChecksum, VNET_HDR_LEN, VNET_F_NEEDS_CSUM,
  VNET_F_DATA_VALID, GSO_NONE, GSO_TCPV4, GSO_TCPV6, MAX_SUPER_PACKET, type VnetHeader,
} from '../tun/offload.js';
import {
  Tables, now, D_MTU, D_KEYS_GEN, D_STAGED, D_ROUTABLE, S_RX_BYTES, S_TX_BYTES, S_LAST_DATA_SENT, S_LAST_DATA_RECEIVED, S_LAST_AUTH_SENT,
  S_LAST_AUTH_RECEIVED, C_RX_PACKETS, C_TX_PACKETS, C_DROP_NO_ROUTE, C_DROP_NO_KEYPAIR, C_DROP_DECRYPT, C_DROP_REPLAY,
  C_DROP_SOURCE, C_DROP_MALFORMED, C_DROP_RING_FULL, C_DROP_NO_ENDPOINT, C_DROP_TOO_BIG, C_DROP_STAGED, C_DROP_SEND,
  C_ROAMED, C_STRIDE,
} from '../queues/tables.js';

/** Super-packets merged per inbound batch at most (each takes one 64 KiB region). */
const GRO_REGIONS = 8;
const GRO_REGION_BYTES = MAX_SUPER_PACKET + 32;
/** Super-packets are read here so the virtio header lands 2 bytes in and the IP header aligned. */
const SUPER_AT = 2;
/** Bytes after a packet for padding to 16 and the tag. */
const TAILROOM = 32;
/**
 * Unknown receiver indices a worker reports per second at most: a flood of made-up ones must not
 * fill the slab or the event ring; the main thread's own budget (routable.ts) is smaller still.
 */
export const UNKNOWN_INDEX_REPORTS_PER_S = 64;
/** Large buffers each worker owns for jumbo packets: packets per batch when the MTU is jumbo. */
export const LARGE_BUFFERS = 8;
/** A large buffer: header room, the largest IP packet, padding and tag, rounded to 2 KiB slots. */
export const LARGE_BUFFER_BYTES = 67584;
/** Staging slots each worker owns. */
export const STAGING_SLOTS = 256;
/** TUN batches that keep using the large buffers after the last packet too large for a slot. */
const LARGE_MODE_BATCHES = 1024;

/** The I/O a pipeline drives: batch-shaped, so tests can substitute memory doubles. */
export interface TunIO {
  readBatch(slab: Uint8Array, offsets: Uint32Array, maxLen: number, lens: Int32Array, max: number): number;
  writeBatch(slab: Uint8Array, offsets: Uint32Array, lens: Int32Array, count: number): number;
}
export interface UdpIO {
  recvBatch(slab: Uint8Array, offsets: Uint32Array, maxLen: number, lens: Int32Array, from: EndpointTable, max: number, large?: LargeBuffers): number;
  sendBatch(slab: Uint8Array, offsets: Uint32Array, lens: Int32Array, to: EndpointTable, count: number): number;
  /** After recvBatch: whether datagrams may still be waiting without a new poll (see UdpBatch.pending). */
  readonly pending: boolean;
  /** After sendBatch: which datagrams' sticky sources the kernel refused (and `to` cleared). */
  readonly sourceRefused?: Uint8Array;
  readonly sourcesRefused?: number;
}

/** The slab slots a DataPath works in, owned by its worker for the worker's life. */
export interface PathSlots {
  tunSlots: readonly number[];
  udpSlots: readonly number[];
  stagingSlots: readonly number[];
  largeAt: readonly number[];
}

export interface PathRings {
  /** Handshake messages for the main thread. */
  handshakes: Ring;
  /** Events (confirmed keypairs, handshakes wanted, device gone) for the main thread. */
  events: Ring;
}

export class DataPath {
  private readonly bytes: Uint8Array;
  private readonly crypto = new TransportCrypto();
  private readonly records: Records;
  private readonly staging: Staging;
  private keysGenSeen = -1;
  private lastExpiryMs = 0;

  // Batch state, allocated once.
  private readonly tunOffsets: Uint32Array;
  private readonly tunLens: Int32Array;
  private readonly sendOffsets: Uint32Array;
  private readonly sendLens: Int32Array;
  private readonly sendTo: EndpointTable;
  /** The peer of each send row (to forget a sticky source the kernel refused). */
  private readonly sendPeers: Int32Array;
  private readonly udpOffsets: Uint32Array;
  private readonly udpLens: Int32Array;
  private readonly udpFrom: EndpointTable;
  private readonly writeOffsets: Uint32Array;
  private readonly writeLens: Int32Array;
  private readonly handshakeRecords: Uint32Array;
  private nHandshakeRecords = 0;
  private readonly eventRecords: Uint32Array;
  private nEventRecords = 0;
  /** Largest packet a batch slot carries; larger ones use the large buffers. */
  private readonly maxPacket: number;
  // The batch's slot offsets, restored after a batch that used large buffers.
  private readonly tunSlotOffsets: Uint32Array;
  private readonly udpSlotOffsets: Uint32Array;
  private readonly large: LargeBuffers;
  /** The large buffers' starts (datagrams land there), and where a TUN packet goes in each (after header room). */
  private readonly largeOffsets: Uint32Array;
  private readonly largeTunOffsets: Uint32Array;
  /** Staged slots sent by the current flush, released once the send is out. */
  private readonly flushed: Uint32Array;
  private nFlushed = 0;

  // TUN offload (IFF_VNET_HDR): super-packets in, cut into slots; merged runs out.
  private readonly superBuf = new Uint8Array(new ArrayBuffer(SUPER_AT + VNET_HDR_LEN + MAX_SUPER_PACKET + 6));
  private readonly superOffsets = Uint32Array.of(SUPER_AT);
  private readonly superLens = new Int32Array(1);
  private readonly vnet: VnetHeader = { flags: 0, gsoType: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
  private readonly segmenter = new Segmenter();
  private readonly coalescer = new Coalescer();
  private readonly groArea = new Uint8Array(new ArrayBuffer(GRO_REGIONS * GRO_REGION_BYTES));
  private groUsed = 0;
  private readonly writeBufs: Uint8Array[];
  private nWrites = 0;
  private readonly runOffsets: Uint32Array;
  private readonly runLens: Int32Array;
  private readonly visitStaged = (slot: number, peer: number, gen: number, len: number, time: number): StagedFate =>
    this.flushOne(slot, peer, gen, len, time);
  private flushNow = 0;
  private flushOut = 0;
  private largeBatchesLeft = 0;
  private reportWindowMs = -Infinity;
  private reportsLeft = 0;
  /** A plain packet too large for this batch's slots waits in superBuf for a batch with large buffers. */
  private heldPlain = 0;
  /** The last TUN read found the queue empty (EAGAIN) or failed. */
  private tunDrained = false;

  constructor(
    private readonly id: number,
    private readonly t: Tables,
    private readonly slab: Slab,
    private readonly slotEndpoints: EndpointTable,
    private readonly rings: PathRings,
    private routes: AllowedIPsTables,
    private readonly batch: number,
    slots: PathSlots,
    /** The TUN queue was opened with IFF_VNET_HDR and TSO/checksum offload. */
    private readonly offload = false,
  ) {
    this.bytes = slab.bytes;
    this.records = new Records(slab);
    const u32 = (): Uint32Array => new Uint32Array(batch);
    const i32 = (): Int32Array => new Int32Array(batch);
    this.tunOffsets = u32();
    this.tunLens = i32();
    this.sendOffsets = u32();
    this.sendLens = i32();
    this.sendTo = new EndpointTable(batch);
    this.sendPeers = i32();
    this.udpOffsets = u32();
    this.udpLens = i32();
    this.udpFrom = new EndpointTable(batch);
    this.writeOffsets = u32();
    this.writeLens = i32();
    this.handshakeRecords = new Uint32Array(batch);
    this.eventRecords = new Uint32Array(2 * batch);
    this.writeBufs = new Array<Uint8Array>(batch).fill(slab.bytes);
    this.runOffsets = u32();
    this.runLens = i32();
    this.flushed = u32();
    if (slots.tunSlots.length < batch || slots.udpSlots.length < batch) throw new Error('fewer batch slots than the batch size');
    // Room in front of a TUN packet for the transport header; behind it for padding and the tag.
    this.maxPacket = slab.slotSize - slab.headroom - TAILROOM;
    for (let k = 0; k < batch; k++) {
      this.tunOffsets[k] = slab.base(slots.tunSlots[k]!) + slab.headroom;
      this.udpOffsets[k] = slab.base(slots.udpSlots[k]!);
    }
    this.tunSlotOffsets = this.tunOffsets.slice();
    this.udpSlotOffsets = this.udpOffsets.slice();
    this.largeOffsets = Uint32Array.from(slots.largeAt);
    this.largeTunOffsets = this.largeOffsets.map((at) => at + slab.headroom);
    this.large = { at: this.largeOffsets, bytes: LARGE_BUFFER_BYTES, used: 0 };
    this.staging = new Staging(slots.stagingSlots, t.desc.peerCapacity);
    // A restarted worker begins with nothing staged, whatever its last incarnation left.
    Atomics.store(t.device, D_STAGED + id, 0);
  }

  setRoutes(routes: AllowedIPsTables): void {
    this.routes = routes;
  }

  /**
   * Whether a batch must use the large buffers: the MTU's packets do not fit a slot, or a packet
   * that did not fit was seen lately. The second matters because the MTU is known only while
   * the interface is in the daemon's namespace (netns.sh moves it away, then raises the MTU).
   */
  private jumbo(): boolean {
    if (this.largeOffsets.length === 0) return false;
    if (this.t.device[D_MTU]! > this.maxPacket) return true;
    if (this.largeBatchesLeft > 0) {
      this.largeBatchesLeft--;
      return true;
    }
    return false;
  }

  /** A packet larger than a slot was seen: batches use the large buffers for a while. */
  private sawLarge(): void {
    this.largeBatchesLeft = LARGE_MODE_BATCHES;
  }

  /**
   * Whether outbound would find more without a new poll: the last read stopped at a full batch,
   * or a held packet or TSO segments wait.
   */
  get tunPending(): boolean {
    return !this.tunDrained || this.heldPlain > 0 || this.segmenter.pending;
  }

  /**
   * Sends staged packets whose peer has a keypair now, drops the stale ones, then, when
   * `readTun`, reads one TUN batch and sends what can be sent. Returns the packet count or -errno.
   */
  outbound(tun: TunIO, udp: UdpIO, readTun = true): number {
    if (this.staging.count > 0) this.flushStaged(udp);
    if (!readTun) {
      this.flushRecords();
      return 0;
    }
    const jumbo = this.jumbo();
    if (jumbo) this.tunOffsets.set(this.largeTunOffsets);
    const max = jumbo ? this.largeOffsets.length : this.batch;
    const maxLen = jumbo ? LARGE_BUFFER_BYTES - this.slab.headroom - TAILROOM : this.maxPacket;
    const n = this.offload ? this.readOffloaded(tun, max, maxLen) : this.readPlain(tun, max, maxLen);
    if (n > 0) this.sendRead(n, udp);
    if (jumbo) this.tunOffsets.set(this.tunSlotOffsets.subarray(0, this.largeOffsets.length));
    this.flushRecords();
    return n;
  }

  private sendRead(n: number, udp: UdpIO): void {
    const t = this.t;
    const bytes = this.bytes;
    const ts = now();
    const mtu = t.device[D_MTU]!;
    const kps = t.keypairs;
    let out = 0;
    for (let k = 0; k < n; k++) {
      const off = this.tunOffsets[k]!;
      const len = this.tunLens[k]!;
      const peer = this.route(off, len);
      if (peer < 0) {
        this.count(C_DROP_NO_ROUTE);
        continue;
      }
      if (!t.peers.readEndpoint(peer, this.sendTo, out)) {
        this.count(C_DROP_NO_ENDPOINT);
        continue;
      }
      const kp = t.peers.sendingKeypair(peer, kps, ts);
      const counter = kp < 0 ? -1 : kps.claimCounter(kp);
      if (counter < 0) {
        this.stage(peer, off, len, ts);
        continue;
      }
      const start = off - DATA_HEADER_LEN;
      const msgLen = this.crypto.seal(bytes, start, len, mtu, kps.remoteIndex(kp), counter, 0, kps.sendKey(kp));
      this.sendOffsets[out] = start;
      this.sendLens[out] = msgLen;
      this.sendPeers[out] = peer;
      out++;
      this.sent(peer, msgLen, len > 0, ts);
    }
    if (out > 0) this.send(udp, out);
  }

  private sent(peer: number, msgLen: number, data: boolean, ts: number): void {
    const t = this.t;
    const s = t.statsBase(this.id, peer);
    t.stats[s + S_TX_BYTES] += msgLen;
    if (data) t.stats[s + S_LAST_DATA_SENT] = ts;
    t.stats[s + S_LAST_AUTH_SENT] = ts;
  }

  /** One sendmmsg of `out` sealed datagrams; refusals counted, refused sticky sources forgotten. */
  private send(udp: UdpIO, out: number): void {
    const sent = udp.sendBatch(this.bytes, this.sendOffsets, this.sendLens, this.sendTo, out);
    let ok = sent;
    for (let k = 0; k < sent; k++) {
      const len = this.sendLens[k]!;
      if (len >= 0) continue;
      ok--;
      this.count(len === -EMSGSIZE ? C_DROP_TOO_BIG : C_DROP_SEND);
    }
    // Left unsent after EAGAIN (a full socket buffer): dropped, as the kernel's full queue would.
    for (let k = sent; k < out; k++) this.count(C_DROP_SEND);
    if ((udp.sourcesRefused ?? 0) > 0) {
      for (let k = 0; k < out; k++) if (udp.sourceRefused![k] !== 0) this.forgetSource(this.sendPeers[k]!);
    }
    this.t.counters[this.id * C_STRIDE + C_TX_PACKETS] += ok;
  }

  /** The kernel refused the peer's sticky source (the address went away): route from now on. */
  private forgetSource(peer: number): void {
    this.t.peers.writeEndpoint(peer, (ep, row) => ep.clearSource(row));
  }

  /** Receives one UDP batch and delivers what authenticates. Returns the datagram count or -errno. */
  inbound(udp: UdpIO, tun: TunIO): number {
    const jumbo = this.jumbo();
    this.large.used = 0;
    let m: number;
    if (jumbo && !this.offload) {
      // Without GRO every datagram needs a buffer as large as the MTU's.
      this.udpOffsets.set(this.largeOffsets);
      m = udp.recvBatch(this.bytes, this.udpOffsets, LARGE_BUFFER_BYTES, this.udpLens, this.udpFrom, this.largeOffsets.length);
    } else {
      m = udp.recvBatch(this.bytes, this.udpOffsets, this.slab.slotSize, this.udpLens, this.udpFrom, this.batch, this.large);
    }
    if (m > 0) this.deliver(m, tun);
    if (jumbo || this.large.used > 0) this.udpOffsets.set(this.udpSlotOffsets);
    this.flushRecords();
    return m;
  }

  private deliver(m: number, tun: TunIO): void {
    const bytes = this.bytes;
    const ts = now();
    let w = 0;
    for (let k = 0; k < m; k++) {
      const off = this.udpOffsets[k]!;
      const len = this.udpLens[k]!;
      if (len < 0) {
        if (len === -EMSGSIZE) {
          // Cut by the kernel: the peer's MTU is larger than our slots; receive into the large buffers from now on.
          this.count(C_DROP_TOO_BIG);
          this.sawLarge();
        } else this.count(C_DROP_MALFORMED);
        continue;
      }
      const type = messageType(bytes, off, len);
      if (type === MSG_DATA) {
        const at = this.receiveData(off, len, k, ts);
        if (at > 0) {
          this.writeOffsets[w] = off + DATA_HEADER_LEN;
          this.writeLens[w] = at;
          w++;
        }
      } else if (type !== 0) {
        this.handshakeRecord(off, len, k);
      } else {
        this.count(C_DROP_MALFORMED);
      }
    }
    this.t.counters[this.id * C_STRIDE + C_RX_PACKETS] += m;
    if (w > 0) {
      if (this.offload) this.writeOffloaded(tun, w);
      else tun.writeBatch(bytes, this.writeOffsets, this.writeLens, w);
    }
  }

  /**
   * Reads up to `max` packets of up to `maxLen` bytes. A read that fills the buffer exactly may
   * have been cut by the kernel: it is dropped and counted, and the next batches use the large
   * buffers.
   */
  private readPlain(tun: TunIO, max: number, maxLen: number): number {
    const n = tun.readBatch(this.bytes, this.tunOffsets, maxLen, this.tunLens, max);
    this.tunDrained = n < max;
    let kept = 0;
    for (let k = 0; k < n; k++) {
      if (this.tunLens[k]! >= maxLen && maxLen === this.maxPacket) {
        this.count(C_DROP_TOO_BIG);
        this.sawLarge();
        continue;
      }
      if (kept !== k) {
        // Keep the batch dense: swap the slot offsets so every slot stays owned once.
        const off = this.tunOffsets[kept]!;
        this.tunOffsets[kept] = this.tunOffsets[k]!;
        this.tunOffsets[k] = off;
        this.tunLens[kept] = this.tunLens[k]!;
      }
      kept++;
    }
    return n < 0 ? n : kept;
  }

  /**
   * Fills up to `max` of the batch's TUN slots (each `maxLen` bytes) from an offloading queue:
   * plain packets get their checksum finished, super-packets are cut into segments (continuing
   * in the next batch when they do not fit). Returns the packets placed, or -errno from the
   * first read.
   */
  private readOffloaded(tun: TunIO, max: number, maxLen: number): number {
    const big = this.superBuf;
    const pkt = SUPER_AT + VNET_HDR_LEN;
    let n = 0;
    this.tunDrained = false;
    if (this.heldPlain > 0) {
      if (this.heldPlain > maxLen) return 0;
      this.bytes.set(big.subarray(pkt, pkt + this.heldPlain), this.tunOffsets[0]!);
      this.tunLens[n++] = this.heldPlain;
      this.heldPlain = 0;
    }
    while (n < max) {
      if (this.segmenter.pending) {
        if (this.segmenter.segmentBytes > maxLen) {
          // Segments too large for slots (a large buffer holds any): the next batch has large buffers.
          this.sawLarge();
          break;
        }
        n += this.segmenter.emit(this.bytes, this.tunOffsets, this.tunLens, n, max - n);
        continue;
      }
      const r = tun.readBatch(big, this.superOffsets, VNET_HDR_LEN + MAX_SUPER_PACKET, this.superLens, 1);
      if (r <= 0) {
        this.tunDrained = true;
        if (r < 0) return n > 0 ? n : r;
        break;
      }
      const len = this.superLens[0]! - VNET_HDR_LEN;
      if (len <= 0) continue;
      const h = this.vnet;
      readVnetHeader(big, SUPER_AT, h);
      if (h.gsoType === GSO_NONE) {
        if ((h.flags & VNET_F_NEEDS_CSUM) !== 0 && !completeChecksum(big, pkt, len, h.csumStart, h.csumOffset)) {
          this.count(C_DROP_MALFORMED);
          continue;
        }
        if (len > maxLen) {
          if (maxLen !== this.maxPacket) {
            this.count(C_DROP_TOO_BIG);
            continue;
          }
          // Kept in superBuf for the next batch, which has large buffers.
          this.heldPlain = len;
          this.sawLarge();
          break;
        }
        this.bytes.set(big.subarray(pkt, pkt + len), this.tunOffsets[n]!);
        this.tunLens[n++] = len;
      } else if (h.gsoType !== GSO_TCPV4 && h.gsoType !== GSO_TCPV6) {
        this.count(C_DROP_MALFORMED);
      } else if (!this.segmenter.begin(big, pkt, len, h.gsoType, h.gsoSize)) {
        this.count(C_DROP_MALFORMED);
      }
    }
    return n;
  }

  /**
   * Writes the batch's decrypted packets to an offloading queue: consecutive TCP segments of a
   * flow are merged into super-packets, everything else goes out in place behind a virtio
   * header, in the original order.
   */
  private writeOffloaded(tun: TunIO, count: number): void {
    const bytes = this.bytes;
    const co = this.coalescer;
    this.groUsed = 0;
    this.nWrites = 0;
    for (let i = 0; i < count; i++) {
      const pkt = this.writeOffsets[i]!;
      const len = this.writeLens[i]!;
      if (co.size > 0 && co.add(bytes, pkt, len)) continue;
      if (co.size > 0) this.finishRun();
      if (this.groUsed < GRO_REGIONS && Coalescer.mergeable(bytes, pkt, len) > 0) {
        co.start(bytes, pkt, len, this.groArea, this.groUsed * GRO_REGION_BYTES + 16);
      } else {
        writeVnetHeader(bytes, pkt - VNET_HDR_LEN, VNET_F_DATA_VALID, GSO_NONE, 0, 0, 0, 0);
        this.queueWrite(bytes, pkt - VNET_HDR_LEN, len + VNET_HDR_LEN);
      }
    }
    if (co.size > 0) this.finishRun();
    // One writeBatch per run of writes from the same buffer, in order.
    let i = 0;
    while (i < this.nWrites) {
      const buf = this.writeBufs[i]!;
      let k = 0;
      for (; i < this.nWrites && this.writeBufs[i] === buf; i++, k++) {
        this.runOffsets[k] = this.writeOffsets[i]!;
        this.runLens[k] = this.writeLens[i]!;
      }
      tun.writeBatch(buf, this.runOffsets, this.runLens, k);
    }
  }

  private finishRun(): void {
    const len = this.coalescer.finish();
    const buf = this.coalescer.writeBuf;
    if (buf === this.groArea) this.groUsed++;
    this.queueWrite(buf, this.coalescer.writeAt, len);
  }

  /** Appends a write; reuses writeOffsets/Lens, whose entries before `nWrites` are consumed. */
  private queueWrite(buf: Uint8Array, off: number, len: number): void {
    const j = this.nWrites++;
    this.writeBufs[j] = buf;
    this.writeOffsets[j] = off;
    this.writeLens[j] = len;
  }

  /**
   * Authenticates the transport message at `off` (row `k` of the batch) and returns the length of
   * the inner packet to deliver, 0 for a keepalive or a drop.
   */
  private receiveData(off: number, len: number, k: number, ts: number): number {
    const t = this.t;
    const kps = t.keypairs;
    const bytes = this.bytes;
    const index = readU32(bytes, off + 4);
    const kp = kps.lookup(index);
    if (kp < 0 || !kps.usable(kp, ts)) {
      this.count(C_DROP_NO_KEYPAIR);
      if (kp < 0 && t.device[D_ROUTABLE] === 1) this.reportUnknownIndex(index, k, ts);
      return 0;
    }
    const plainLen = this.crypto.open(bytes, off, len, kps.recvKey(kp));
    if (plainLen < 0) {
      this.count(C_DROP_DECRYPT);
      return 0;
    }
    if (!kps.window(kp).validate(readU32(bytes, off + 8), readU32(bytes, off + 12))) {
      this.count(C_DROP_REPLAY);
      return 0;
    }
    const peer = kps.peer(kp);
    // Authenticated: the peer's endpoint follows the packet at once, before its reply is read
    // from the TUN device (the kernel and wireguard-go do the same in their receive path).
    if (!t.peers.endpointIs(peer, this.udpFrom, k)) {
      t.peers.writeEndpointFrom(peer, this.udpFrom, k);
      this.count(C_ROAMED);
    }
    if (kps.confirmOnce(kp)) {
      // This worker's staged packets for the peer may go now; the main thread rotates the
      // keypair and wakes the other workers.
      Atomics.add(t.device, D_KEYS_GEN, 1);
      this.event(RecordKind.Confirmed, peer, kp);
    }
    const s = t.statsBase(this.id, peer);
    t.stats[s + S_RX_BYTES] += len;
    t.stats[s + S_LAST_AUTH_RECEIVED] = ts;
    if (plainLen === 0) return 0; // keepalive
    const inner = off + DATA_HEADER_LEN;
    const size = innerLength(bytes, inner, plainLen);
    if (size === 0) {
      this.count(C_DROP_MALFORMED);
      return 0;
    }
    // Cryptokey routing: the inner source must be one of the sending peer's allowed IPs.
    const v4 = bytes[inner]! >> 4 === 4;
    const owner = v4 ? lookupV4In(this.routes.v4, bytes, inner + 12) : lookupV6In(this.routes.v6, bytes, inner + 8);
    if (owner !== peer) {
      this.count(C_DROP_SOURCE);
      return 0;
    }
    t.stats[s + S_LAST_DATA_RECEIVED] = ts;
    return size;
  }

  /** The peer owning the destination of the packet at `off`, or -1. */
  private route(off: number, len: number): number {
    const v = this.bytes[off]! >> 4;
    if (v === 4 && len >= 20) return lookupV4In(this.routes.v4, this.bytes, off + 16);
    if (v === 6 && len >= 40) return lookupV6In(this.routes.v6, this.bytes, off + 24);
    return -1;
  }

  /**
   * Keeps a packet for a peer without a usable keypair and asks the main thread for a handshake
   * (once, until it has seen the request).
   */
  private stage(peer: number, off: number, len: number, ts: number): void {
    const t = this.t;
    if (t.peers.wantHandshake(peer)) this.event(RecordKind.HandshakeWanted, peer, 0);
    const slot = len <= this.maxPacket ? this.staging.take(peer) : -1;
    if (slot < 0) {
      this.count(C_DROP_STAGED);
      return;
    }
    this.bytes.copyWithin(this.slab.base(slot) + this.slab.headroom, off, off + len);
    this.staging.add(slot, peer, t.peers.gen(peer), len, ts);
    if (this.staging.count === 1) Atomics.store(t.device, D_STAGED + this.id, 1);
  }

  /** Sends the staged packets whose peer has a keypair now; drops those of removed peers and old ones. */
  private flushStaged(udp: UdpIO): void {
    const ts = now();
    const keysGen = Atomics.load(this.t.device, D_KEYS_GEN);
    // Only when some peer got a keypair, or once a second to age packets out.
    if (keysGen === this.keysGenSeen && ts - this.lastExpiryMs < 1000) return;
    this.keysGenSeen = keysGen;
    this.lastExpiryMs = ts;
    this.flushNow = ts;
    this.flushOut = 0;
    this.nFlushed = 0;
    this.staging.sweep(this.visitStaged);
    if (this.flushOut > 0) this.send(udp, this.flushOut);
    for (let i = 0; i < this.nFlushed; i++) this.staging.release(this.flushed[i]!);
    if (this.staging.count === 0) Atomics.store(this.t.device, D_STAGED + this.id, 0);
    // A full send batch stopped the sweep: come back at the next batch.
    if (this.flushOut === this.batch) this.keysGenSeen = -1;
  }

  private flushOne(slot: number, peer: number, gen: number, len: number, time: number): StagedFate {
    const t = this.t;
    const ts = this.flushNow;
    if (this.flushOut === this.batch) return StagedFate.Stop;
    if (t.peers.gen(peer) !== gen || ts - time > STAGED_MAX_AGE_MS) {
      this.count(C_DROP_STAGED);
      return StagedFate.Drop;
    }
    const kps = t.keypairs;
    const kp = t.peers.sendingKeypair(peer, kps, ts);
    if (kp < 0) return StagedFate.Keep;
    const out = this.flushOut;
    if (!t.peers.readEndpoint(peer, this.sendTo, out)) {
      this.count(C_DROP_NO_ENDPOINT);
      return StagedFate.Drop;
    }
    const counter = kps.claimCounter(kp);
    if (counter < 0) return StagedFate.Keep;
    const start = this.slab.base(slot) + this.slab.headroom - DATA_HEADER_LEN;
    const msgLen = this.crypto.seal(this.bytes, start, len, t.device[D_MTU]!, kps.remoteIndex(kp), counter, 0, kps.sendKey(kp));
    this.sendOffsets[out] = start;
    this.sendLens[out] = msgLen;
    this.sendPeers[out] = peer;
    this.flushOut++;
    this.flushed[this.nFlushed++] = slot;
    this.sent(peer, msgLen, len > 0, ts);
    return StagedFate.Sent;
  }

  /** Copies a handshake message (and its source endpoint, row `k`) into a record for the main thread. */
  private handshakeRecord(off: number, len: number, k: number): void {
    if (this.nHandshakeRecords === this.handshakeRecords.length || len > this.slab.slotSize - this.slab.headroom) {
      this.count(len > this.slab.slotSize - this.slab.headroom ? C_DROP_MALFORMED : C_DROP_RING_FULL);
      return;
    }
    const slot = this.slab.alloc();
    if (slot < 0) {
      this.count(C_DROP_RING_FULL);
      return;
    }
    const base = this.slab.base(slot) + this.slab.headroom;
    this.bytes.copyWithin(base, off, off + len);
    this.slab.setOffset(slot, this.slab.headroom);
    this.slab.setLength(slot, len);
    this.records.write(slot, RecordKind.Handshake, -1, 0, 0);
    copyEndpoint(this.udpFrom, k, this.slotEndpoints, slot);
    this.handshakeRecords[this.nHandshakeRecords++] = slot;
  }

  /**
   * Tells the main thread about a transport message (row `k`) on an index that is not ours, which
   * with cluster-routable indices may name another node's client; at most
   * UNKNOWN_INDEX_REPORTS_PER_S a second.
   */
  private reportUnknownIndex(index: number, k: number, ts: number): void {
    if (ts - this.reportWindowMs >= 1000) {
      this.reportWindowMs = ts;
      this.reportsLeft = UNKNOWN_INDEX_REPORTS_PER_S;
    }
    if (this.reportsLeft === 0) return;
    this.reportsLeft--;
    const slot = this.event(RecordKind.UnknownIndex, -1, index | 0);
    if (slot >= 0) copyEndpoint(this.udpFrom, k, this.slotEndpoints, slot);
  }

  /** Queues an event about `peer` (named with its current generation) for the main thread; returns its slot, or -1 when dropped. */
  private event(kind: RecordKind, peer: number, arg: number): number {
    if (this.nEventRecords === this.eventRecords.length) {
      this.count(C_DROP_RING_FULL);
      return -1;
    }
    const slot = this.slab.alloc();
    if (slot < 0) {
      this.count(C_DROP_RING_FULL);
      return -1;
    }
    this.slab.setLength(slot, 0);
    this.records.write(slot, kind, peer, peer >= 0 ? this.t.peers.gen(peer) : 0, arg);
    this.eventRecords[this.nEventRecords++] = slot;
    return slot;
  }

  private flushRecords(): void {
    this.nHandshakeRecords = this.push(this.rings.handshakes, this.handshakeRecords, this.nHandshakeRecords);
    this.nEventRecords = this.push(this.rings.events, this.eventRecords, this.nEventRecords);
  }

  private push(ring: Ring, slots: Uint32Array, n: number): number {
    if (n === 0) return 0;
    const pushed = ring.pushBatch(slots, n);
    for (let i = pushed; i < n; i++) {
      const slot = slots[i]!;
      // A lost "handshake wanted" must not block the next request for that peer.
      if (this.records.kind(slot) === RecordKind.HandshakeWanted) this.t.peers.clearHandshakeWanted(this.slab.peer(slot));
      this.slab.free(slot);
      this.count(C_DROP_RING_FULL);
    }
    return 0;
  }

  /** Tells the main thread something outside the batch flow (the device went away). */
  notify(kind: RecordKind): void {
    this.event(kind, -1, 0);
    this.flushRecords();
  }

  private count(which: number): void {
    this.t.counters[this.id * C_STRIDE + which]++;
  }
}

/**
 * The real length of the IP packet at `at` inside `plainLen` bytes of padded plaintext, from its
 * header (the padding is not part of it); 0 when it is not a well-formed IPv4 or IPv6 packet.
 */
export function innerLength(bytes: Uint8Array, at: number, plainLen: number): number {
  const v = bytes[at]! >> 4;
  let size: number;
  if (v === 4 && plainLen >= 20) size = (bytes[at + 2]! << 8) | bytes[at + 3]!;
  else if (v === 6 && plainLen >= 40) size = 40 + ((bytes[at + 4]! << 8) | bytes[at + 5]!);
  else return 0;
  return size <= plainLen && size >= (v === 4 ? 20 : 40) ? size : 0;
}
