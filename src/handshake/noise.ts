// Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s as WireGuard uses it (whitepaper section 5.4, the
// kernel's noise.c, wireguard-go's noise-protocol.go). Sans-I/O: functions read and write
// messages in caller buffers at the offsets of messages.ts, take the time as arguments, and
// return a typed result. mac1/mac2 belong to cookie.ts and are added or checked by the caller.
//
// Who owns what: a `Handshake` is one peer's handshake state (the main thread owns it); a
// `Noise` is one thread's identity plus scratch buffers, so two threads never share scratch.
// The responder computes in scratch and commits to the peer's state only once every check
// has passed, so a forged initiation cannot disturb a handshake in flight.
import { hash, HASH_LEN } from '../crypto/blake2s.js';
import { kdf } from '../crypto/kdf.js';
import { seal, open, NONCE_LEN } from '../crypto/aead.js';
import { dh, generateKeyPair, publicKeyOf } from '../crypto/x25519.js';
import { zero, isZero } from '../crypto/memory.js';
import { writeTai64n, tai64nAfter } from './tai64n.js';
import { EphemeralPool } from './ephemerals.js';
import { HANDSHAKE_INITIATION_RATE_MS } from './constants.js';
import {
  KEY_LEN, TAG_LEN, TIMESTAMP_LEN, MSG_INITIATION, MSG_RESPONSE,
  INIT_SENDER, INIT_EPHEMERAL, INIT_STATIC, INIT_TIMESTAMP,
  RESP_SENDER, RESP_RECEIVER, RESP_EPHEMERAL, RESP_EMPTY,
  readU32, writeU32, writeHeader,
} from './messages.js';

const CONSTRUCTION = new TextEncoder().encode('Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s');
const IDENTIFIER = new TextEncoder().encode('WireGuard v1 zx2c4 Jason@zx2c4.com');


/** C0 = HASH(construction) and H0 = HASH(C0 || identifier), computed once per process. */
const INITIAL_CHAIN_KEY = new Uint8Array(HASH_LEN);
const INITIAL_HASH = new Uint8Array(HASH_LEN);
hash(INITIAL_CHAIN_KEY, CONSTRUCTION);
hash(INITIAL_HASH, INITIAL_CHAIN_KEY, IDENTIFIER);

const ZERO_NONCE = new Uint8Array(NONCE_LEN);
const EMPTY = new Uint8Array(0);

export const enum HandshakeState {
  Zeroed = 0,
  InitiationCreated = 1,
  InitiationConsumed = 2,
  ResponseCreated = 3,
  ResponseConsumed = 4,
}

export type Rejection =
  | 'dh' // a Diffie-Hellman result was all zeros (low-order point)
  | 'decrypt' // an AEAD tag did not verify
  | 'unknown-peer' // the static key or receiver index names no peer of ours
  | 'replay' // timestamp not newer than the greatest seen from that peer
  | 'flood' // initiations from that peer faster than HANDSHAKE_INITIATION_RATE_MS
  | 'state'; // the message does not fit the handshake's state

export type ConsumeResult = { ok: true; handshake: Handshake } | { ok: false; reason: Rejection };

// Layout of a Handshake's single buffer: a million peers must cost little, so one backing
// store per peer with views made on access (short-lived) instead of eight typed arrays each.
const H_REMOTE_STATIC = 0;
const H_PRESHARED = 32;
const H_STATIC_STATIC = 64;
const H_HASH = 96;
const H_CHAIN_KEY = 128;
const H_LOCAL_EPHEMERAL = 160;
const H_REMOTE_EPHEMERAL = 192;
const H_TIMESTAMP = 224;
/** Bytes of state per handshake; callers holding many may hand each one a region of a table. */
export const HANDSHAKE_BYTES = H_TIMESTAMP + TIMESTAMP_LEN;

// Layout of what prepareInitiation hands to the thread that finishes the handshake: the
// initiator's static key, hash and chaining key after it, our response ephemeral (public half
// only; the private half never leaves the preparing thread) and DH(e_r, e_i), DH(e_r, s_i).
const P_REMOTE_STATIC = 0;
const P_HASH = 32;
const P_CHAIN_KEY = 64;
const P_EPHEMERAL = 96;
const P_EE = 128;
const P_SE = 160;
export const PREPARED_BYTES = 192;

