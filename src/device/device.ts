// The device: the control plane of one WireGuard interface, on the main thread. It owns the
// configuration (UAPI `set`/`get`), the peers and their handshakes, and drives the workers
// through the shared tables (../queues/tables.ts); handshake messages and data-plane events
// reach it as records (../queues/records.ts) and are handled in handshakes.ts.
//
// A `set` is validated whole, then applied in steps between event-loop turns (./apply.ts),
// one request at a time (later ones queue); what the main thread and the workers observe while
// a request is half applied is written down there.
//
// A removed peer is taken out in two steps, like the kernel's peer removal: unpublished first
// (routes, keypairs, a new generation for its slot), its slot reused only after the workers'
// grace period (./reclaim.ts), so no packet meant for it can reach whoever takes the slot next.
//
// Events: 'gone' when the TUN device disappears.
import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { Noise } from '../handshake/noise.js';
import { CookieChecker } from '../handshake/cookie.js';
import { RateLimiter } from '../handshake/ratelimiter.js';
import { AllowedIPs, type SharedWriter } from '../allowedips/allowedips.js';
import { Timers } from './timers.js';
import { Keypairs } from './keypairs.js';
import { Peer, PEER_SECRET_BYTES } from './peer.js';
import { KeyIndex } from './keyindex.js';
import { IndexPermutation, PeersById } from './routable.js';
import { SetSteps, type SetTarget } from './apply.js';
import { SlotPool } from './slots.js';
import { Reclaimer } from './reclaim.js';
import { Tables, S_STRIDE, S_RX_BYTES, S_TX_BYTES, D_MTU, D_TEST_FAULT, D_ROUTABLE } from '../queues/tables.js';
import { WorkerPool } from '../workers/pool.js';
import { openUdpSockets, setMark } from '../net/udp.js';
import { EndpointTable, writeEndpointRow } from '../net/endpoint.js';
import { SysError, closeFd } from '../net/libc.js';
import { getMtu, interfaceIndex, openQueues, setMtu, tunAttached } from '../tun/tun.js';
import { ctEqual, zero } from '../crypto/memory.js';
import type { DeviceState, PeerState, SetRequest, UapiDevice, Endpoint } from '../uapi/types.js';
import type { PeerOps } from '../uapi/peerops.js';
import { Handshakes, type HandshakeContext } from './handshakes.js';
import { EphemeralPool } from '../handshake/ephemerals.js';
import { errorFields, throttledErrors } from '../log.js';

export const DEFAULT_MTU = 1420;

/** Two public keys are equal (not constant-time: public keys are no secret; most differ at once). */
function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 32; i++) if (a[i] !== b[i]) return false;
  return true;
}
const EADDRINUSE = 98;
const EINVAL = 22;
/**
 * Peer slots by default: the kernel's limit (wireguard-go keeps 65,536). The shared tables are
 * sized by it, but their pages are touched only when used: idle RSS measured 86.4 MB at 65,536
 * and 87.4 MB at 1,048,576 (2 workers, 2026-12-03).
 */
export const DEFAULT_MAX_PEERS = 1 << 20;
/** Receiver indices carry the keypair slot in at most KP_SLOT_BITS, three keypairs per peer. */
export const MAX_PEERS_LIMIT = 1 << 20;
/** Period of the coarse tick that drives every peer's timers. */
export const TICK_MS = 100;
/** Main-thread time one step of a `set` may take before yielding a turn (as a `get` reply's step). */
export const SET_STEP_MS = 5;
/** Route nodes copied between two reads of the clock (a node costs ~0.1 µs). */
const ROUTE_NODES_PER_CLOCK_READ = 8192;

export interface DeviceOptions {
  ifname: string;
  workers: number;
  logger: Logger;
  peerCapacity?: number;
  keypairCapacity?: number;
  batch?: number;
  /** TUN checksum and TCP segmentation offload (IFF_VNET_HDR); default on. */
  offload?: boolean;
  /** Handshake offload pool threads (default: one per CPU; 0: none) and the queue depth that engages it. */
  handshakeThreads?: number;
  handshakeOffloadDepth?: number;
  /** Tests only: workers can be made to throw (WGTS_TEST_WORKER_FAULT, see injectWorkerFault). */
  testFaults?: boolean;
  /**
   * Cluster mode: local indices name their client to every node with the same private key, and
   * a node answers another node's index with a handshake (./routable.ts).
   */
  routableIndices?: boolean;
}

