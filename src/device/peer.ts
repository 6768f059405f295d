// A peer as the control plane sees it: static configuration, the handshake in flight and the
// cookie state for talking to it. What the data plane needs of it (keypairs, endpoint,
// statistics, the packets staged while it has no keypair) lives in the shared tables and the
// workers under the same slot number; `gen` is the slot's generation while this peer holds it.
import { Handshake, HANDSHAKE_BYTES } from '../handshake/noise.js';
import { CookieGenerator, COOKIE_GENERATOR_BYTES } from '../handshake/cookie.js';
import { routingId } from './routable.js';

/** Per-peer secret state bytes, kept in one table by slot (see PeerSecrets). */
export const PEER_SECRET_BYTES = HANDSHAKE_BYTES + COOKIE_GENERATOR_BYTES;

export class Peer {
  readonly handshake: Handshake;
  readonly cookies: CookieGenerator;
  /** What its cluster-routable indices say about it (./routable.ts). */
  readonly routingId: number;
  /** Wall-clock time of the last completed handshake, ms since the epoch (0: never). */
  lastHandshakeWallMs = 0;
  /** Monotonic time the last initiation was sent, for the REKEY_TIMEOUT spacing. */
  lastInitiationSentMs = -Infinity;
  /** Local index of the handshake in flight (its reserved keypair slot), or -1. */
  pendingIndex = -1;

  /** `secrets`: this slot's PEER_SECRET_BYTES region of the device's table (zeroed). */
  constructor(
    readonly slot: number,
    readonly gen: number,
    publicKey: Uint8Array,
    secrets: Uint8Array,
  ) {
    this.handshake = new Handshake(publicKey, slot, secrets.subarray(0, HANDSHAKE_BYTES));
    this.cookies = new CookieGenerator(this, secrets.subarray(HANDSHAKE_BYTES, PEER_SECRET_BYTES));
    this.routingId = routingId(publicKey);
  }

  get publicKey(): Uint8Array {
    return this.handshake.remoteStatic;
  }

  destroy(): void {
    this.handshake.destroy();
    this.cookies.destroy();
  }
}
