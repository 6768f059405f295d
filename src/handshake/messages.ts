// Wire layout of WireGuard's four message types (REFERENCE.md's message table): every field has
// a named offset so builders and parsers work on preallocated buffers with explicit offsets.
// All integers are little-endian; the type is one byte followed by three zero bytes.
import { KEY_LEN } from '../crypto/x25519.js';
import { TAG_LEN, XNONCE_LEN as COOKIE_NONCE_LEN } from '../crypto/aead.js';
import { MAC_LEN } from '../crypto/blake2s.js';

export const MSG_INITIATION = 1;
export const MSG_RESPONSE = 2;
export const MSG_COOKIE_REPLY = 3;
export const MSG_DATA = 4;

// Field sizes come from the primitives that fill them.
export { KEY_LEN, TAG_LEN, MAC_LEN, COOKIE_NONCE_LEN };
export const TIMESTAMP_LEN = 12;
export const COOKIE_LEN = 16;

// Handshake initiation, 148 bytes.
export const INIT_TYPE = 0;
export const INIT_SENDER = 4;
export const INIT_EPHEMERAL = 8;
export const INIT_STATIC = INIT_EPHEMERAL + KEY_LEN; // 40, 32 + 16 tag
export const INIT_TIMESTAMP = INIT_STATIC + KEY_LEN + TAG_LEN; // 88, 12 + 16 tag
export const INIT_MAC1 = INIT_TIMESTAMP + TIMESTAMP_LEN + TAG_LEN; // 116
export const INIT_MAC2 = INIT_MAC1 + MAC_LEN; // 132
export const INIT_LEN = INIT_MAC2 + MAC_LEN; // 148

// Handshake response, 92 bytes.
export const RESP_TYPE = 0;
export const RESP_SENDER = 4;
export const RESP_RECEIVER = 8;
export const RESP_EPHEMERAL = 12;
export const RESP_EMPTY = RESP_EPHEMERAL + KEY_LEN; // 44, 0 + 16 tag
export const RESP_MAC1 = RESP_EMPTY + TAG_LEN; // 60
export const RESP_MAC2 = RESP_MAC1 + MAC_LEN; // 76
export const RESP_LEN = RESP_MAC2 + MAC_LEN; // 92

// Cookie reply, 64 bytes.
export const COOKIE_TYPE = 0;
export const COOKIE_RECEIVER = 4;
export const COOKIE_NONCE = 8;
export const COOKIE_ENCRYPTED = COOKIE_NONCE + COOKIE_NONCE_LEN; // 32, 16 + 16 tag
export const COOKIE_REPLY_LEN = COOKIE_ENCRYPTED + COOKIE_LEN + TAG_LEN; // 64

// Transport data, 32 + n bytes (n = padded payload + 16 tag... the tag is counted in the 32).
export const DATA_TYPE = 0;
export const DATA_RECEIVER = 4;
export const DATA_COUNTER = 8;
export const DATA_PAYLOAD = 16;
export const DATA_HEADER_LEN = DATA_PAYLOAD;
export const DATA_MIN_LEN = DATA_HEADER_LEN + TAG_LEN; // 32: a keepalive
export const PADDING_MULTIPLE = 16;

/** The message type of a datagram, or 0 when its first word is not a valid type header. */
export function messageType(buf: Uint8Array, offset: number, len: number): number {
  if (len < 4) return 0;
  const t = buf[offset]!;
  if (buf[offset + 1] !== 0 || buf[offset + 2] !== 0 || buf[offset + 3] !== 0) return 0;
  switch (t) {
    case MSG_INITIATION: return len === INIT_LEN ? t : 0;
    case MSG_RESPONSE: return len === RESP_LEN ? t : 0;
    case MSG_COOKIE_REPLY: return len === COOKIE_REPLY_LEN ? t : 0;
    case MSG_DATA: return len >= DATA_MIN_LEN ? t : 0;
    default: return 0;
  }
}

export function readU32(buf: Uint8Array, off: number): number {
  return (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16) | (buf[off + 3]! << 24)) >>> 0;
}

export function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v;
  buf[off + 1] = v >>> 8;
  buf[off + 2] = v >>> 16;
  buf[off + 3] = v >>> 24;
}

export function writeHeader(buf: Uint8Array, type: number): void {
  buf[0] = type;
  buf[1] = 0;
  buf[2] = 0;
  buf[3] = 0;
}