/**
 * Keypair slots beyond three per peer: room for a handshake in flight on top of previous,
 * current and next, and for slots in their grace period.
 */
const KEYPAIR_SLACK = 4096;

/**
 * Queue depth from which initiations go to the offload pool: at ~200 µs per handshake on the main
 * thread, 64 queued are ~13 ms of waiting, worth a pool round trip; half of the 128 at which the
 * device counts as under load, so the pool is draining before cookies are demanded.
 */
export const DEFAULT_OFFLOAD_DEPTH = 64;

export class Device extends EventEmitter implements UapiDevice, HandshakeContext, SetTarget<Peer> {
  /** Ephemeral key pairs made in idle time (Handshakes refills it), so a handshake on an idle device waits for one X25519 less. */
  readonly ephemerals = new EphemeralPool();
  readonly noise = new Noise({ ephemerals: this.ephemerals });
  readonly checker = new CookieChecker();
  readonly limiter = new RateLimiter();
  readonly allowed: AllowedIPs;
  readonly timers: Timers;
  readonly tables: Tables;
  readonly keypairs: Keypairs;
  /** Peers by public key: the key index gives the slot, `bySlot` the peer. */
  private readonly byKey: KeyIndex;
  private readonly bySlot: (Peer | undefined)[] = [];
  /** Cluster mode: the index permutation (keyed by the private key) and the peers by routing id. */
  private readonly routable: { permutation: IndexPermutation; byId: PeersById } | undefined;
  /** Slots below which every peer lives (the walk of `peerStates` stops there). */
  private slotsUsed = 0;
  readonly log: Logger;
  readonly reclaim: Reclaimer;
  readonly pool: WorkerPool;
  readonly handshakes: Handshakes;
  /** The stats row the main thread writes (after the workers' rows). */
  readonly mainRow: number;
  udpFds: number[];
  listenPort: number;
  fwmark = 0;
  private readonly slots: SlotPool;
  /** Slots of peers removed whose routes are not published yet. */
  private readonly removed: number[] = [];
  /** Handshake and cookie state of every peer slot, one table instead of two buffers per peer. */
  private readonly peerSecrets: Uint8Array;
  private readonly tunFds: number[];
  private tick: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly ifname: string;
  private lastMtuCheckMs = 0;
  private readonly endpointScratch = new EndpointTable(1);
  /** `set` requests queued or being applied; the last one's completion (sets never interleave). */
  private setsPending = 0;
  private setTail: Promise<unknown> = Promise.resolve();
  /** The request being applied across turns, if any. */
  private steps: SetSteps<Peer> | undefined;
  /** The allowed IPs changed since the routes were last published. */
  private routesDirty = false;

  private constructor(o: DeviceOptions, tunFds: number[], udp: { fds: number[]; port: number }) {
    super();
    this.log = o.logger;
    this.ifname = o.ifname;
    this.tunFds = tunFds;
    this.udpFds = udp.fds;
    this.listenPort = udp.port;
    const peerCapacity = o.peerCapacity ?? DEFAULT_MAX_PEERS;
    this.tables = Tables.create(peerCapacity, o.keypairCapacity ?? peerCapacity * 3 + KEYPAIR_SLACK, o.workers + 1);
    this.mainRow = o.workers;
    Atomics.store(this.tables.device, D_MTU, DEFAULT_MTU);
    this.reclaim = new Reclaimer(this.tables.epochs);
    this.slots = new SlotPool(0, peerCapacity);
    // Sized for every slot at once: growing them at 2^19 peers stalled a step for ~0.4 s. Their
    // pages are touched only as peers come (KeyIndex's buckets as they fill: ~80 B a peer at
    // 100k of 2^20, 8 at 2^20).
    this.byKey = new KeyIndex(peerCapacity, peerCapacity);
    this.timers = new Timers({ capacity: peerCapacity });
    // Room for one prefix a peer in each family (a trie of N prefixes has up to 2N - 1 nodes).
    this.allowed = new AllowedIPs(2 * peerCapacity);
    this.peerSecrets = new Uint8Array(peerCapacity * PEER_SECRET_BYTES);
    if (o.routableIndices) this.routable = { permutation: new IndexPermutation(), byId: new PeersById(peerCapacity) };
    this.keypairs = new Keypairs(this.tables, this.reclaim, this.routable?.permutation);
    // The pool first: the handshake code reads its slab. Records wait for the first event-loop turn.
    this.pool = new WorkerPool({
      tables: this.tables,
      tunFds,
      udpFds: udp.fds,
      routes: this.allowed.snapshot(),
      batch: o.batch ?? 128,
      offload: o.offload ?? true,
      onRecord: (slot) => this.handshakes.onRecord(slot),
      onRecordError: throttledErrors(this.log, 'control record failed; the next ones are handled'),
      onWorkerError: (id, err) => this.log.error({ worker: id, err: errorFields(err) }, 'worker failed; restarting it'),
      testFaults: o.testFaults,
    });
    this.handshakes = new Handshakes(this, {
      threads: o.handshakeThreads ?? availableParallelism(),
      offloadDepth: o.handshakeOffloadDepth ?? DEFAULT_OFFLOAD_DEPTH,
    });
    this.tick = setInterval(() => this.onTick(), TICK_MS);
  }

