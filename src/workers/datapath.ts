// One worker's packet pipeline, run to completion per batch (wireguard-go send.go/receive.go,
// the kernel's send.c/receive.c, collapsed into one thread per queue):
//
//   outbound: TUN batch -> route by destination (allowed IPs) -> the peer's sending keypair
//             -> counter (Atomics.add) -> seal in place in the slot -> one sendmmsg
//             no keypair: copy to a control record (staged, the main thread starts a handshake)
//   inbound:  recvmmsg batch -> type 4: keypair by receiver index -> open in place -> replay
//             window -> roaming / confirmation events -> inner source must route back to the
//             same peer -> one TUN write batch
//             types 1-3: copy to a control record for the main thread
//
// Nothing here allocates per packet: slots, offsets and endpoint rows are preallocated, and
// key and replay-window views are created once per keypair slot and reused.
import { Slab } from '../queues/slab.js';
import { Ring } from '../queues/ring.js';
import { EndpointTable, copyEndpoint, endpointEquals } from '../net/endpoint.js';
import { ReplayWindow } from '../replay/replay.js';
import { lookupV4In, lookupV6In, type AllowedIPsTables } from '../allowedips/allowedips.js';
import { TransportCrypto } from './transport.js';
import { messageType, readU32, MSG_DATA, DATA_HEADER_LEN } from '../handshake/messages.js';
import { RecordKind, META_KIND, META_ARG } from './control.js';
import {
  Segmenter, Coalescer, readVnetHeader, writeVnetHeader, completeChecksum, VNET_HDR_LEN, VNET_F_NEEDS_CSUM,
  VNET_F_DATA_VALID, GSO_NONE, GSO_TCPV4, GSO_TCPV6, MAX_SUPER_PACKET, type VnetHeader,
} from '../tun/offload.js';
import {
  Tables, now, canSend, KP_FLAGS, KP_PEER, KP_LOCAL_INDEX, KP_REMOTE_INDEX, KP_SEND_COUNTER, KP_REPLAY, KP_STRIDE,
  KP_SLOT_MASK, KP_KEYS_BYTES, KPF_VALID, KPF_CONFIRMED, SEND_COUNTER_LIMIT, P_CURRENT,
  P_NEXT, P_ENDPOINT_SEQ, P_STRIDE, D_MTU, S_RX_BYTES, S_TX_BYTES, S_LAST_DATA_SENT, S_LAST_DATA_RECEIVED,
  S_LAST_AUTH_SENT, S_LAST_AUTH_RECEIVED, C_RX_PACKETS, C_TX_PACKETS, C_DROP_NO_ROUTE, C_DROP_NO_KEYPAIR,
  C_DROP_DECRYPT, C_DROP_REPLAY, C_DROP_SOURCE, C_DROP_MALFORMED, C_DROP_RING_FULL, C_DROP_NO_ENDPOINT, C_STRIDE, REJECT_AFTER_MS,
} from '../device/tables.js';

/** A worker reports a peer's new source endpoint at most this often while the main thread catches up. */
const ROAM_REPORT_INTERVAL_MS = 50;
/** Super-packets merged per inbound batch at most (each takes one 64 KiB region). */
const GRO_REGIONS = 8;
const GRO_REGION_BYTES = MAX_SUPER_PACKET + 32;
/** Super-packets are read here so the virtio header lands 2 bytes in and the IP header aligned. */
const SUPER_AT = 2;

/** The I/O a pipeline drives: batch-shaped, so tests can substitute memory doubles. */
export interface TunIO {
  readBatch(slab: Uint8Array, offsets: Uint32Array, maxLen: number, lens: Int32Array, max: number): number;
  writeBatch(slab: Uint8Array, offsets: Uint32Array, lens: Int32Array, count: number): number;
}
export interface UdpIO {
  recvBatch(slab: Uint8Array, offsets: Uint32Array, maxLen: number, lens: Int32Array, from: EndpointTable, max: number): number;
  sendBatch(slab: Uint8Array, offsets: Uint32Array, lens: Int32Array, to: EndpointTable, count: number): number;
}

export class DataPath {
  private readonly bytes: Uint8Array;
  private readonly crypto = new TransportCrypto();
  private readonly sendKeys: (Uint8Array | undefined)[] = [];
  private readonly recvKeys: (Uint8Array | undefined)[] = [];
  private readonly windows: (ReplayWindow | undefined)[] = [];
  private readonly lastRoamReport: Float64Array;

