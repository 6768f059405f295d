// How the load generator writes a handshake initiation (Noise IKpsk2, the initiator's first
// message), in one of two ways:
//
//   fresh        Noise.createInitiation, as a real client: a new ephemeral key per initiation,
//                so two X25519 (key generation, DH(e, S_r)) and two AEADs each (~100+ µs).
//   precomputed  before the run, each client gets a small pool of ephemeral keys and, for each,
//                everything of the initiation that does not depend on the send time: the
//                ephemeral public key and the encrypted static key as they go on the wire, and
//                the hash, chaining key and AEAD key after the static-static DH. Sending then
//                costs one AEAD of the TAI64N timestamp, one BLAKE2s over it and the macs.
//
// Precomputing is a load-testing shortcut, never what a real client does: a client that sends
// the same ephemeral key twice gives up the forward secrecy and the unlinkability a fresh one
// buys. Responders accept it (nothing in the protocol remembers ephemerals); only the timestamp
// must grow from one initiation of a client to the next, which the per-client stamp clock here
// guarantees in both modes.
//
// An Initiation is the memory of one initiation in flight: its message bytes with typed-array
// views made once, and the Handshake the response is consumed into (the initiator still needs
// the ephemeral private key for the response's DHs: the precomputed pool keeps it, and a send
// copies it into the Handshake). The engine pools Initiations, so a send allocates nothing.
import { hash, HASH_LEN } from '../crypto/blake2s.js';
import { kdf } from '../crypto/kdf.js';
import { seal, NONCE_LEN } from '../crypto/aead.js';
import { dh, generateKeyPair } from '../crypto/x25519.js';
import { zero } from '../crypto/memory.js';
import { Handshake, HandshakeState, type Noise } from '../handshake/noise.js';
import {
  KEY_LEN, TIMESTAMP_LEN, MSG_INITIATION, INIT_SENDER, INIT_EPHEMERAL, INIT_TIMESTAMP,
  INIT_MAC1, INIT_MAC2, INIT_LEN, writeHeader, writeU32,
} from '../handshake/messages.js';

/**
 * The smallest step between two timestamps of one client: TAI64N stamps are rounded down to
 * 2^24 ns (16.78 ms, wireguard-go's whitening, tai64n.ts), and a responder takes only a stamp
 * strictly later than the last one it accepted from the peer. Two times 17 ms apart always
 * round to different stamps.
 */
export const STAMP_STEP_MS = 17;

/**
 * The wall-clock time (ms) to stamp a client's next initiation with: now, or STAMP_STEP_MS after
 * its last stamp when the clock has not moved on that far (a clock step back, or initiations
 * closer than the protocol allows), so consecutive initiations of a client always carry
 * increasing timestamps.
 */
export function nextStampMs(lastStampMs: number, nowUnixMs: number): number {
  return Math.max(nowUnixMs, lastStampMs + STAMP_STEP_MS);
}

const TAI_BASE_HI = 0x40000000; // 2^62 as the high 32 bits of the 64-bit seconds field
const WHITENER_MASK = 0x1000000 - 1;

/**
 * The TAI64N stamp of `unixMs` into `out` at `off`, as tai64n.ts writeTai64n (nanoseconds rounded
 * down to 2^24 ns) but without its DataView per call.
 */
export function writeStamp(out: Uint8Array, off: number, unixMs: number): void {
  const secs = Math.floor(unixMs / 1000);
  const nanos = (((unixMs - secs * 1000) * 1e6) & ~WHITENER_MASK) >>> 0;
  putU32BE(out, off, TAI_BASE_HI + Math.floor(secs / 2 ** 32));
  putU32BE(out, off + 4, secs >>> 0);
  putU32BE(out, off + 8, nanos);
}

function putU32BE(out: Uint8Array, off: number, v: number): void {
  out[off] = v >>> 24;
  out[off + 1] = v >>> 16;
  out[off + 2] = v >>> 8;
  out[off + 3] = v;
}