  /** Creates the TUN device (one queue per worker), binds a UDP port and starts the workers. */
  static open(o: DeviceOptions): Device {
    const tunFds = openQueues(o.ifname, o.workers, o.offload ?? true);
    try {
      setMtu(o.ifname, DEFAULT_MTU);
      const udp = openUdpSockets(0, o.workers);
      return new Device(o, tunFds, udp);
    } catch (err) {
      tunFds.forEach(closeFd);
      throw err;
    }
  }

  // ---- what the handshake code reaches (HandshakeContext) ----

  peerByKey(publicKey: Uint8Array): Peer | undefined {
    const slot = this.byKey.get(publicKey);
    return slot < 0 ? undefined : this.bySlot[slot];
  }

  routedPeers(index: number): Peer[] {
    const r = this.routable;
    if (!r?.permutation.keyed) return [];
    return r.byId.slots(r.permutation.idOf(index)).map((slot) => this.bySlot[slot]!);
  }

  get peerCount(): number {
    return this.byKey.size;
  }

  /** Every peer, in slot order (a snapshot: peers may be removed while the caller walks it). */
  private allPeers(): Peer[] {
    const out: Peer[] = [];
    for (let s = 0; s < this.slotsUsed; s++) {
      const p = this.bySlot[s];
      if (p !== undefined) out.push(p);
    }
    return out;
  }

  peerAt(slot: number): Peer | undefined {
    return this.bySlot[slot];
  }

  udpFd(): number {
    return this.udpFds[0]!;
  }

  deviceGone(): void {
    this.emit('gone');
  }

  /** Tests only: makes worker `id` throw at its next batch (needs `testFaults`). */
  injectWorkerFault(id: number): void {
    this.pool.injectFault(id, this.tables.device, D_TEST_FAULT);
  }

  // ---- UAPI ----

  deviceState(): DeviceState {
    return {
      privateKey: this.noise.hasPrivateKey ? this.noise.privateKey : undefined,
      listenPort: this.listenPort,
      fwmark: this.fwmark,
    };
  }

  /**
   * Every peer's state, resumable: a caller serving a million peers (a UAPI get, a metrics
   * scrape) can pause between peers; a peer removed meanwhile is skipped, one added is not seen.
   */
  *peerStates(): Generator<PeerState> {
    // A snapshot of (slot, generation) pairs, not a live walk of the slots: a peer removed and
    // added again between two steps could land in a later slot and come round a second time.
    const n = this.slotsUsed;
    const gens = new Int32Array(n);
    const present = new Uint8Array(n);
    for (let s = 0; s < n; s++) {
      const p = this.bySlot[s];
      if (p !== undefined) {
        present[s] = 1;
        gens[s] = p.gen;
      }
    }
    for (let s = 0; s < n; s++) {
      if (present[s] === 0) continue;
      const p = this.bySlot[s];
      if (p !== undefined && p.gen === gens[s]) yield this.peerState(p);
    }
  }