  // Batch state, allocated once.
  private readonly tunSlots: Uint32Array;
  private readonly tunOffsets: Uint32Array;
  private readonly tunLens: Int32Array;
  private readonly sendOffsets: Uint32Array;
  private readonly sendLens: Int32Array;
  private readonly sendTo: EndpointTable;
  private readonly udpSlots: Uint32Array;
  private readonly udpOffsets: Uint32Array;
  private readonly udpLens: Int32Array;
  private readonly udpFrom: EndpointTable;
  private readonly writeOffsets: Uint32Array;
  private readonly writeLens: Int32Array;
  private readonly records: Uint32Array;
  private nRecords = 0;
  private readonly maxPacket: number;

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

  constructor(
    private readonly id: number,
    private readonly t: Tables,
    private readonly slab: Slab,
    private readonly slotEndpoints: EndpointTable,
    private readonly toMain: Ring,
    private routes: AllowedIPsTables,
    private readonly batch: number,
    /** The TUN queue was opened with IFF_VNET_HDR and TSO/checksum offload. */
    private readonly offload = false,
  ) {
    this.bytes = slab.bytes;
    this.lastRoamReport = new Float64Array(t.desc.peerCapacity);
    const u32 = (): Uint32Array => new Uint32Array(batch);
    const i32 = (): Int32Array => new Int32Array(batch);
    this.tunSlots = u32();
    this.tunOffsets = u32();
    this.tunLens = i32();
    this.sendOffsets = u32();
    this.sendLens = i32();
    this.sendTo = new EndpointTable(batch);
    this.udpSlots = u32();
    this.udpOffsets = u32();
    this.udpLens = i32();
    this.udpFrom = new EndpointTable(batch);
    this.writeOffsets = u32();
    this.writeLens = i32();
    this.records = new Uint32Array(2 * batch);
    this.writeBufs = new Array<Uint8Array>(batch).fill(slab.bytes);
    this.runOffsets = u32();
    this.runLens = i32();
    // The worker keeps its batch slots for its whole life; packets leave only as copies.
    if (slab.allocBatch(this.tunSlots, batch) !== batch || slab.allocBatch(this.udpSlots, batch) !== batch) {
      throw new Error('slab too small for the worker batches');
    }
    // Room in front of a TUN packet for the transport header; behind it for padding and the tag.
    this.maxPacket = slab.slotSize - slab.headroom - 32;
    for (let k = 0; k < batch; k++) {
      this.tunOffsets[k] = slab.base(this.tunSlots[k]!) + slab.headroom;
      this.udpOffsets[k] = slab.base(this.udpSlots[k]!);
    }
  }

  /** Gives the batch slots back to the slab when the worker exits. */
  dispose(): void {
    this.slab.freeBatch(this.tunSlots, this.batch);
    this.slab.freeBatch(this.udpSlots, this.batch);
  }

  setRoutes(routes: AllowedIPsTables): void {
    this.routes = routes;
  }

  /** Reads one TUN batch and sends what can be sent. Returns the packet count or -errno. */
  outbound(tun: TunIO, udp: UdpIO): number {
    const n = this.offload ? this.readOffloaded(tun) : tun.readBatch(this.bytes, this.tunOffsets, this.maxPacket, this.tunLens, this.batch);
    if (n <= 0) return n;
    const t = this.t;
    const bytes = this.bytes;
    const kps = t.keypairs;
    const ts = now();
    const mtu = t.device[D_MTU]!;
    let out = 0;
    for (let k = 0; k < n; k++) {
      const off = this.tunOffsets[k]!;
      const len = this.tunLens[k]!;
      const peer = this.route(off, len);
      if (peer < 0) {
        this.count(C_DROP_NO_ROUTE);
        continue;
      }
      const kp = this.sendingKeypair(peer, ts);
      const counter = kp < 0 ? SEND_COUNTER_LIMIT : Atomics.add(kps, kp * KP_STRIDE + KP_SEND_COUNTER, 1) >>> 0;
      if (counter >= SEND_COUNTER_LIMIT) {
        this.stage(peer, off, len);
        continue;
      }
      if (!this.readEndpoint(peer, out)) {
        this.count(C_DROP_NO_ENDPOINT);
        continue;
      }
      const start = off - DATA_HEADER_LEN;
      const msgLen = this.crypto.seal(bytes, start, len, mtu, kps[kp * KP_STRIDE + KP_REMOTE_INDEX]!, counter, 0, this.sendKey(kp));
      this.sendOffsets[out] = start;
      this.sendLens[out] = msgLen;
      out++;
      const s = t.statsBase(this.id, peer);
      t.stats[s + S_TX_BYTES] += msgLen;
      t.stats[s + S_LAST_DATA_SENT] = ts;
      t.stats[s + S_LAST_AUTH_SENT] = ts;
    }
    if (out > 0) {
      udp.sendBatch(bytes, this.sendOffsets, this.sendLens, this.sendTo, out);
      t.counters[this.id * C_STRIDE + C_TX_PACKETS] += out;
    }
    this.flushRecords();
    return n;
  }