/** One initiation's memory: the message, views of its fields, and its initiator Handshake. */
export class Initiation {
  /** A Buffer, so node:dgram sends it as is. */
  readonly bytes = Buffer.alloc(INIT_LEN);
  readonly encryptedTimestamp = this.bytes.subarray(INIT_TIMESTAMP, INIT_MAC1);
  /** What mac1 covers, and mac1 itself; the same for mac2. */
  readonly mac1Input = this.bytes.subarray(0, INIT_MAC1);
  readonly mac1 = this.bytes.subarray(INIT_MAC1, INIT_MAC2);
  readonly mac2Input = this.bytes.subarray(0, INIT_MAC2);
  readonly mac2 = this.bytes.subarray(INIT_MAC2, INIT_LEN);
  readonly hs: Handshake;
  // The Handshake makes a view per getter call: take each once.
  readonly hash: Uint8Array;
  readonly chainKey: Uint8Array;
  readonly localEphemeral: Uint8Array;
  readonly staticStaticKey: Uint8Array;

  constructor(serverKey: Uint8Array) {
    this.hs = new Handshake(serverKey, 0);
    this.hash = this.hs.hash;
    this.chainKey = this.hs.chainKey;
    this.localEphemeral = this.hs.localEphemeral;
    this.staticStaticKey = this.hs.precomputedStaticStatic;
  }

  destroy(): void {
    this.hs.destroy();
  }
}

/**
 * A fresh initiation, as a real client makes it: `staticStatic` is the client's never-sent
 * Handshake holding its computed static-static DH (Noise.precompute), copied with its verdict so
 * the shared pooled Handshake does not compute that DH again. False if Noise refused.
 */
export function writeFresh(noise: Noise, staticStatic: Handshake, staticStaticKey: Uint8Array, init: Initiation, index: number, stampMs: number): boolean {
  init.staticStaticKey.set(staticStaticKey);
  init.hs.staticStatic = staticStatic.staticStatic;
  return noise.createInitiation(init.hs, index, stampMs, init.bytes);
}

// C0 = HASH(construction) and H0 = HASH(C0 || identifier), as noise.ts computes them.
const INITIAL_CHAIN_KEY = new Uint8Array(HASH_LEN);
const INITIAL_HASH = new Uint8Array(HASH_LEN);
hash(INITIAL_CHAIN_KEY, new TextEncoder().encode('Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s'));
hash(INITIAL_HASH, INITIAL_CHAIN_KEY, new TextEncoder().encode('WireGuard v1 zx2c4 Jason@zx2c4.com'));
const ZERO_NONCE = new Uint8Array(NONCE_LEN);

// One pool entry: the ephemeral private key, then the 80 bytes that go on the wire from
// INIT_EPHEMERAL (public key, encrypted static key), then the state after the static part.
const E_PRIVATE = 0;
const E_WIRE = E_PRIVATE + KEY_LEN;
const WIRE_LEN = INIT_TIMESTAMP - INIT_EPHEMERAL;
const E_HASH = E_WIRE + WIRE_LEN;
const E_CHAIN_KEY = E_HASH + HASH_LEN;
const E_KEY = E_CHAIN_KEY + HASH_LEN;
/** Bytes per precomputed ephemeral. */
export const ENTRY_BYTES = E_KEY + KEY_LEN;

function copy(to: Uint8Array, toOff: number, from: Uint8Array, fromOff: number, len: number): void {
  // A byte loop rather than set(subarray()): no view per copy, and these are tens of bytes.
  for (let i = 0; i < len; i++) to[toOff + i] = from[fromOff + i]!;
}

/**
 * The precomputed ephemerals of one engine's clients, `perClient` each, in one table. Client
 * numbers are the engine's own (0 .. clients - 1). One per thread: its scratch is its own.
 */
export class PrecomputedInitiations {
  private readonly table: Uint8Array;
  /** HASH(H0 || S_r): where every initiation to this server starts. */
  private readonly serverHash = new Uint8Array(HASH_LEN);
  private readonly scratch = new Uint8Array(KEY_LEN + TIMESTAMP_LEN);
  private readonly sKey = this.scratch.subarray(0, KEY_LEN);
  private readonly sStamp = this.scratch.subarray(KEY_LEN);

