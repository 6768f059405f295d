// WireGuard's DoS defence (whitepaper 5.4.4 and 5.4.7, the kernel's cookie.c): every handshake
// message carries mac1 = MAC(HASH("mac1----" || receiver's public key), msg[0:mac1]), proving
// the sender knows whom it talks to; under load the receiver also demands mac2 = MAC(cookie,
// msg[0:mac2]) where the cookie = MAC(secret, source address) was handed out in an encrypted
// cookie reply, proving the sender owns its source address.
//
// CookieChecker is the receiving side (one per device); CookieGenerator is the sending side
// (one per peer). Both take the time as an argument and randomness from an injectable source.
import { hash, mac, macFrom, macKeyState, HASH_LEN, KEY_STATE_BYTES, MAC_LEN } from '../crypto/blake2s.js';
import { xseal, xopen } from '../crypto/aead.js';
import { randomFill, ctEqual, zero } from '../crypto/memory.js';
import {
  MSG_COOKIE_REPLY, COOKIE_LEN, COOKIE_NONCE_LEN, COOKIE_RECEIVER, COOKIE_NONCE,
  COOKIE_ENCRYPTED, COOKIE_REPLY_LEN, TAG_LEN, writeHeader, writeU32,
} from './messages.js';

export const COOKIE_REFRESH_TIME_MS = 120_000;
/** How long a device stays "under load" after its handshake queue was last deep. */
export const UNDER_LOAD_AFTER_MS = 1_000;

const LABEL_MAC1 = new TextEncoder().encode('mac1----');
const LABEL_COOKIE = new TextEncoder().encode('cookie--');

/** mac1 sits 32 bytes before the end of a handshake message, mac2 16 bytes before. */
function mac1Offset(len: number): number {
  return len - 2 * MAC_LEN;
}

function mac2Offset(len: number): number {
  return len - MAC_LEN;
}

/**
 * From a public key: the mac1 key, kept as the MAC state after its key block (macKeyState: every
 * mac1 under it saves that compression), and the cookie key.
 */
function deriveKeys(mac1State: Uint8Array, cookieKey: Uint8Array, publicKey: Uint8Array): void {
  hash(mac1State, LABEL_MAC1, publicKey);
  macKeyState(mac1State, mac1State);
  hash(cookieKey, LABEL_COOKIE, publicKey);
}

export type Random = (buf: Uint8Array) => void;

/** The receiving side: checks mac1/mac2 of messages sent to us and issues cookie replies. */
export class CookieChecker {
  private readonly mac1State = new Uint8Array(KEY_STATE_BYTES);
  private readonly cookieKey = new Uint8Array(HASH_LEN);
  /**
   * The random secret cookies are made from, kept only as its MAC state (macKeyState): under
   * load every handshake message's mac2 check makes a cookie, and this saves a compression of it.
   */
  private readonly secretState = new Uint8Array(KEY_STATE_BYTES);
  private secretSetMs = -Infinity;
  private readonly computed = new Uint8Array(MAC_LEN);
  private readonly cookie = new Uint8Array(COOKIE_LEN);

  constructor(private readonly random: Random = randomFill) {}

  /** Call whenever the device's public key changes. */
  setPublicKey(publicKey: Uint8Array): void {
    deriveKeys(this.mac1State, this.cookieKey, publicKey);
  }

  /** mac1 of a handshake message of `len` bytes (initiation or response). */
  checkMac1(msg: Uint8Array, len: number): boolean {
    const off = mac1Offset(len);
    macFrom(this.computed, this.mac1State, msg.subarray(0, off));
    return ctEqual(this.computed, msg.subarray(off, off + MAC_LEN));
  }

  /** mac2, valid only with a cookie made from the current secret for this source. */
  checkMac2(msg: Uint8Array, len: number, source: Uint8Array, nowMs: number): boolean {
    if (nowMs - this.secretSetMs > COOKIE_REFRESH_TIME_MS) return false;
    macFrom(this.cookie, this.secretState, source);
    const off = mac2Offset(len);
    mac(this.computed, this.cookie, msg.subarray(0, off));
    return ctEqual(this.computed, msg.subarray(off, off + MAC_LEN));
  }

  /**
   * Writes into `out` (64 bytes) the cookie reply to the handshake message `msg` of `len`
   * bytes, whose sender index is `receiverIndex`, received from `source` (address || port).
   */
  createReply(out: Uint8Array, msg: Uint8Array, len: number, receiverIndex: number, source: Uint8Array, nowMs: number): void {
    if (nowMs - this.secretSetMs > COOKIE_REFRESH_TIME_MS) {
      const secret = new Uint8Array(HASH_LEN);
      this.random(secret);
      macKeyState(this.secretState, secret);
      zero(secret);
      this.secretSetMs = nowMs;
    }
    macFrom(this.cookie, this.secretState, source);
    writeHeader(out, MSG_COOKIE_REPLY);
    writeU32(out, COOKIE_RECEIVER, receiverIndex);
    const nonce = out.subarray(COOKIE_NONCE, COOKIE_NONCE + COOKIE_NONCE_LEN);
    this.random(nonce);
    const off = mac1Offset(len);
    xseal(out.subarray(COOKIE_ENCRYPTED, COOKIE_REPLY_LEN), this.cookie, msg.subarray(off, off + MAC_LEN), nonce, this.cookieKey);
  }
}