  /** Receives one UDP batch and delivers what authenticates. Returns the datagram count or -errno. */
  inbound(udp: UdpIO, tun: TunIO): number {
    const m = udp.recvBatch(this.bytes, this.udpOffsets, this.slab.slotSize, this.udpLens, this.udpFrom, this.batch);
    if (m <= 0) return m;
    const t = this.t;
    const bytes = this.bytes;
    const ts = now();
    let w = 0;
    for (let k = 0; k < m; k++) {
      const off = this.udpOffsets[k]!;
      const len = this.udpLens[k]!;
      const type = messageType(bytes, off, len);
      if (type === MSG_DATA) {
        const at = this.receiveData(off, len, k, ts);
        if (at > 0) {
          this.writeOffsets[w] = off + DATA_HEADER_LEN;
          this.writeLens[w] = at;
          w++;
        }
      } else if (type !== 0) {
        this.record(RecordKind.Handshake, -1, 0, off, len, k);
      } else {
        this.count(C_DROP_MALFORMED);
      }
    }
    t.counters[this.id * C_STRIDE + C_RX_PACKETS] += m;
    if (w > 0) {
      if (this.offload) this.writeOffloaded(tun, w);
      else tun.writeBatch(bytes, this.writeOffsets, this.writeLens, w);
    }
    this.flushRecords();
    return m;
  }