/** Whether the cached static-static DH is computed, and with what result. */
const enum StaticStatic { Unknown = 0, Valid = 1, Invalid = 2 }

/** One peer's handshake state and the static parameters it is built from. */
export class Handshake {
  state: HandshakeState = HandshakeState.Zeroed;
  localIndex = 0;
  remoteIndex = 0;
  /** Caller-defined tag (a peer slot) so a lookup by key or index leads back to the peer. */
  peer: number;
  lastInitiationConsumedMs = -Infinity;
  /** DH(local static, remote static) is computed on first use and cached (see Noise.staticStatic). */
  staticStatic: StaticStatic = StaticStatic.Unknown;
  // Where the state lives: a buffer and an offset, not a view of it. A view is an object of
  // ~100 bytes, a twentieth of what a peer may cost at a million peers; views are made on access.
  private readonly buf: ArrayBufferLike;
  private readonly off: number;

  /** `storage`: HANDSHAKE_BYTES of zeroed memory to live in (default: its own). */
  constructor(remoteStatic: Uint8Array, peer: number, storage: Uint8Array = new Uint8Array(HANDSHAKE_BYTES)) {
    if (storage.length !== HANDSHAKE_BYTES) throw new RangeError(`handshake storage must be ${HANDSHAKE_BYTES} bytes`);
    this.buf = storage.buffer;
    this.off = storage.byteOffset;
    storage.set(remoteStatic, H_REMOTE_STATIC);
    this.peer = peer;
  }

  private at(start: number, length: number): Uint8Array {
    return new Uint8Array(this.buf, this.off + start, length);
  }

  get remoteStatic(): Uint8Array { return this.at(H_REMOTE_STATIC, KEY_LEN); }
  get presharedKey(): Uint8Array { return this.at(H_PRESHARED, KEY_LEN); }
  /** DH(local static, remote static): the one DH that is the same for every handshake. */
  get precomputedStaticStatic(): Uint8Array { return this.at(H_STATIC_STATIC, KEY_LEN); }
  get hash(): Uint8Array { return this.at(H_HASH, HASH_LEN); }
  get chainKey(): Uint8Array { return this.at(H_CHAIN_KEY, HASH_LEN); }
  get localEphemeral(): Uint8Array { return this.at(H_LOCAL_EPHEMERAL, KEY_LEN); }
  get remoteEphemeral(): Uint8Array { return this.at(H_REMOTE_EPHEMERAL, KEY_LEN); }
  /** Greatest TAI64N timestamp accepted from this peer; survives handshakes, not restarts. */
  get lastTimestamp(): Uint8Array { return this.at(H_TIMESTAMP, TIMESTAMP_LEN); }

  /** Forgets the ephemeral state of a handshake in flight (not the replay timestamp). */
  clear(): void {
    zero(this.at(H_HASH, H_TIMESTAMP - H_HASH));
    this.state = HandshakeState.Zeroed;
  }

  /** Wipes everything secret: the peer is being removed. */
  destroy(): void {
    zero(this.at(0, HANDSHAKE_BYTES));
    this.staticStatic = StaticStatic.Unknown;
    this.state = HandshakeState.Zeroed;
  }
}

/** The symmetric session a completed handshake yields (the caller copies it into its tables). */
export class SessionKeys {
  readonly sendKey = new Uint8Array(KEY_LEN);
  readonly receiveKey = new Uint8Array(KEY_LEN);
  localIndex = 0;
  remoteIndex = 0;
  isInitiator = false;

  destroy(): void {
    zero(this.sendKey);
    zero(this.receiveKey);
  }
}

export interface NoiseOptions {
  /** Fills a private key and its public key; tests inject fixed ephemerals through it. */
  generateEphemeral?: (privateKey: Uint8Array, publicKey: Uint8Array) => void;
  /** Where ephemerals come from when `generateEphemeral` is not given (default: made on demand). */
  ephemerals?: EphemeralPool;
}

/** A local static identity with one thread's scratch buffers. */
export class Noise {
  readonly privateKey = new Uint8Array(KEY_LEN);
  readonly publicKey = new Uint8Array(KEY_LEN);
  /** HASH(H0 || our public key): where every initiation sent to us starts. */
  private readonly responderHash = new Uint8Array(HASH_LEN);
  private hasKey = false;
  private readonly generateEphemeral: (privateKey: Uint8Array, publicKey: Uint8Array) => void;

