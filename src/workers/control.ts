// What workers hand to the main thread. A control record is a slab slot whose metadata KIND
// word says what it carries; the worker allocates it, fills it and pushes its index on its
// ring to the main thread, which processes and frees it. Source endpoints of handshake
// messages sit in a shared EndpointTable with one row per slab slot.

/** Slab metadata word used for the record kind (words 6..15 are free for users). */
export const META_KIND = 6;
/** Slab metadata word for a kind-specific argument (a keypair slot). */
export const META_ARG = 7;

export const RecordKind = {
  /** A handshake message (types 1-3) from the network; source endpoint in the slot's row. */
  Handshake: 1,
  /** A packet from the TUN device for a peer without a usable keypair; PEER names the peer. */
  Staged: 2,
  /** A packet authenticated on keypair ARG for the first time (the responder may now send). */
  Confirmed: 3,
  /** An authenticated packet from PEER came from a new source endpoint (in the slot's row). */
  Roamed: 4,
  /** The TUN queue reported the device gone. */
  DeviceGone: 5,
} as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

/** Everything a worker needs, structured-clonable for workerData. */
export interface WorkerInit {
  id: number;
  tunFd: number;
  udpFd: number;
  wakeFd: number;
  tables: import('../device/tables.js').TablesDesc;
  slab: import('../queues/slab.js').SlabDesc;
  slotEndpoints: SharedArrayBuffer;
  toMain: import('../queues/ring.js').RingDesc;
  routes: SharedArrayBuffer;
  routesGen: number;
  batch: number;
  /** The TUN queues were opened with IFF_VNET_HDR and offloads. */
  offload: boolean;
  /** Byte offset in the slab of this worker's UDP GRO area, -1 for none. */
  groAreaAt: number;
}