  /**
   * Fills the batch's TUN slots from an offloading queue: plain packets get their checksum
   * finished, super-packets are cut into segments (continuing in the next batch when they do
   * not fit). Returns the packets placed, or -errno from the first read.
   */
  private readOffloaded(tun: TunIO): number {
    const big = this.superBuf;
    const pkt = SUPER_AT + VNET_HDR_LEN;
    let n = 0;
    while (n < this.batch) {
      if (this.segmenter.pending) {
        n += this.segmenter.emit(this.bytes, this.tunOffsets, this.tunLens, n, this.batch - n);
        continue;
      }
      const r = tun.readBatch(big, this.superOffsets, VNET_HDR_LEN + MAX_SUPER_PACKET, this.superLens, 1);
      if (r < 0) return n > 0 ? n : r;
      if (r === 0) break;
      const len = this.superLens[0]! - VNET_HDR_LEN;
      if (len <= 0) continue;
      const h = this.vnet;
      readVnetHeader(big, SUPER_AT, h);
      if (h.gsoType === GSO_NONE) {
        if (len > this.maxPacket || ((h.flags & VNET_F_NEEDS_CSUM) !== 0 && !completeChecksum(big, pkt, len, h.csumStart, h.csumOffset))) {
          this.count(C_DROP_MALFORMED);
          continue;
        }
        this.bytes.set(big.subarray(pkt, pkt + len), this.tunOffsets[n]!);
        this.tunLens[n++] = len;
      } else if ((h.gsoType !== GSO_TCPV4 && h.gsoType !== GSO_TCPV6) || h.gsoSize + 80 > this.maxPacket || !this.segmenter.begin(big, pkt, len, h.gsoType, h.gsoSize)) {
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
    const kp = index & KP_SLOT_MASK;
    const base = kp * KP_STRIDE;
    if (kp >= t.desc.keypairCapacity || kps[base + KP_LOCAL_INDEX] !== (index | 0)) {
      this.count(C_DROP_NO_KEYPAIR);
      return 0;
    }
    const flags = Atomics.load(kps, base + KP_FLAGS);
    if ((flags & KPF_VALID) === 0 || ts - t.birth[kp]! > REJECT_AFTER_MS) {
      this.count(C_DROP_NO_KEYPAIR);
      return 0;
    }
    const plainLen = this.crypto.open(bytes, off, len, this.recvKey(kp));
    if (plainLen < 0) {
      this.count(C_DROP_DECRYPT);
      return 0;
    }
    if (!this.window(kp).validate(readU32(bytes, off + 8), readU32(bytes, off + 12))) {
      this.count(C_DROP_REPLAY);
      return 0;
    }
    const peer = kps[base + KP_PEER]!;
    if ((flags & KPF_CONFIRMED) === 0 && (Atomics.or(kps, base + KP_FLAGS, KPF_CONFIRMED) & KPF_CONFIRMED) === 0) {
      this.record(RecordKind.Confirmed, peer, kp, 0, 0, -1);
    }
    if (!this.endpointIs(peer, k) && ts - this.lastRoamReport[peer]! > ROAM_REPORT_INTERVAL_MS) {
      this.lastRoamReport[peer] = ts;
      this.record(RecordKind.Roamed, peer, 0, 0, 0, k);
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

  /** The keypair to send on: current, or next once the peer has confirmed it; -1 for none. */
  private sendingKeypair(peer: number, ts: number): number {
    const p = this.t.peers;
    const cur = Atomics.load(p, peer * P_STRIDE + P_CURRENT);
    if (cur >= 0 && canSend(this.t, cur, ts)) return cur;
    const next = Atomics.load(p, peer * P_STRIDE + P_NEXT);
    if (next >= 0 && canSend(this.t, next, ts, KPF_CONFIRMED)) return next;
    return -1;
  }

  /** Copies the peer's endpoint into send row `row` under its seqlock; false when it has none. */
  private readEndpoint(peer: number, row: number): boolean {
    const p = this.t.peers;
    const seqAt = peer * P_STRIDE + P_ENDPOINT_SEQ;
    for (;;) {
      const seq = Atomics.load(p, seqAt);
      if ((seq & 1) !== 0) continue;
      copyEndpoint(this.t.endpoints, peer, this.sendTo, row);
      if (Atomics.load(p, seqAt) === seq) break;
    }
    return this.sendTo.family[row] !== 0;
  }

  private endpointIs(peer: number, row: number): boolean {
    return endpointEquals(this.t.endpoints, peer, this.udpFrom, row);
  }

  /** Hands a packet for a peer without a usable keypair to the main thread. */
  private stage(peer: number, off: number, len: number): void {
    this.record(RecordKind.Staged, peer, 0, off, len, -1);
  }

  /** Copies bytes (and the source endpoint of row `fromRow`) into a control record. */
  private record(kind: RecordKind, peer: number, arg: number, off: number, len: number, fromRow: number): void {
    const slot = this.slab.alloc();
    if (slot < 0 || this.nRecords === this.records.length) {
      if (slot >= 0) this.slab.free(slot);
      this.count(C_DROP_RING_FULL);
      return;
    }
    const base = this.slab.base(slot) + this.slab.headroom;
    if (len > 0) this.bytes.copyWithin(base, off, off + len);
    this.slab.setOffset(slot, this.slab.headroom);
    this.slab.setLength(slot, len);
    this.slab.setPeer(slot, peer);
    const meta = this.slab.meta;
    const rec = this.slab.record(slot);
    meta[rec + META_KIND] = kind;
    meta[rec + META_ARG] = arg;
    if (fromRow >= 0) copyEndpoint(this.udpFrom, fromRow, this.slotEndpoints, slot);
    this.records[this.nRecords++] = slot;
  }

  private flushRecords(): void {
    if (this.nRecords === 0) return;
    const pushed = this.toMain.pushBatch(this.records, this.nRecords);
    for (let i = pushed; i < this.nRecords; i++) {
      this.slab.free(this.records[i]!);
      this.count(C_DROP_RING_FULL);
    }
    this.nRecords = 0;
  }

  /** Tells the main thread something outside the batch flow (the device went away). */
  notify(kind: RecordKind): void {
    this.record(kind, -1, 0, 0, 0, -1);
    this.flushRecords();
  }

  private count(which: number): void {
    this.t.counters[this.id * C_STRIDE + which]++;
  }

  private sendKey(kp: number): Uint8Array {
    return (this.sendKeys[kp] ??= this.t.keys.subarray(kp * KP_KEYS_BYTES, kp * KP_KEYS_BYTES + 32));
  }

  private recvKey(kp: number): Uint8Array {
    return (this.recvKeys[kp] ??= this.t.keys.subarray(kp * KP_KEYS_BYTES + 32, kp * KP_KEYS_BYTES + 64));
  }

  private window(kp: number): ReplayWindow {
    return (this.windows[kp] ??= new ReplayWindow(this.t.keypairs, kp * KP_STRIDE + KP_REPLAY));
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