  // Scratch: owned by this instance, views of one buffer that every operation wipes whole on
  // its way out (wipeScratch), so no list of what to wipe can miss a field.
  private readonly scratch = new Uint8Array(2 * HASH_LEN + 5 * KEY_LEN + TIMESTAMP_LEN);
  private readonly sHash = this.scratch.subarray(0, HASH_LEN);
  private readonly sChainKey = this.scratch.subarray(HASH_LEN, 2 * HASH_LEN);
  private readonly sKey = this.scratch.subarray(2 * HASH_LEN, 2 * HASH_LEN + KEY_LEN);
  private readonly sShared = this.scratch.subarray(2 * HASH_LEN + KEY_LEN, 2 * HASH_LEN + 2 * KEY_LEN);
  private readonly sTau = this.scratch.subarray(2 * HASH_LEN + 2 * KEY_LEN, 2 * HASH_LEN + 3 * KEY_LEN);
  private readonly sStatic = this.scratch.subarray(2 * HASH_LEN + 3 * KEY_LEN, 2 * HASH_LEN + 4 * KEY_LEN);
  private readonly sEphemeral = this.scratch.subarray(2 * HASH_LEN + 4 * KEY_LEN, 2 * HASH_LEN + 5 * KEY_LEN);
  private readonly sTimestamp = this.scratch.subarray(2 * HASH_LEN + 5 * KEY_LEN);

  constructor(options: NoiseOptions = {}) {
    const pool = options.ephemerals;
    this.generateEphemeral = options.generateEphemeral ?? (pool ? (priv, pub) => pool.take(priv, pub) : generateKeyPair);
  }

  get hasPrivateKey(): boolean {
    return this.hasKey;
  }

  /** Sets (or with null, removes) the static private key. */
  setPrivateKey(privateKey: Uint8Array | null): void {
    if (privateKey === null || isZero(privateKey)) {
      zero(this.privateKey);
      zero(this.publicKey);
      this.hasKey = false;
      return;
    }
    this.privateKey.set(privateKey);
    publicKeyOf(this.publicKey, this.privateKey);
    hash(this.responderHash, INITIAL_HASH, this.publicKey);
    this.hasKey = true;
  }

  /**
   * Forgets a peer's cached static-static DH so the next handshake recomputes it; call after
   * the private key or the peer's public key changes. Cheap, so configuring a million peers
   * costs no DH at all (wireguard-go computes each one up front, ~30 µs apiece).
   */
  invalidate(hs: Handshake): void {
    zero(hs.precomputedStaticStatic);
    hs.staticStatic = StaticStatic.Unknown;
  }

  /**
   * Computes the peer's static-static DH now if needed. Returns false when it is all zeros (the
   * peer's key is a low-order point): no handshake with that peer can succeed then.
   */
  precompute(hs: Handshake): boolean {
    if (!this.hasKey) return false;
    if (hs.staticStatic === StaticStatic.Unknown) {
      const out = hs.precomputedStaticStatic;
      hs.staticStatic = dh(out, this.privateKey, hs.remoteStatic) ? StaticStatic.Valid : StaticStatic.Invalid;
      if (hs.staticStatic === StaticStatic.Invalid) zero(out);
    }
    return hs.staticStatic === StaticStatic.Valid;
  }

  /**
   * Writes an initiation (bytes [0, INIT_MAC1)) into `msg` and moves `hs` to InitiationCreated.
   * `unixMs` is the wall clock for the TAI64N timestamp.
   */
  createInitiation(hs: Handshake, localIndex: number, unixMs: number, msg: Uint8Array): boolean {
    if (!this.precompute(hs)) return false;
    const key = this.sKey;
    const ok = this.writeInitiation(hs, unixMs, msg, key);
    this.wipeScratch();
    if (!ok) {
      hs.clear();
      return false;
    }
    writeHeader(msg, MSG_INITIATION);
    writeU32(msg, INIT_SENDER, localIndex);
    hs.localIndex = localIndex;
    hs.state = HandshakeState.InitiationCreated;
    return true;
  }