  private peerState(peer: Peer): PeerState {
    let rx = 0;
    let tx = 0;
    for (let w = 0; w <= this.mainRow; w++) {
      const s = this.tables.statsBase(w, peer.slot);
      rx += this.tables.stats[s + S_RX_BYTES]!;
      tx += this.tables.stats[s + S_TX_BYTES]!;
    }
    const ms = peer.lastHandshakeWallMs;
    const sec = Math.floor(ms / 1000);
    return {
      publicKey: peer.publicKey,
      presharedKey: peer.handshake.presharedKey,
      endpoint: this.endpointOf(peer.slot),
      lastHandshakeSec: sec,
      lastHandshakeNsec: Math.round((ms - sec * 1000) * 1e6),
      txBytes: BigInt(tx),
      rxBytes: BigInt(rx),
      persistentKeepaliveInterval: this.timers.persistentKeepalive(peer.slot),
      allowedIps: this.allowed.entriesForPeer(peer.slot),
    };
  }

  /**
   * Applies a validated `set`. Requests never interleave: one that arrives while another is
   * applied (from another connection: a connection's own requests already wait for their
   * replies) is queued, and validated against the device as it is when its turn comes.
   * A request is validated whole, then applied in steps of SET_STEP_MS between event-loop
   * turns (./apply.ts says what the main thread and the workers can observe meanwhile); the
   * reply, a promise then, comes once all of it is applied and the routes are published.
   */
  apply(req: SetRequest): number | Promise<number> {
    if (this.setsPending === 0) {
      const r = this.applyNow(req);
      if (typeof r === 'number') return r;
      return this.queued(r);
    }
    return this.queued(this.setTail.then(() => this.applyNow(req)));
  }

  /** Whether a `set` is queued or being applied: a `get` waits for it, as in wireguard-go. */
  get setting(): Promise<void> | undefined {
    return this.setsPending === 0 ? undefined : this.setTail.then(() => undefined);
  }

  private queued(done: Promise<number>): Promise<number> {
    this.setsPending++;
    const tracked = done.finally(() => this.setsPending--);
    this.setTail = tracked.catch(() => undefined);
    return tracked;
  }

  private applyNow(req: SetRequest): number | Promise<number> {
    if (this.closed) return EINVAL;
    const t0 = performance.now();
    // Everything that can fail is tried before anything changes.
    let newUdp: { fds: number[]; port: number } | undefined;
    if (req.listenPort !== undefined && req.listenPort !== this.listenPort) {
      try {
        newUdp = openUdpSockets(req.listenPort, this.tunFds.length);
      } catch (err) {
        // wireguard-go answers EADDRINUSE for any failure to bind.
        if (!(err instanceof SysError && err.errno === EADDRINUSE)) this.log.error({ err: (err as Error).message }, 'cannot bind the new listen port');
        return EADDRINUSE;
      }
    }
    if (!this.peersFit(req)) {
      newUdp?.fds.forEach(closeFd);
      this.log.error({ limit: this.tables.desc.peerCapacity }, `the request would pass the limit of ${this.tables.desc.peerCapacity} peers (--max-peers); nothing was changed`);
      // As wireguard-go answers a peer past its limit.
      return EINVAL;
    }

    // The mark goes on the sockets that will serve: setting it is the test (EPERM without
    // CAP_NET_ADMIN), answered like wireguard-go with EADDRINUSE, before anything changes.
    const mark = req.fwmark ?? (newUdp ? this.fwmark : undefined);
    if (mark !== undefined && !this.markSockets(newUdp?.fds ?? this.udpFds, mark)) {
      if (newUdp) newUdp.fds.forEach(closeFd);
      else this.markSockets(this.udpFds, this.fwmark);
      return EADDRINUSE;
    }
    if (req.privateKey !== undefined) this.setPrivateKey(req.privateKey);
    const swapped = newUdp ? this.swapSockets(newUdp) : undefined;
    if (req.fwmark !== undefined) this.fwmark = req.fwmark;
    const steps = new SetSteps(req.peers, req.replacePeers ? this.allPeers() : [], this);
    if (req.replacePeers) this.routesDirty = true;
    const tv = performance.now();
    const firstDone = steps.step(SET_STEP_MS);
    this.log.debug({ validateMs: +(tv - t0).toFixed(1), firstStepMs: +(performance.now() - tv).toFixed(1) }, 'set validated');
    if (firstDone) {
      this.finishSet();
      // With a new port the reply waits until the old one is released.
      return swapped ? swapped.then(() => 0) : 0;
    }
    this.steps = steps;
    let turns = 1;
    let longestStep = performance.now() - t0;
    let longestGap = 0;
    let last = performance.now();
    let routes: SharedWriter | undefined;
    const applied = new Promise<number>((resolve, reject) => {
      const next = (): void => {
        turns++;
        const begin = performance.now();
        longestGap = Math.max(longestGap, begin - last);
        try {
          if (this.closed) {
            this.steps = undefined;
            resolve(EINVAL);
          } else if (routes === undefined ? !steps.step(SET_STEP_MS) : !this.writeRoutes(routes)) {
            last = performance.now();
            longestStep = Math.max(longestStep, last - begin);
            if (last - begin > 30) this.log.debug({ at: steps.sectionsDone, ms: +(last - begin).toFixed(1) }, 'long set step');
            setImmediate(next);
          } else if (routes === undefined && this.routesDirty) {
            // Applied: the routes snapshot is written in steps too (the trie does not change
            // meanwhile: `this.steps` still holds other publishers off, and sets are queued).
            this.routesDirty = false;
            routes = this.allowed.snapshotWriter();
            setImmediate(next);
          } else {
            this.steps = undefined;
            if (routes !== undefined) this.pool.publishRoutes(routes.sab);
            const tf = performance.now();
            this.finishSet();
            this.log.debug({
              finishMs: +(performance.now() - tf).toFixed(1),
              sections: req.peers.length, turns, ms: Math.round(performance.now() - t0),
              longestStepMs: +longestStep.toFixed(1), longestGapMs: +longestGap.toFixed(1),
            }, 'set applied across turns');
            resolve(0);
          }
        } catch (err) {
          this.steps = undefined;
          this.finishSet();
          reject(err);
        }
      };
      setImmediate(next);
    });
    return swapped ? Promise.all([applied, swapped]).then(([n]) => n) : applied;
  }

