// A peer as the control plane sees it: static configuration, the handshake in flight, the
// cookie state for talking to it, and the packets staged while it has no usable keypair.
// What the data plane needs of it (keypairs, endpoint, statistics) lives in the shared tables
// under the same slot number.
import { Handshake } from '../handshake/noise.js';
import { CookieGenerator } from '../handshake/cookie.js';

/** Packets kept per peer while a handshake is in flight (wireguard-go's MaxStagedPackets). */
export const MAX_STAGED_PACKETS = 128;

export class Peer {
  readonly handshake: Handshake;
  readonly cookies: CookieGenerator;
  readonly publicKeyHex: string;
  persistentKeepaliveInterval = 0;
  /** Wall-clock time of the last completed handshake, ms since the epoch (0: never). */
  lastHandshakeWallMs = 0;
  /** Monotonic time the last initiation was sent, for the REKEY_TIMEOUT spacing. */
  lastInitiationSentMs = -Infinity;
  /** Local index of the handshake in flight (its reserved keypair slot), or -1. */
  pendingIndex = -1;
  readonly staged: Uint8Array[] = [];
  constructor(
    readonly slot: number,
    readonly publicKey: Uint8Array,
  ) {
    this.handshake = new Handshake(publicKey, slot);
    this.cookies = new CookieGenerator(publicKey);
    this.publicKeyHex = Buffer.from(publicKey).toString('hex');
  }

  stage(packet: Uint8Array): void {
    if (this.staged.length >= MAX_STAGED_PACKETS) this.staged.shift();
    this.staged.push(packet);
  }

  destroy(): void {
    this.handshake.destroy();
    this.cookies.destroy();
    this.staged.length = 0;
  }
}
