// The contract between the UAPI server (src/uapi) and the device (src/device): a `set` request
// arrives here already parsed and validated as a whole, so the device applies all of it or, on
// a runtime failure such as a busy port, none of it.
import type { PeerOps } from './peerops.js';

export interface Endpoint {
  /** 4 or 6: the family the address was written in. */
  family: 4 | 6;
  /** 4 bytes for IPv4, 16 for IPv6. */
  addr: Uint8Array;
  port: number;
  /**
   * IPv6 only: the interface index of a "%zone" suffix (link-local endpoints), resolved like
   * wireguard-go (interface name, else number). Used when sending; `get` never shows it.
   */
  scopeId?: number;
}

/**
 * A whole `set` request. Its peer sections are packed (peerops.ts); its private key may be a
 * view of a buffer shared with other values: copy what you keep.
 */
export interface SetRequest {
  /** null: `private_key=` with all zeros, which removes the key. Otherwise already clamped. */
  privateKey?: Uint8Array | null;
  listenPort?: number;
  /** 0 removes the mark. */
  fwmark?: number;
  replacePeers: boolean;
  /**
   * The `public_key=` sections; the device applies them in order (a key may appear twice). As
   * in wireguard-go, a section whose key is the device's own public key is ignored.
   */
  peers: PeerOps;
}

export interface PeerState {
  publicKey: Uint8Array;
  presharedKey: Uint8Array; // zeros when none
  endpoint?: Endpoint;
  lastHandshakeSec: number;
  lastHandshakeNsec: number;
  txBytes: bigint;
  rxBytes: bigint;
  persistentKeepaliveInterval: number;
  allowedIps: { addr: Uint8Array; cidr: number }[];
}

export interface DeviceState {
  privateKey?: Uint8Array;
  listenPort: number;
  fwmark: number;
}

/** What a device offers the UAPI server. */
export interface UapiDevice {
  deviceState(): DeviceState;
  /**
   * Every peer once, in a stable order (for `get=1`). A large reply is written across
   * event-loop turns, so the walk must tolerate peers coming and going between two steps.
   */
  peerStates(): Iterator<PeerState>;
  /**
   * Applies a validated request, all or nothing; returns 0 or a positive errno, which goes on
   * the wire negated. To answer as wireguard-go does: 98 (EADDRINUSE) when the listen port
   * cannot be bound or the fwmark cannot be set, whatever the system error; 22 (EINVAL) when
   * a new peer would pass the peer limit. A throw is answered with 55 (ENOANO). A promise when
   * part of the change completes later (the old listen port is released once the workers have
   * moved to the new one): the reply waits for it, as wireguard-go's does for its rebind.
   */
  apply(req: SetRequest): number | Promise<number>;
  /**
   * Defined while a `set` (of any connection) is still being applied across turns: settles
   * when no set is pending any more. A `get` waits for it, as wireguard-go's reads wait for
   * its configuration lock, so a reply never shows half a request.
   */
  readonly setting?: Promise<void> | undefined;
}