  /** Writes routes for about SET_STEP_MS; true once the snapshot is complete. */
  private writeRoutes(w: SharedWriter): boolean {
    const until = performance.now() + SET_STEP_MS;
    for (;;) {
      if (w.step(ROUTE_NODES_PER_CLOCK_READ)) return true;
      if (performance.now() > until) return false;
    }
  }

  /** A request is applied: its routes and removals are published, its removed slots queued. */
  private finishSet(): void {
    this.publishRemovals();
    this.reclaim.seal();
  }

  /**
   * Whether the peers never outnumber the slots while the request's sections apply in order:
   * a removal frees its slot for the sections after it, as in wireguard-go, which creates and
   * removes line by line under the same limit.
   */
  private peersFit(req: SetRequest): boolean {
    const capacity = this.tables.desc.peerCapacity;
    // A section creates at most one peer: most requests fit without looking at their keys
    // (a walk that costs ~1 µs per section, a stall at a million).
    if ((req.replacePeers ? 0 : this.byKey.size) + req.peers.length <= capacity) return true;
    /** Keys the request names, by first section; whether each exists at that point in the request. */
    const named = new KeyIndex(req.peers.length, req.peers.length);
    const exists = new Uint8Array(req.peers.length);
    let count = req.replacePeers ? 0 : this.byKey.size;
    for (let i = 0; i < req.peers.length; i++) {
      const key = req.peers.publicKey(i);
      const remove = req.peers.removes(i);
      let id = named.get(key);
      if (id < 0) {
        id = i;
        named.add(key, id);
        exists[id] = !req.replacePeers && this.byKey.get(key) >= 0 ? 1 : 0;
      }
      if (remove && exists[id] === 1) {
        count--;
        exists[id] = 0;
      } else if (!remove && !req.peers.updateOnly(i) && exists[id] === 0) {
        if (++count > capacity) return false;
        exists[id] = 1;
      }
    }
    return true;
  }

  // ---- what the steps of a `set` reach (SetTarget) ----

  isCurrent(peer: Peer): boolean {
    return this.bySlot[peer.slot] === peer;
  }

  afterReplace(sections: number): void {
    // Sections that may need more slots than are free would take the replaced peers' slots,
    // which are reused only once routes without those peers are published: publish now, while
    // the trie is nearly empty, so their grace period runs during the request. Found with no
    // slot mid-request, addPeer would publish a snapshot of every route so far at once (~100 ms
    // at a million, in one step).
    if (this.slots.free < sections) this.publishRemovals();
  }

