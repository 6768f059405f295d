// TCP segmentation and coalescing for a TUN device opened with IFF_VNET_HDR (virtio_net_hdr in
// front of every packet), the technique wireguard-go adopted in 2023: the kernel hands over
// 64 KB TCP super-packets (TSO) that we cut into MTU-sized segments before encryption, and on
// the way in we merge consecutive decrypted segments of one flow into one super-packet (GRO),
// so the kernel's TCP stack and the TUN syscalls run once per 64 KB instead of once per 1.4 KB.
//
// Pure byte work on caller buffers, no allocation; offsets point at the IP header unless named
// otherwise. Only the cases the kernel produces with TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6 are split;
// only plain TCP (no IPv4 options or fragments, no IPv6 extension headers, ACK/PSH only) is
// merged, which is what Linux GRO itself requires.

export const VNET_HDR_LEN = 10;
export const VNET_F_NEEDS_CSUM = 1;
/** The kernel may skip verifying the checksum: the packet authenticated (as the kernel module does). */
export const VNET_F_DATA_VALID = 2;
export const GSO_NONE = 0;
export const GSO_TCPV4 = 1;
export const GSO_TCPV6 = 4;
const GSO_ECN = 0x80;

const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_ACK = 0x10;
const TCP_CWR = 0x80;
/** Largest IP packet the kernel accepts from a TUN write. */
export const MAX_SUPER_PACKET = 65535;

