// A UapiDevice in memory for the UAPI tests: it applies a SetRequest with wireguard-go's
// semantics (peers in insertion order, a prefix moves to the peer that adds it) and records
// what it was asked, so tests can check the parser through the device's eyes.
import type { DeviceState, PeerState, SetRequest, UapiDevice } from '../src/uapi/types.js';

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

export function newPeer(publicKey: Uint8Array): PeerState {
  return {
    publicKey, presharedKey: new Uint8Array(32), lastHandshakeSec: 0, lastHandshakeNsec: 0,
    txBytes: 0n, rxBytes: 0n, persistentKeepaliveInterval: 0, allowedIps: [],
  };
}

export class FakeDevice implements UapiDevice {
  state: DeviceState = { listenPort: 0, fwmark: 0 };
  readonly peers = new Map<string, PeerState>();
  /** Every request apply() was called with. */
  readonly applied: SetRequest[] = [];
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
    this.applied.push(req);
    if (this.failWith) throw this.failWith;
    if (req.listenPort !== undefined && this.busyPorts.has(req.listenPort)) return 98;
    if (req.privateKey !== undefined) this.state.privateKey = req.privateKey ?? undefined;
    if (req.listenPort !== undefined) this.state.listenPort = req.listenPort;
    if (req.fwmark !== undefined) this.state.fwmark = req.fwmark;
    if (req.replacePeers) this.peers.clear();
    for (const op of req.peers) {
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