  /** `generateEphemeral`: as NoiseOptions', for tests that need known ephemerals. */
  constructor(private readonly serverKey: Uint8Array, clients: number, readonly perClient: number,
    private readonly generateEphemeral: (privateKey: Uint8Array, publicKey: Uint8Array) => void = generateKeyPair) {
    if (!Number.isInteger(perClient) || perClient < 1) throw new RangeError('at least one ephemeral per client');
    this.table = new Uint8Array(clients * perClient * ENTRY_BYTES);
    hash(this.serverHash, INITIAL_HASH, serverKey);
  }

  /**
   * Makes client `client`'s ephemerals: for each, a key pair, DH(e, S_r), the static key sealed,
   * and the KDF with the static-static DH (`staticStaticKey`, the client's DH(s_i, S_r)) — the
   * steps of noise.ts writeInitiation up to the timestamp. `noise` holds the client's static key.
   * Returns false when a DH is all zeros (the server key is a low-order point).
   */
  fill(client: number, noise: Noise, staticStaticKey: Uint8Array): boolean {
    for (let k = 0; k < this.perClient; k++) {
      const at = (client * this.perClient + k) * ENTRY_BYTES;
      const e = this.table.subarray(at, at + ENTRY_BYTES);
      const ephemeral = e.subarray(E_PRIVATE, E_PRIVATE + KEY_LEN);
      const ephemeralPub = e.subarray(E_WIRE, E_WIRE + KEY_LEN);
      const encStatic = e.subarray(E_WIRE + KEY_LEN, E_WIRE + WIRE_LEN);
      const h = e.subarray(E_HASH, E_HASH + HASH_LEN);
      const ck = e.subarray(E_CHAIN_KEY, E_CHAIN_KEY + HASH_LEN);
      const key = e.subarray(E_KEY, E_KEY + KEY_LEN);
      const shared = new Uint8Array(KEY_LEN);
      h.set(this.serverHash);
      ck.set(INITIAL_CHAIN_KEY);
      this.generateEphemeral(ephemeral, ephemeralPub);
      hash(h, h, ephemeralPub);
      kdf(ck, ephemeralPub, ck);
      const ok = dh(shared, ephemeral, this.serverKey);
      if (ok) {
        kdf(ck, shared, ck, key);
        seal(encStatic, noise.publicKey, h, ZERO_NONCE, key);
        hash(h, h, encStatic);
        kdf(ck, staticStaticKey, ck, key);
      }
      zero(shared);
      if (!ok) {
        zero(e);
        return false;
      }
    }
    return true;
  }

  /**
   * Writes the initiation of client `client` from its ephemeral number `ephemeral` into `init`
   * (bytes [0, INIT_MAC1); the macs are the caller's) and moves its Handshake to
   * InitiationCreated, as Noise.createInitiation would. `stampMs`: the wall-clock time for the
   * TAI64N timestamp. Allocates nothing.
   */
  write(init: Initiation, client: number, ephemeral: number, index: number, stampMs: number): void {
    const t = this.table;
    const at = (client * this.perClient + ephemeral) * ENTRY_BYTES;
    const msg = init.bytes;
    writeHeader(msg, MSG_INITIATION);
    writeU32(msg, INIT_SENDER, index);
    copy(msg, INIT_EPHEMERAL, t, at + E_WIRE, WIRE_LEN);
    copy(init.localEphemeral, 0, t, at + E_PRIVATE, KEY_LEN);
    copy(init.hash, 0, t, at + E_HASH, HASH_LEN);
    copy(init.chainKey, 0, t, at + E_CHAIN_KEY, HASH_LEN);
    copy(this.sKey, 0, t, at + E_KEY, KEY_LEN);
    writeStamp(this.sStamp, 0, stampMs);
    seal(init.encryptedTimestamp, this.sStamp, init.hash, ZERO_NONCE, this.sKey);
    hash(init.hash, init.hash, init.encryptedTimestamp);
    this.scratch.fill(0);
    init.hs.localIndex = index;
    init.hs.state = HandshakeState.InitiationCreated;
  }

  /** Wipes every ephemeral private key and derived key. */
  destroy(): void {
    zero(this.table);
  }
}