  private writeInitiation(hs: Handshake, unixMs: number, msg: Uint8Array, key: Uint8Array): boolean {
    // Each Handshake getter makes a view: take each once.
    const h = hs.hash;
    const ck = hs.chainKey;
    const ephemeral = hs.localEphemeral;
    hash(h, INITIAL_HASH, hs.remoteStatic);
    ck.set(INITIAL_CHAIN_KEY);

    const ephemeralPub = msg.subarray(INIT_EPHEMERAL, INIT_EPHEMERAL + KEY_LEN);
    this.generateEphemeral(ephemeral, ephemeralPub);
    mixHash(h, ephemeralPub);
    kdf(ck, ephemeralPub, ck);

    if (!dh(this.sShared, ephemeral, hs.remoteStatic)) return false;
    kdf(ck, this.sShared, ck, key);
    const encStatic = msg.subarray(INIT_STATIC, INIT_STATIC + KEY_LEN + TAG_LEN);
    seal(encStatic, this.publicKey, h, ZERO_NONCE, key);
    mixHash(h, encStatic);

    kdf(ck, hs.precomputedStaticStatic, ck, key);
    writeTai64n(this.sTimestamp, unixMs);
    const encTimestamp = msg.subarray(INIT_TIMESTAMP, INIT_TIMESTAMP + TIMESTAMP_LEN + TAG_LEN);
    seal(encTimestamp, this.sTimestamp, h, ZERO_NONCE, key);
    mixHash(h, encTimestamp);
    return true;
  }

  /**
   * Consumes an initiation whose mac1 has been checked. `lookup` maps the decrypted static
   * key to the peer's Handshake; `nowMs` is a monotonic clock for flood protection.
   */
  consumeInitiation(msg: Uint8Array, nowMs: number, lookup: (publicKey: Uint8Array) => Handshake | undefined): ConsumeResult {
    if (!this.hasKey) return { ok: false, reason: 'state' };
    try {
      const opened = this.openStatic(msg);
      if (opened !== undefined) return { ok: false, reason: opened };
      return this.finishInitiation(msg, nowMs, lookup);
    } finally {
      this.wipeScratch();
    }
  }

  /**
   * The half of a responder's work that needs no peer state: opens the initiation's static key
   * and, for the response, makes an ephemeral key and both of its DHs (four of the five X25519
   * operations of a handshake). Any thread holding our private key can run it; the thread that
   * owns the peers finishes with consumePrepared and createResponse(..., prepared). `out` is
   * PREPARED_BYTES; returns why it failed, or undefined.
   */
  prepareInitiation(msg: Uint8Array, out: Uint8Array): Rejection | undefined {
    if (!this.hasKey) return 'state';
    const ephemeral = this.sEphemeral;
    try {
      const opened = this.openStatic(msg);
      if (opened !== undefined) return opened;
      out.set(this.sStatic, P_REMOTE_STATIC);
      out.set(this.sHash, P_HASH);
      out.set(this.sChainKey, P_CHAIN_KEY);
      this.generateEphemeral(ephemeral, out.subarray(P_EPHEMERAL, P_EPHEMERAL + KEY_LEN));
      if (!dh(out.subarray(P_EE, P_EE + KEY_LEN), ephemeral, msg.subarray(INIT_EPHEMERAL, INIT_EPHEMERAL + KEY_LEN))) return 'dh';
      if (!dh(out.subarray(P_SE, P_SE + KEY_LEN), ephemeral, this.sStatic)) return 'dh';
      return undefined;
    } finally {
      this.wipeScratch();
    }
  }

  /** consumeInitiation for an initiation that prepareInitiation has opened into `prepared`. */
  consumePrepared(msg: Uint8Array, prepared: Uint8Array, nowMs: number, lookup: (publicKey: Uint8Array) => Handshake | undefined): ConsumeResult {
    if (!this.hasKey) return { ok: false, reason: 'state' };
    try {
      this.sStatic.set(prepared.subarray(P_REMOTE_STATIC, P_REMOTE_STATIC + KEY_LEN));
      this.sHash.set(prepared.subarray(P_HASH, P_HASH + HASH_LEN));
      this.sChainKey.set(prepared.subarray(P_CHAIN_KEY, P_CHAIN_KEY + HASH_LEN));
      return this.finishInitiation(msg, nowMs, lookup);
    } finally {
      this.wipeScratch();
    }
  }

