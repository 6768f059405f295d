// Transport data messages (type 4), sealed and opened in place in the caller's buffer: the
// inner packet sits at `offset + DATA_HEADER_LEN`, the header is written in front of it and the
// tag after the padded payload, so a slab slot with header room never needs a copy. One
// instance per thread: it owns the nonce scratch.
import { CounterNonce, seal, open, TAG_LEN } from '../crypto/aead.js';
import { DATA_HEADER_LEN, DATA_RECEIVER, DATA_COUNTER, DATA_MIN_LEN, MSG_DATA, PADDING_MULTIPLE, readU32, writeU32 } from '../handshake/messages.js';

/** Bytes the payload is padded by: to a multiple of 16, never past the MTU (wireguard-go). */
export function paddingFor(packetLen: number, mtu: number): number {
  let last = packetLen;
  if (mtu > 0 && last > mtu) last %= mtu;
  let padded = (last + PADDING_MULTIPLE - 1) & ~(PADDING_MULTIPLE - 1);
  if (mtu > 0 && padded > mtu) padded = mtu;
  return padded - last;
}

export class TransportCrypto {
  private readonly nonce = new CounterNonce();

  /**
   * Seals the `packetLen`-byte packet at `buf[offset + 16]` into a transport message starting at
   * `buf[offset]`; the buffer needs room for padding and the tag. Returns the message length.
   */
  seal(buf: Uint8Array, offset: number, packetLen: number, mtu: number, receiver: number, counterLo: number, counterHi: number, key: Uint8Array): number {
    const payload = offset + DATA_HEADER_LEN;
    const pad = paddingFor(packetLen, mtu);
    buf.fill(0, payload + packetLen, payload + packetLen + pad);
    const plainLen = packetLen + pad;
    buf[offset] = MSG_DATA;
    buf[offset + 1] = 0;
    buf[offset + 2] = 0;
    buf[offset + 3] = 0;
    writeU32(buf, offset + DATA_RECEIVER, receiver);
    writeU32(buf, offset + DATA_COUNTER, counterLo);
    writeU32(buf, offset + DATA_COUNTER + 4, counterHi);
    const nonce = this.nonce.set(counterLo, counterHi);
    seal(buf.subarray(payload, payload + plainLen + TAG_LEN), buf.subarray(payload, payload + plainLen), undefined, nonce, key);
    return DATA_HEADER_LEN + plainLen + TAG_LEN;
  }

  /**
   * Opens the `len`-byte transport message at `buf[offset]` in place. Returns the length of the
   * padded plaintext now at `buf[offset + 16]`, or -1 when it does not authenticate. The caller
   * has looked the key up by receiver index and checks the counter against the replay window
   * only after this succeeds.
   */
  open(buf: Uint8Array, offset: number, len: number, key: Uint8Array): number {
    if (len < DATA_MIN_LEN) return -1;
    const payload = offset + DATA_HEADER_LEN;
    const plainLen = len - DATA_MIN_LEN;
    const nonce = this.nonce.set(readU32(buf, offset + DATA_COUNTER), readU32(buf, offset + DATA_COUNTER + 4));
    const ok = open(buf.subarray(payload, payload + plainLen), buf.subarray(payload, offset + len), undefined, nonce, key);
    return ok ? plainLen : -1;
  }
}
