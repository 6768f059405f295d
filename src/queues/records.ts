// What workers hand to the main thread. A record is a slab slot whose metadata KIND word says
// what it carries; the worker allocates it, fills it and pushes its index on one of its two rings
// to the main thread, which processes and frees it. Handshake messages travel on their own ring,
// so nothing else competes with them for capacity or counts toward "under load"; events (a
// keypair confirmed, a handshake wanted, an unknown receiver index, the device gone) take the other. A record names a peer
// as (slot, generation): the main thread ignores one whose peer has since been removed, even if
// the slot now holds another peer. Source endpoints of handshake messages sit in a shared
// EndpointTable with one row per slab slot.
import type { Slab } from './slab.js';

/** Slab metadata words used here (words 6..15 are free for users). */
const META_KIND = 6;
const META_ARG = 7;
const META_PEER_GEN = 8;

export const RecordKind = {
  /** A handshake message (types 1-3) from the network; source endpoint in the slot's row. */
  Handshake: 1,
  /** A packet authenticated on keypair ARG for the first time (the responder may now send). */
  Confirmed: 2,
  /** The peer has packets waiting and no usable keypair: start a handshake. */
  HandshakeWanted: 3,
  /** The TUN queue reported the device gone. */
  DeviceGone: 4,
  /**
   * A transport message whose receiver index ARG (as an int32) is not ours, with cluster-routable
   * indices only (src/device/routable.ts); its source endpoint is in the slot's row.
   */
  UnknownIndex: 5,
} as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

/** The typed view of a record's metadata, over a thread's own Slab. */
export class Records {
  constructor(private readonly slab: Slab) {}

  write(slot: number, kind: RecordKind, peer: number, gen: number, arg: number): void {
    const rec = this.slab.record(slot);
    const meta = this.slab.meta;
    this.slab.setPeer(slot, peer);
    meta[rec + META_KIND] = kind;
    meta[rec + META_ARG] = arg;
    meta[rec + META_PEER_GEN] = gen;
  }

  kind(slot: number): RecordKind {
    return this.slab.meta[this.slab.record(slot) + META_KIND] as RecordKind;
  }

  arg(slot: number): number {
    return this.slab.meta[this.slab.record(slot) + META_ARG]!;
  }

  peerGen(slot: number): number {
    return this.slab.meta[this.slab.record(slot) + META_PEER_GEN]!;
  }
}

/** Everything a worker needs, structured-clonable for workerData. */
export interface WorkerInit {
  id: number;
  tunFd: number;
  udpFd: number;
  wakeFd: number;
  tables: import('./tables.js').TablesDesc;
  slab: import('./slab.js').SlabDesc;
  slotEndpoints: SharedArrayBuffer;
  /** Handshake messages to the main thread. */
  handshakes: import('./ring.js').RingDesc;
  /** Events to the main thread. */
  events: import('./ring.js').RingDesc;
  routes: SharedArrayBuffer;
  routesGen: number;
  batch: number;
  /** The TUN queues were opened with IFF_VNET_HDR and offloads. */
  offload: boolean;
  /** Slab slots this worker owns for its whole life (kept across restarts), see WorkerPool. */
  owned: WorkerSlots;
  /** Tests only: the worker throws when the device's D_TEST_FAULT word names it. */
  testFaults: boolean;
}

/** The slab regions a worker owns: batch slots, staging slots, and contiguous areas. */
export interface WorkerSlots {
  tunSlots: number[];
  udpSlots: number[];
  stagingSlots: number[];
  /** Byte offset of the UDP GRO area, -1 for none. */
  groAreaAt: number;
  /** Byte offsets of the large-packet buffers (each LARGE_BUFFER_BYTES, contiguous). */
  largeAt: number[];
}
