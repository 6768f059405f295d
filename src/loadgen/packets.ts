// The inner packets the load generator puts through its tunnels: IPv4 ICMP echo requests (the
// target answers them, so losses can be counted) or IPv4 UDP datagrams (one way, e.g. to the
// discard port), written in place into a send buffer so building one allocates nothing. The
// payload is zeros; only the headers vary from packet to packet.

import { checksum } from '../tun/offload.js';

export const IPV4_HEADER_LEN = 20;
/** ICMP echo and UDP headers are both 8 bytes: the smallest packet either protocol makes. */
export const MIN_PACKET_LEN = IPV4_HEADER_LEN + 8;
const PROTO_ICMP = 1;
const PROTO_UDP = 17;
const ICMP_ECHO_REPLY = 0;
const ICMP_ECHO_REQUEST = 8;
const TTL = 64;


function put16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 8;
  buf[off + 1] = v & 0xff;
}

function put32(buf: Uint8Array, off: number, v: number): void {
  put16(buf, off, v >>> 16);
  put16(buf, off + 2, v & 0xffff);
}

function get16(buf: Uint8Array, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

function get32(buf: Uint8Array, off: number): number {
  return ((get16(buf, off) << 16) | get16(buf, off + 2)) >>> 0;
}

/** An IPv4 header without options at `off`, then zeros up to `totalLen`. */
function writeIPv4(buf: Uint8Array, off: number, proto: number, src: number, dst: number, id: number, totalLen: number): void {
  buf.fill(0, off, off + totalLen);
  buf[off] = 0x45;
  put16(buf, off + 2, totalLen);
  put16(buf, off + 4, id);
  buf[off + 8] = TTL;
  buf[off + 9] = proto;
  put32(buf, off + 12, src);
  put32(buf, off + 16, dst);
  put16(buf, off + 10, checksum(buf, off, off + IPV4_HEADER_LEN));
}

/** An ICMP echo request of `totalLen` bytes (IP header included) at `buf[off]`. */
export function writeEchoRequest(buf: Uint8Array, off: number, src: number, dst: number, id: number, seq: number, totalLen: number): void {
  writeIPv4(buf, off, PROTO_ICMP, src, dst, seq, totalLen);
  const icmp = off + IPV4_HEADER_LEN;
  buf[icmp] = ICMP_ECHO_REQUEST;
  put16(buf, icmp + 4, id);
  put16(buf, icmp + 6, seq);
  put16(buf, icmp + 2, checksum(buf, icmp, off + totalLen));
}

/** A UDP datagram of `totalLen` bytes (IP header included) at `buf[off]`; no UDP checksum (IPv4 allows it). */
export function writeUdp(buf: Uint8Array, off: number, src: number, dst: number, srcPort: number, dstPort: number, totalLen: number): void {
  writeIPv4(buf, off, PROTO_UDP, src, dst, 0, totalLen);
  const udp = off + IPV4_HEADER_LEN;
  put16(buf, udp, srcPort);
  put16(buf, udp + 2, dstPort);
  put16(buf, udp + 4, totalLen - IPV4_HEADER_LEN);
}

/**
 * True when the `len` bytes at `buf[off]` are an ICMP echo reply from `from` to `to` with echo
 * identifier `id`: the answer to one of our requests.
 */
export function isEchoReply(buf: Uint8Array, off: number, len: number, from: number, to: number, id: number): boolean {
  if (len < MIN_PACKET_LEN || buf[off] !== 0x45 || buf[off + 9] !== PROTO_ICMP) return false;
  const icmp = off + IPV4_HEADER_LEN;
  return get16(buf, off + 2) <= len && get32(buf, off + 12) === from && get32(buf, off + 16) === to &&
    buf[icmp] === ICMP_ECHO_REPLY && get16(buf, icmp + 4) === id;
}