/** One's-complement sum of the 16-bit big-endian words of buf[start, end), unfolded. */
export function sum16(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  for (; i + 1 < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (i < end) sum += buf[i]! << 8;
  return sum;
}

export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** The Internet checksum (RFC 1071) of buf[start, end), starting from `initial` (a pseudo-header sum). */
export function checksum(buf: Uint8Array, start: number, end: number, initial = 0): number {
  return ~fold(sum16(buf, start, end, initial)) & 0xffff;
}

/** Sum of the TCP/UDP pseudo-header for the packet at `ip` with `l4Len` bytes of layer 4. */
function pseudoSum(buf: Uint8Array, ip: number, v6: boolean, proto: number, l4Len: number): number {
  const s = v6 ? sum16(buf, ip + 8, ip + 40) : sum16(buf, ip + 12, ip + 20);
  return s + proto + l4Len;
}

function setU16(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 8;
  buf[at + 1] = v & 0xff;
}

function getU16(buf: Uint8Array, at: number): number {
  return (buf[at]! << 8) | buf[at + 1]!;
}

function getU32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

function setU32(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 24;
  buf[at + 1] = v >>> 16;
  buf[at + 2] = v >>> 8;
  buf[at + 3] = v;
}

function ipv4HeaderChecksum(buf: Uint8Array, ip: number): void {
  buf[ip + 10] = 0;
  buf[ip + 11] = 0;
  setU16(buf, ip + 10, checksum(buf, ip, ip + 20));
}

export interface VnetHeader { flags: number; gsoType: number; gsoSize: number; csumStart: number; csumOffset: number }

export function readVnetHeader(buf: Uint8Array, at: number, out: VnetHeader): void {
  out.flags = buf[at]!;
  out.gsoType = buf[at + 1]! & ~GSO_ECN;
  out.gsoSize = buf[at + 4]! | (buf[at + 5]! << 8);
  out.csumStart = buf[at + 6]! | (buf[at + 7]! << 8);
  out.csumOffset = buf[at + 8]! | (buf[at + 9]! << 8);
}

/** Writes a virtio_net_hdr (little-endian fields) at `at`. */
export function writeVnetHeader(buf: Uint8Array, at: number, flags: number, gsoType: number, hdrLen: number, gsoSize: number, csumStart: number, csumOffset: number): void {
  buf[at] = flags;
  buf[at + 1] = gsoType;
  buf[at + 2] = hdrLen & 0xff;
  buf[at + 3] = hdrLen >>> 8;
  buf[at + 4] = gsoSize & 0xff;
  buf[at + 5] = gsoSize >>> 8;
  buf[at + 6] = csumStart & 0xff;
  buf[at + 7] = csumStart >>> 8;
  buf[at + 8] = csumOffset & 0xff;
  buf[at + 9] = csumOffset >>> 8;
}

/**
 * Completes a partial checksum (VNET_F_NEEDS_CSUM): the kernel left the pseudo-header sum in
 * the checksum field at csumStart + csumOffset and expects the sum over [csumStart, end).
 */
export function completeChecksum(buf: Uint8Array, pkt: number, len: number, csumStart: number, csumOffset: number): boolean {
  const field = pkt + csumStart + csumOffset;
  if (csumStart + csumOffset + 2 > len) return false;
  setU16(buf, field, checksum(buf, pkt + csumStart, pkt + len));
  return true;
}

/**
 * Cuts a TCP super-packet into segments of at most `mss` payload bytes. A cursor, so a packet
 * whose segments do not fit the caller's batch continues in the next one.
 */
export class Segmenter {
  private src: Uint8Array = new Uint8Array(0);
  private pkt = 0;
  private v6 = false;
  private ipLen = 0;
  private hdrLen = 0;
  private payloadLen = 0;
  private mss = 0;
  private next = 0; // index of the next segment
  private count = 0;

  get pending(): boolean {
    return this.next < this.count;
  }

  /** The largest segment the packet in progress cuts into (headers included). */
  get segmentBytes(): number {
    return this.hdrLen + this.mss;
  }

  /** Starts on the packet at src[pkt, pkt + len); false when it is not a TCP packet we can cut. */
  begin(src: Uint8Array, pkt: number, len: number, gsoType: number, mss: number): boolean {
    const v6 = gsoType === GSO_TCPV6;
    const ipLen = v6 ? 40 : (src[pkt]! & 0xf) * 4;
    if (len < ipLen + 20 || mss <= 0 || (src[pkt]! >> 4) !== (v6 ? 6 : 4) || src[pkt + (v6 ? 6 : 9)] !== 6) return false;
    const tcpLen = (src[pkt + ipLen + 12]! >> 4) * 4;
    if (tcpLen < 20 || ipLen + tcpLen > len) return false;
    this.src = src;
    this.pkt = pkt;
    this.v6 = v6;
    this.ipLen = ipLen;
    this.hdrLen = ipLen + tcpLen;
    this.payloadLen = len - this.hdrLen;
    this.mss = mss;
    this.next = 0;
    this.count = Math.max(1, Math.ceil(this.payloadLen / mss));
    return true;
  }

  /**
   * Writes up to `max` segments, segment k at dst[offsets[first + k]], lengths into lens.
   * Returns how many were written.
   */
  emit(dst: Uint8Array, offsets: Uint32Array, lens: Int32Array, first: number, max: number): number {
    const { src, pkt, ipLen, hdrLen, mss, v6 } = this;
    const seq0 = getU32(src, pkt + ipLen + 4);
    const id0 = v6 ? 0 : getU16(src, pkt + 4);
    const flags0 = src[pkt + ipLen + 13]!;
    let k = 0;
    for (; k < max && this.next < this.count; k++, this.next++) {
      const i = this.next;
      const start = i * mss;
      const chunk = Math.min(mss, this.payloadLen - start);
      const out = offsets[first + k]!;
      dst.set(src.subarray(pkt, pkt + hdrLen), out);
      dst.set(src.subarray(pkt + hdrLen + start, pkt + hdrLen + start + chunk), out + hdrLen);
      const tcp = out + ipLen;
      const l4Len = hdrLen - ipLen + chunk;
      if (v6) {
        setU16(dst, out + 4, l4Len);
      } else {
        setU16(dst, out + 2, hdrLen + chunk);
        setU16(dst, out + 4, (id0 + i) & 0xffff);
        ipv4HeaderChecksum(dst, out);
      }
      setU32(dst, tcp + 4, (seq0 + start) >>> 0);
      let flags = flags0;
      if (i < this.count - 1) flags &= ~(TCP_FIN | TCP_PSH);
      if (i > 0) flags &= ~TCP_CWR;
      dst[tcp + 13] = flags;
      dst[tcp + 16] = 0;
      dst[tcp + 17] = 0;
      setU16(dst, tcp + 16, checksum(dst, tcp, tcp + l4Len, pseudoSum(dst, out, v6, 6, l4Len)));
      lens[first + k] = hdrLen + chunk;
    }
    return k;
  }
}

/**
 * Merges runs of consecutive TCP segments of one flow into super-packets. Feed packets in order
 * with `add`; each call says whether the packet joined the open run, and the caller flushes the
 * run (writing it with `finish`) when a packet does not join or the batch ends.
 */
export class Coalescer {
  /** Where the run's packet is: the first segment in place, then the merge area once it grows. */
  private buf: Uint8Array = new Uint8Array(0);
  private at = 0;
  private out: Uint8Array = new Uint8Array(0);
  private outAt = 0;
  private v6 = false;
  private ipLen = 0;
  private hdrLen = 0;
  private len = 0; // bytes merged so far, headers included
  private mss = 0;
  private nextSeq = 0;
  private segments = 0;
  private closed = true;

  /** Segments in the open run (0: none open). */
  get size(): number {
    return this.segments;
  }

  /** Header facts of a plain TCP segment at pkt, or -1 when it cannot be merged. Returns the payload length. */
  static mergeable(buf: Uint8Array, pkt: number, len: number): number {
    const v = buf[pkt]! >> 4;
    let ipLen: number;
    if (v === 4) {
      ipLen = (buf[pkt]! & 0xf) * 4;
      if (ipLen !== 20 || buf[pkt + 9] !== 6 || (getU16(buf, pkt + 6) & 0x3fff) !== 0 || getU16(buf, pkt + 2) !== len) return -1;
    } else if (v === 6) {
      ipLen = 40;
      if (buf[pkt + 6] !== 6 || getU16(buf, pkt + 4) + 40 !== len) return -1;
    } else return -1;
    if (len < ipLen + 20) return -1;
    const tcpLen = (buf[pkt + ipLen + 12]! >> 4) * 4;
    const flags = buf[pkt + ipLen + 13]!;
    if (tcpLen < 20 || ipLen + tcpLen >= len || (flags & ~TCP_PSH) !== TCP_ACK) return -1;
    return len - ipLen - tcpLen;
  }

  /**
   * Opens a run with the segment at src[pkt, pkt+len); `out[at]` is where the run is built if
   * a second segment joins (a lone segment is written where it is, with 10 bytes of room before
   * it for the virtio header).
   */
  start(src: Uint8Array, pkt: number, len: number, out: Uint8Array, at: number): void {
    this.buf = src;
    this.at = pkt;
    this.out = out;
    this.outAt = at;
    this.v6 = src[pkt]! >> 4 === 6;
    this.ipLen = this.v6 ? 40 : 20;
    this.hdrLen = this.ipLen + (src[pkt + this.ipLen + 12]! >> 4) * 4;
    this.mss = len - this.hdrLen;
    this.len = len;
    this.nextSeq = (getU32(src, pkt + this.ipLen + 4) + this.mss) >>> 0;
    this.segments = 1;
    this.closed = (src[pkt + this.ipLen + 13]! & TCP_PSH) !== 0;
  }

  /** Appends the segment if it continues the run exactly; false leaves the run unchanged. */
  add(src: Uint8Array, pkt: number, len: number): boolean {
    if (this.closed || this.segments === 0) return false;
    const b = this.buf;
    const a = this.at;
    const ipLen = this.ipLen;
    const payload = len - this.hdrLen;
    if (payload <= 0 || payload > this.mss || this.len + payload > MAX_SUPER_PACKET) return false;
    if ((src[pkt]! >> 4 === 6) !== this.v6) return false;
    if ((src[pkt + ipLen + 12]! >> 4) * 4 !== this.hdrLen - ipLen) return false;
    // Addresses (and for IPv4 TOS and TTL; IPv6 traffic class, flow label, hop limit) must match.
    if (this.v6) {
      for (let i = 0; i < 4; i++) if (src[pkt + i] !== b[a + i]) return false;
      if (src[pkt + 7] !== b[a + 7]) return false;
      for (let i = 8; i < 40; i++) if (src[pkt + i] !== b[a + i]) return false;
    } else {
      if (src[pkt + 1] !== b[a + 1] || src[pkt + 8] !== b[a + 8]) return false;
      for (let i = 12; i < 20; i++) if (src[pkt + i] !== b[a + i]) return false;
    }
    const tcp = pkt + ipLen;
    const mtcp = a + ipLen;
    // Ports, ack number and every option byte identical; flags ACK or ACK|PSH; contiguous.
    for (let i = 0; i < 4; i++) if (src[tcp + i] !== b[mtcp + i]) return false;
    for (let i = 8; i < 12; i++) if (src[tcp + i] !== b[mtcp + i]) return false;
    for (let i = 20; i < this.hdrLen - ipLen; i++) if (src[tcp + i] !== b[mtcp + i]) return false;
    const flags = src[tcp + 13]!;
    if ((flags & ~TCP_PSH) !== TCP_ACK || getU32(src, tcp + 4) !== this.nextSeq) return false;
    if (this.segments === 1) {
      this.out.set(b.subarray(a, a + this.len), this.outAt);
      this.buf = this.out;
      this.at = this.outAt;
    }
    this.buf.set(src.subarray(pkt + this.hdrLen, pkt + len), this.at + this.len);
    this.len += payload;
    this.nextSeq = (this.nextSeq + payload) >>> 0;
    this.segments++;
    if (flags & TCP_PSH) this.buf[this.at + ipLen + 13]! |= TCP_PSH;
    // A short segment or a push ends the run, as in Linux GRO.
    if (payload < this.mss || (flags & TCP_PSH) !== 0) this.closed = true;
    return true;
  }

  /** The buffer and offset of the last finished run's write (virtio header first). */
  writeBuf: Uint8Array = new Uint8Array(0);
  writeAt = 0;

  /**
   * Finishes the run: fixes lengths and checksums and writes the virtio header in the 10 bytes
   * before the packet. Returns the length to write, header included, from writeBuf[writeAt].
   */
  finish(): number {
    const b = this.buf;
    const a = this.at;
    const ipLen = this.ipLen;
    const l4Len = this.len - ipLen;
    if (this.segments === 1) {
      writeVnetHeader(b, a - VNET_HDR_LEN, VNET_F_DATA_VALID, GSO_NONE, 0, 0, 0, 0);
    } else {
      if (this.v6) setU16(b, a + 4, l4Len);
      else {
        setU16(b, a + 2, this.len);
        ipv4HeaderChecksum(b, a);
      }
      // A partial checksum: the pseudo-header sum, which the kernel completes or trusts.
      setU16(b, a + ipLen + 16, fold(pseudoSum(b, a, this.v6, 6, l4Len)));
      writeVnetHeader(b, a - VNET_HDR_LEN, VNET_F_NEEDS_CSUM, this.v6 ? GSO_TCPV6 : GSO_TCPV4, this.hdrLen, this.mss, ipLen, 16);
    }
    const total = this.len + VNET_HDR_LEN;
    this.writeBuf = b;
    this.writeAt = a - VNET_HDR_LEN;
    this.segments = 0;
    this.closed = true;
    return total;
  }
}