  /** Up to the static key: the ephemeral-static DH and the static key's decryption, into scratch. */
  private openStatic(msg: Uint8Array): Rejection | undefined {
    const h = this.sHash;
    const ck = this.sChainKey;
    h.set(this.responderHash);
    ck.set(INITIAL_CHAIN_KEY);
    const ephemeral = msg.subarray(INIT_EPHEMERAL, INIT_EPHEMERAL + KEY_LEN);
    mixHash(h, ephemeral);
    kdf(ck, ephemeral, ck);
    if (!dh(this.sShared, this.privateKey, ephemeral)) return 'dh';
    kdf(ck, this.sShared, ck, this.sKey);
    const encStatic = msg.subarray(INIT_STATIC, INIT_STATIC + KEY_LEN + TAG_LEN);
    if (!open(this.sStatic, encStatic, h, ZERO_NONCE, this.sKey)) return 'decrypt';
    mixHash(h, encStatic);
    return undefined;
  }

  /** From the static key in scratch on: the peer, its static-static DH, the timestamp, the checks. */
  private finishInitiation(msg: Uint8Array, nowMs: number, lookup: (publicKey: Uint8Array) => Handshake | undefined): ConsumeResult {
    const h = this.sHash;
    const ck = this.sChainKey;
    const key = this.sKey;
    const hs = lookup(this.sStatic);
    if (hs === undefined) return { ok: false, reason: 'unknown-peer' };
    if (!this.precompute(hs)) return { ok: false, reason: 'dh' };
    kdf(ck, hs.precomputedStaticStatic, ck, key);
    const encTimestamp = msg.subarray(INIT_TIMESTAMP, INIT_TIMESTAMP + TIMESTAMP_LEN + TAG_LEN);
    if (!open(this.sTimestamp, encTimestamp, h, ZERO_NONCE, key)) return { ok: false, reason: 'decrypt' };
    mixHash(h, encTimestamp);

    if (!tai64nAfter(this.sTimestamp, hs.lastTimestamp)) return { ok: false, reason: 'replay' };
    if (nowMs - hs.lastInitiationConsumedMs <= HANDSHAKE_INITIATION_RATE_MS) return { ok: false, reason: 'flood' };

    hs.hash.set(h);
    hs.chainKey.set(ck);
    hs.remoteEphemeral.set(msg.subarray(INIT_EPHEMERAL, INIT_EPHEMERAL + KEY_LEN));
    zero(hs.localEphemeral);
    hs.remoteIndex = readU32(msg, INIT_SENDER);
    hs.lastTimestamp.set(this.sTimestamp);
    hs.lastInitiationConsumedMs = nowMs;
    hs.state = HandshakeState.InitiationConsumed;
    return { ok: true, handshake: hs };
  }

  private wipeScratch(): void {
    zero(this.scratch);
  }

  /**
   * Writes a response (bytes [0, RESP_MAC1)) to a consumed initiation, with the ephemeral key
   * and DHs of `prepared` when prepareInitiation made them.
   */
  createResponse(hs: Handshake, localIndex: number, msg: Uint8Array, prepared?: Uint8Array): boolean {
    if (hs.state !== HandshakeState.InitiationConsumed) return false;
    const ok = this.writeResponse(hs, msg, prepared);
    this.wipeScratch();
    zero(hs.localEphemeral);
    if (!ok) {
      hs.clear();
      return false;
    }
    writeHeader(msg, MSG_RESPONSE);
    writeU32(msg, RESP_SENDER, localIndex);
    writeU32(msg, RESP_RECEIVER, hs.remoteIndex);
    hs.localIndex = localIndex;
    hs.state = HandshakeState.ResponseCreated;
    return true;
  }