  applySection(ops: PeerOps, i: number): Peer | undefined {
    const publicKey = ops.publicKey(i);
    let peer = this.peerByKey(publicKey);
    if (ops.removes(i)) {
      if (peer) this.removePeer(peer);
      return undefined;
    }
    if (!peer) {
      if (ops.updateOnly(i)) return undefined;
      // wireguard-go ignores a peer whose key is our own public key.
      if (this.noise.hasPrivateKey && sameKey(publicKey, this.noise.publicKey)) return undefined;
      peer = this.addPeer(publicKey);
    }
    const psk = ops.presharedKey(i);
    if (psk) peer.handshake.presharedKey.set(psk);
    const endpoint = ops.endpoint(i);
    if (endpoint) this.setEndpoint(peer.slot, endpoint);
    const keepalive = ops.keepalive(i);
    if (keepalive !== undefined) {
      const turnedOn = this.timers.setPersistentKeepalive(peer.slot, keepalive);
      if (turnedOn && this.noise.hasPrivateKey) this.handshakes.sendKeepalive(peer);
    }
    if (ops.replacesAllowedIps(i)) {
      this.allowed.removeByPeer(peer.slot);
      this.routesDirty = true;
    }
    return peer;
  }

  applyAllowedIp(peer: Peer, ops: PeerOps, j: number): void {
    if (ops.allowedIpRemoves(j)) this.allowed.remove(peer.slot, ops.allowedIpAddr(j), ops.allowedIpCidr(j));
    else this.allowed.insert(peer.slot, ops.allowedIpAddr(j), ops.allowedIpCidr(j));
    this.routesDirty = true;
  }

  private addPeer(publicKey: Uint8Array): Peer {
    // peersFit() has checked that the request's peers fit; slots of removed peers may still be
    // in their grace period. Publishing here is between two sections of a request (see apply.ts).
    let slot = this.slots.take();
    // Slots retired by afterReplace are usually past their grace period by now.
    if (slot < 0 && this.reclaim.poll() > 0) slot = this.slots.take();
    if (slot < 0) {
      this.publishRemovals();
      this.reclaim.reclaimNow();
      slot = this.slots.take();
      if (slot < 0) throw new Error('no free peer slot: removed peers are still in their grace period');
    }
    const secrets = this.peerSecrets.subarray(slot * PEER_SECRET_BYTES, (slot + 1) * PEER_SECRET_BYTES);
    // A slot never used is still zero (fresh pages): writing zeros would only fault them in now.
    if (slot < this.slotsUsed) secrets.fill(0);
    const t = this.tables;
    if (slot < this.slotsUsed) for (let w = 0; w <= this.mainRow; w++) t.stats.fill(0, t.statsBase(w, slot), t.statsBase(w, slot) + S_STRIDE);
    t.peers.reset(slot);
    const peer = new Peer(slot, t.peers.bumpGen(slot), publicKey, secrets);
    this.byKey.add(publicKey, slot);
    this.bySlot[slot] = peer;
    this.routable?.byId.add(peer.routingId, slot);
    if (slot >= this.slotsUsed) this.slotsUsed = slot + 1;
    this.timers.init(slot);
    return peer;
  }

  /**
   * The first of two steps, like the kernel's peer removal: the peer is unpublished (its routes
   * go with the next routes snapshot, its keypairs at once, its slot gets a new generation so
   * staged packets and records naming it are dropped) and its own state wiped. Its slot is
   * reused only after the workers' grace period that begins once the routes without it are
   * published (publishRemovals).
   */
  removePeer(peer: Peer): void {
    this.allowed.removeByPeer(peer.slot);
    this.byKey.delete(peer.slot);
    this.bySlot[peer.slot] = undefined;
    this.routable?.byId.remove(peer.routingId, peer.slot);
    this.tables.peers.bumpGen(peer.slot);
    this.timers.stop(peer.slot);
    this.handshakes.peerRemoved(peer);
    this.keypairs.clearPeer(peer.slot);
    if (peer.pendingIndex >= 0) this.keypairs.release(peer.pendingIndex);
    peer.destroy();
    this.removed.push(peer.slot);
    this.routesDirty = true;
  }

  /**
   * Publishes the routes (without the peers removed since the last call, with every allowed
   * IP changed since) and queues the removed slots for reuse after the grace period that starts
   * now. Never while a request's section is half applied (apply.ts).
   */
  private publishRemovals(): void {
    if (this.steps !== undefined && !this.steps.atBoundary) return;
    if (this.routesDirty) {
      this.routesDirty = false;
      this.pool.publishRoutes(this.allowed.snapshot());
    }
    if (this.removed.length === 0) return;
    for (const slot of this.removed) this.reclaim.retire(() => this.slots.give(slot));
    this.removed.length = 0;
    this.reclaim.seal();
  }