// CookieGenerator's single buffer (one per peer, so one backing store instead of four).
const G_MAC1_STATE = 0;
const G_COOKIE_KEY = KEY_STATE_BYTES;
const G_COOKIE = G_COOKIE_KEY + HASH_LEN;
const G_LAST_MAC1 = G_COOKIE + COOKIE_LEN;
/** Bytes of state per generator; callers holding many may hand each one a region of a table. */
export const COOKIE_GENERATOR_BYTES = G_LAST_MAC1 + MAC_LEN;

/** Where a generator finds its peer's public key when it first needs its keys (a Peer). */
export interface PublicKeySource {
  readonly publicKey: Uint8Array;
}

/** The sending side, one per peer: adds mac1/mac2 to our messages, takes cookie replies. */
export class CookieGenerator {
  // A buffer and an offset rather than a view: see Handshake (noise.ts).
  private readonly buf: ArrayBufferLike;
  private readonly off: number;
  private cookieSetMs = -Infinity;
  private hasLastMac1 = false;
  /** Set until the keys are derived: two BLAKE2s hashes a peer that is never talked to skips. */
  private source: PublicKeySource | undefined;

  /**
   * `storage`: COOKIE_GENERATOR_BYTES to live in (default: its own). With a key source instead
   * of the key, the keys are derived on first use (a million-peer `setconf` spent a tenth of
   * its time deriving them).
   */
  constructor(peerPublicKey: Uint8Array | PublicKeySource, storage: Uint8Array = new Uint8Array(COOKIE_GENERATOR_BYTES)) {
    if (storage.length !== COOKIE_GENERATOR_BYTES) throw new RangeError(`cookie generator storage must be ${COOKIE_GENERATOR_BYTES} bytes`);
    this.buf = storage.buffer;
    this.off = storage.byteOffset;
    if (peerPublicKey instanceof Uint8Array) this.derive(storage, peerPublicKey);
    else this.source = peerPublicKey;
  }

  private derive(b: Uint8Array, publicKey: Uint8Array): void {
    deriveKeys(b.subarray(G_MAC1_STATE, G_MAC1_STATE + KEY_STATE_BYTES), b.subarray(G_COOKIE_KEY, G_COOKIE_KEY + HASH_LEN), publicKey);
  }

  /** The generator's state, keys derived. */
  private get b(): Uint8Array {
    const b = new Uint8Array(this.buf, this.off, COOKIE_GENERATOR_BYTES);
    if (this.source !== undefined) {
      this.derive(b, this.source.publicKey);
      this.source = undefined;
    }
    return b;
  }

  /** Writes mac1, and mac2 when we hold a fresh cookie (else zeros), into `msg`. */
  addMacs(msg: Uint8Array, len: number, nowMs: number): void {
    const b = this.b;
    const off1 = mac1Offset(len);
    const mac1 = msg.subarray(off1, off1 + MAC_LEN);
    macFrom(mac1, b.subarray(G_MAC1_STATE, G_MAC1_STATE + KEY_STATE_BYTES), msg.subarray(0, off1));
    b.set(mac1, G_LAST_MAC1);
    this.hasLastMac1 = true;
    const off2 = mac2Offset(len);
    const mac2 = msg.subarray(off2, off2 + MAC_LEN);
    if (nowMs - this.cookieSetMs > COOKIE_REFRESH_TIME_MS) mac2.fill(0);
    else mac(mac2, b.subarray(G_COOKIE, G_COOKIE + COOKIE_LEN), msg.subarray(0, off2));
  }

  /** Decrypts a cookie reply to the last message we sent; false if it does not verify. */
  consumeReply(reply: Uint8Array, nowMs: number): boolean {
    if (!this.hasLastMac1) return false;
    const b = this.b;
    const nonce = reply.subarray(COOKIE_NONCE, COOKIE_NONCE + COOKIE_NONCE_LEN);
    const sealed = reply.subarray(COOKIE_ENCRYPTED, COOKIE_ENCRYPTED + COOKIE_LEN + TAG_LEN);
    const ok = xopen(b.subarray(G_COOKIE, G_COOKIE + COOKIE_LEN), sealed, b.subarray(G_LAST_MAC1, COOKIE_GENERATOR_BYTES), nonce, b.subarray(G_COOKIE_KEY, G_COOKIE_KEY + HASH_LEN));
    if (ok) this.cookieSetMs = nowMs;
    return ok;
  }

  destroy(): void {
    this.source = undefined;
    zero(new Uint8Array(this.buf, this.off + G_COOKIE, COOKIE_LEN));
    this.cookieSetMs = -Infinity;
  }
}

/**
 * The "under load" decision of wireguard-go: a handshake queue at least 1/8 full puts the device
 * under load, and it stays so for UNDER_LOAD_AFTER_MS after the queue was last that deep.
 * `state.untilMs` is the caller's memory between calls.
 */
export function underLoad(state: { untilMs: number }, queueDepth: number, queueCapacity: number, nowMs: number): boolean {
  if (queueDepth * 8 >= queueCapacity) markUnderLoad(state, nowMs);
  return nowMs < state.untilMs;
}

/** Puts the device under load now, whatever the queue holds (a full offload pool is load too). */
export function markUnderLoad(state: { untilMs: number }, nowMs: number): void {
  state.untilMs = nowMs + UNDER_LOAD_AFTER_MS;
}