  private writeResponse(hs: Handshake, msg: Uint8Array, prepared?: Uint8Array): boolean {
    const h = hs.hash;
    const ck = hs.chainKey;
    const ephemeralPub = msg.subarray(RESP_EPHEMERAL, RESP_EPHEMERAL + KEY_LEN);
    if (prepared) ephemeralPub.set(prepared.subarray(P_EPHEMERAL, P_EPHEMERAL + KEY_LEN));
    else this.generateEphemeral(hs.localEphemeral, ephemeralPub);
    mixHash(h, ephemeralPub);
    kdf(ck, ephemeralPub, ck);
    if (prepared) {
      kdf(ck, prepared.subarray(P_EE, P_EE + KEY_LEN), ck);
      kdf(ck, prepared.subarray(P_SE, P_SE + KEY_LEN), ck);
    } else {
      const ephemeral = hs.localEphemeral;
      if (!dh(this.sShared, ephemeral, hs.remoteEphemeral)) return false;
      kdf(ck, this.sShared, ck);
      if (!dh(this.sShared, ephemeral, hs.remoteStatic)) return false;
      kdf(ck, this.sShared, ck);
    }
    this.mixPresharedKey(h, ck, hs.presharedKey);
    const encEmpty = msg.subarray(RESP_EMPTY, RESP_EMPTY + TAG_LEN);
    seal(encEmpty, EMPTY, h, ZERO_NONCE, this.sKey);
    mixHash(h, encEmpty);
    return true;
  }

  /** chainKey, tau, key = KDF3(chainKey, psk); hash = HASH(hash || tau); key left in sKey. */
  private mixPresharedKey(h: Uint8Array, ck: Uint8Array, psk: Uint8Array): void {
    kdf(ck, psk, ck, this.sTau, this.sKey);
    mixHash(h, this.sTau);
  }

  /** Consumes a response whose mac1 has been checked; `lookup` maps our index to a Handshake. */
  consumeResponse(msg: Uint8Array, lookup: (localIndex: number) => Handshake | undefined): ConsumeResult {
    if (!this.hasKey) return { ok: false, reason: 'state' };
    const hs = lookup(readU32(msg, RESP_RECEIVER));
    if (hs === undefined) return { ok: false, reason: 'unknown-peer' };
    if (hs.state !== HandshakeState.InitiationCreated) return { ok: false, reason: 'state' };
    const h = this.sHash;
    const ck = this.sChainKey;
    try {
      h.set(hs.hash);
      ck.set(hs.chainKey);
      const ephemeral = msg.subarray(RESP_EPHEMERAL, RESP_EPHEMERAL + KEY_LEN);
      mixHash(h, ephemeral);
      kdf(ck, ephemeral, ck);
      if (!dh(this.sShared, hs.localEphemeral, ephemeral)) return { ok: false, reason: 'dh' };
      kdf(ck, this.sShared, ck);
      if (!dh(this.sShared, this.privateKey, ephemeral)) return { ok: false, reason: 'dh' };
      kdf(ck, this.sShared, ck);
      this.mixPresharedKey(h, ck, hs.presharedKey);
      const encEmpty = msg.subarray(RESP_EMPTY, RESP_EMPTY + TAG_LEN);
      if (!open(EMPTY, encEmpty, h, ZERO_NONCE, this.sKey)) return { ok: false, reason: 'decrypt' };
      mixHash(h, encEmpty);

      hs.hash.set(h);
      hs.chainKey.set(ck);
      zero(hs.localEphemeral);
      hs.remoteIndex = readU32(msg, RESP_SENDER);
      hs.state = HandshakeState.ResponseConsumed;
      return { ok: true, handshake: hs };
    } finally {
      this.wipeScratch();
    }
  }

  /**
   * Derives the transport keys of a finished handshake into `out` and wipes the handshake.
   * Valid after consumeResponse (initiator) or createResponse (responder).
   */
  beginSession(hs: Handshake, out: SessionKeys): boolean {
    let isInitiator: boolean;
    if (hs.state === HandshakeState.ResponseConsumed) isInitiator = true;
    else if (hs.state === HandshakeState.ResponseCreated) isInitiator = false;
    else return false;
    if (isInitiator) kdf(hs.chainKey, EMPTY, out.sendKey, out.receiveKey);
    else kdf(hs.chainKey, EMPTY, out.receiveKey, out.sendKey);
    out.localIndex = hs.localIndex;
    out.remoteIndex = hs.remoteIndex;
    out.isInitiator = isInitiator;
    hs.clear();
    return true;
  }
}

function mixHash(h: Uint8Array, data: Uint8Array): void {
  hash(h, h, data);
}