  private setPrivateKey(key: Uint8Array | null): void {
    // `wg syncconf` and `wg setconf` send the key every time: the same key must not end every
    // session (wireguard-go returns early too).
    const has = this.noise.hasPrivateKey;
    if (key === null ? !has : has && ctEqual(key, this.noise.privateKey)) return;
    this.noise.setPrivateKey(key);
    this.handshakes.offload?.setPrivateKey(this.noise.hasPrivateKey ? this.noise.privateKey : null);
    if (this.routable) {
      this.routable.permutation.setKey(this.noise.hasPrivateKey ? this.noise.privateKey : null);
      Atomics.store(this.tables.device, D_ROUTABLE, this.noise.hasPrivateKey ? 1 : 0);
    }
    if (this.noise.hasPrivateKey) {
      this.checker.setPublicKey(this.noise.publicKey);
      // A peer with our own public key cannot exist (wireguard-go removes it).
      const self = this.peerByKey(this.noise.publicKey);
      if (self) this.removePeer(self);
    }
    for (const peer of this.allPeers()) {
      this.noise.invalidate(peer.handshake);
      peer.handshake.clear();
      this.keypairs.clearPeer(peer.slot);
    }
    this.publishRemovals();
  }

  /** Moves the workers to new sockets; resolves once the old ones are closed (the old port free). */
  private swapSockets(udp: { fds: number[]; port: number }): Promise<void> {
    const old = this.udpFds;
    this.udpFds = udp.fds;
    this.listenPort = udp.port;
    return this.pool.restart(udp.fds, () => old.forEach(closeFd));
  }

  private markSockets(fds: number[], mark: number): boolean {
    for (const fd of fds) {
      const r = setMark(fd, mark);
      if (r < 0) {
        this.log.error({ errno: -r }, 'cannot set fwmark');
        return false;
      }
    }
    return true;
  }

  /** Sets a peer's endpoint from the configuration (no sticky source: the routed address first). */
  setEndpoint(slot: number, ep: Endpoint): void {
    this.tables.peers.writeEndpoint(slot, (t, row) => writeEndpointRow(t, row, ep.family, ep.addr, ep.port));
  }

  endpointOf(slot: number): Endpoint | undefined {
    const t = this.endpointScratch;
    if (!this.tables.peers.readEndpoint(slot, t, 0)) return undefined;
    const family = t.family[0];
    if (family !== 4 && family !== 6) return undefined;
    const a = t.addr.subarray(0, 16);
    return { family, addr: family === 4 ? a.slice(12) : a.slice(), port: t.port[0]! };
  }

  // ---- time ----

  private onTick(): void {
    if (this.closed) return;
    if (!this.tunFds.some(tunAttached)) {
      this.emit('gone');
      return;
    }
    this.handshakes.tick();
    // While a request is applied, its end publishes (a snapshot per tick would cost more than
    // the steps; apply.ts).
    if (this.steps === undefined) this.publishRemovals();
    this.reclaim.poll();
    this.followMtu();
  }

  /**
   * Padding must never exceed the interface MTU, which wg-quick or a user may change at any time;
   * poll it once a second. After the interface moved to another namespace it is out of sight
   * (name lookups see only ours) and the last value stands.
   */
  private followMtu(): void {
    const ms = Date.now();
    if (ms - this.lastMtuCheckMs < 1000) return;
    this.lastMtuCheckMs = ms;
    if (interfaceIndex(this.ifname) === 0) return;
    try {
      const mtu = getMtu(this.ifname);
      if (mtu !== this.tables.device[D_MTU]) Atomics.store(this.tables.device, D_MTU, mtu);
    } catch {
      // Raced with a rename or deletion: the tick's tunAttached check handles that.
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.tick);
    await this.pool.stop();
    this.pool.close();
    await this.handshakes.offload?.close();
    for (const peer of this.allPeers()) this.removePeer(peer);
    this.removed.length = 0;
    this.reclaim.drainAll();
    this.noise.setPrivateKey(null);
    this.routable?.permutation.setKey(null);
    this.ephemerals.wipe();
    this.tables.keypairs.wipeAll(zero);
    zero(this.peerSecrets);
    this.udpFds.forEach(closeFd);
    this.tunFds.forEach(closeFd);
  }
}
