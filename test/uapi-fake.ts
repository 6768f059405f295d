// A UapiDevice in memory for the UAPI tests: it applies a SetRequest with wireguard-go's
// semantics (peers in insertion order, a prefix moves to the peer that adds it) and records
// what it was asked, so tests can check the parser through the device's eyes.
import type { PeerOps } from '../src/uapi/peerops.js';
import type { DeviceState, Endpoint, PeerState, SetRequest, UapiDevice } from '../src/uapi/types.js';

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

export interface AllowedIpOp {
  addr: Uint8Array;
  cidr: number;
  remove: boolean;
}

/** One section of a `set` request as a plain object, its arrays copied. */
export interface PeerOp {
  publicKey: Uint8Array;
  remove: boolean;
  updateOnly: boolean;
  presharedKey?: Uint8Array;
  endpoint?: Endpoint;
  persistentKeepaliveInterval?: number;
  replaceAllowedIps: boolean;
  allowedIps: AllowedIpOp[];
}

/** A request as apply() received it, its sections as plain objects. */
export type AppliedRequest = Omit<SetRequest, 'peers'> & { peers: PeerOp[] };

/** The sections of a request as plain objects, for tests to compare and fakes to apply. */
export function peerOpsOf(ops: PeerOps): PeerOp[] {
  const out: PeerOp[] = [];
  for (let i = 0; i < ops.length; i++) {
    const op: PeerOp = {
      publicKey: ops.publicKey(i).slice(), remove: ops.removes(i), updateOnly: ops.updateOnly(i), replaceAllowedIps: ops.replacesAllowedIps(i), allowedIps: [],
    };
    const psk = ops.presharedKey(i);
    if (psk !== undefined) op.presharedKey = psk.slice();
    const ep = ops.endpoint(i);
    if (ep !== undefined) op.endpoint = { ...ep, addr: ep.addr.slice() };
    const keepalive = ops.keepalive(i);
    if (keepalive !== undefined) op.persistentKeepaliveInterval = keepalive;
    for (let j = ops.allowedIpStart(i); j < ops.allowedIpEnd(i); j++) {
      op.allowedIps.push({ addr: ops.allowedIpAddr(j).slice(), cidr: ops.allowedIpCidr(j), remove: ops.allowedIpRemoves(j) });
    }
    out.push(op);
  }
  return out;
}

export function newPeer(publicKey: Uint8Array): PeerState {
  return {
    publicKey, presharedKey: new Uint8Array(32), lastHandshakeSec: 0, lastHandshakeNsec: 0,
    txBytes: 0n, rxBytes: 0n, persistentKeepaliveInterval: 0, allowedIps: [],
  };
}

export class FakeDevice implements UapiDevice {
  state: DeviceState = { listenPort: 0, fwmark: 0 };
  readonly peers = new Map<string, PeerState>();
  /** Every request apply() was called with, copied. */
  readonly applied: AppliedRequest[] = [];
  /** listen_port values that fail with EADDRINUSE, as a bound port would. */
  readonly busyPorts = new Set<number>();
  /** Which peer holds each allowed prefix ("hex/cidr"); may name a removed peer, which is harmless. */
  private readonly prefixOwner = new Map<string, PeerState>();
  /** Set to make apply() throw. */
  failWith: Error | undefined;

  constructor(state?: { device: DeviceState; peers: PeerState[] }) {
    if (state === undefined) return;
    this.state = { ...state.device };
    for (const p of state.peers) this.peers.set(hexOf(p.publicKey), p);
  }

  deviceState(): DeviceState {
    return this.state;
  }

  peerStates(): Iterator<PeerState> {
    return this.peers.values();
  }

  apply(req: SetRequest): number | Promise<number> {
    // Copied: the session wipes the request's keys once it is applied.
    const { peers, ...rest } = req;
    const copy: AppliedRequest = { ...rest, peers: peerOpsOf(peers) };
    if (req.privateKey) copy.privateKey = req.privateKey.slice();
    this.applied.push(copy);
    if (this.failWith) throw this.failWith;
    if (req.listenPort !== undefined && this.busyPorts.has(req.listenPort)) return 98;
    if (copy.privateKey !== undefined) this.state.privateKey = copy.privateKey ?? undefined;
    if (req.listenPort !== undefined) this.state.listenPort = req.listenPort;
    if (req.fwmark !== undefined) this.state.fwmark = req.fwmark;
    if (req.replacePeers) this.peers.clear();
    for (const op of copy.peers) {
      const key = hexOf(op.publicKey);
      let peer = this.peers.get(key);
      if (op.remove) {
        this.peers.delete(key);
        continue;
      }
      if (peer === undefined) {
        if (op.updateOnly) continue;
        peer = newPeer(op.publicKey);
        this.peers.set(key, peer);
      }
      if (op.presharedKey) peer.presharedKey = op.presharedKey;
      if (op.endpoint) peer.endpoint = op.endpoint;
      if (op.persistentKeepaliveInterval !== undefined) peer.persistentKeepaliveInterval = op.persistentKeepaliveInterval;
      if (op.replaceAllowedIps) peer.allowedIps = [];
      for (const ip of op.allowedIps) {
        const same = (a: { addr: Uint8Array; cidr: number }): boolean => a.cidr === ip.cidr && sameBytes(a.addr, ip.addr);
        if (ip.remove) {
          peer.allowedIps = peer.allowedIps.filter((a) => !same(a));
          continue;
        }
        // A prefix moves to the peer that adds it; the index keeps this linear at 100k peers.
        const prefix = `${hexOf(ip.addr)}/${ip.cidr}`;
        const owner = this.prefixOwner.get(prefix);
        if (owner !== undefined && owner !== peer) owner.allowedIps = owner.allowedIps.filter((a) => !same(a));
        this.prefixOwner.set(prefix, peer);
        if (!peer.allowedIps.some(same)) peer.allowedIps.push({ addr: ip.addr, cidr: ip.cidr });
      }
    }
    return 0;
  }
}
