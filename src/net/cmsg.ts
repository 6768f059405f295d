// Ancillary data (cmsg) of the UDP sockets, laid out by hand in preallocated control buffers:
// IPV6_PKTINFO (the local address a datagram arrived on, and the one to send from: the sticky
// source) and UDP_GRO / UDP_SEGMENT (the segment size of a coalesced run). The sockets are
// dual-stack AF_INET6, and the kernel speaks IPV6_PKTINFO for IPv4 traffic on them too, with
// v4-mapped addresses, both ways (ip6_datagram_recv_common_ctl; ip_cmsg_send with allow_ipv6).
//
// struct cmsghdr on x86-64: cmsg_len (size_t), cmsg_level (int), cmsg_type (int), then data
// aligned to 8; CMSG_SPACE rounds each to 8 bytes.
import { readPktinfo, type EndpointTable } from './endpoint.js';
import { IPPROTO_IPV6 } from './libc.js';
import { SOL_UDP, UDP_GRO, UDP_SEGMENT } from './gso.js';

export const IPV6_RECVPKTINFO = 49;
export const IPV6_PKTINFO = 50;

export const CMSG_HDR = 16;
/** CMSG_LEN / CMSG_SPACE of an in6_pktinfo (16-byte address + int ifindex). */
const PKTINFO_LEN = CMSG_HDR + 20;
export const PKTINFO_SPACE = 40;
/** CMSG_LEN / CMSG_SPACE of a u16 (UDP_SEGMENT) and an int (UDP_GRO). */
const SEGMENT_LEN = CMSG_HDR + 2;
export const SEGMENT_SPACE = 24;
/** Control bytes per message: a pktinfo and a segment size. */
export const CONTROL_SPACE = PKTINFO_SPACE + SEGMENT_SPACE;

/**
 * Parses what the kernel wrote into a received message's control buffer at byte `at` (8-byte
 * aligned) of the memory `u32` views, `len` bytes of it: the local address into
 * row `row`'s source (cleared when absent). Returns the UDP_GRO segment size, 0 without one.
 */
export function parseReceived(u32: Uint32Array, at: number, len: number, table: EndpointTable, row: number): number {
  let segment = 0;
  let sourced = false;
  let c = at;
  const end = at + len;
  while (c + CMSG_HDR <= end) {
    const cmsgLen = u32[c >> 2]!;
    if (cmsgLen < CMSG_HDR || c + cmsgLen > end) break;
    const level = u32[(c >> 2) + 2]!;
    const type = u32[(c >> 2) + 3]!;
    if (level === IPPROTO_IPV6 && type === IPV6_PKTINFO && cmsgLen >= PKTINFO_LEN) {
      readPktinfo(u32, (c + CMSG_HDR) >> 2, table, row);
      sourced = true;
    } else if (level === SOL_UDP && type === UDP_GRO && cmsgLen >= CMSG_HDR + 4) {
      segment = u32[(c + CMSG_HDR) >> 2]!;
    }
    c += (cmsgLen + 7) & ~7;
  }
  if (!sourced) table.clearSource(row);
  return segment;
}

/** Writes a cmsghdr at word `w`: cmsg_len (a size_t), level, type. */
function writeHeader(u32: Uint32Array, w: number, len: number, level: number, type: number): void {
  u32[w] = len;
  u32[w + 1] = 0;
  u32[w + 2] = level;
  u32[w + 3] = type;
}

/** Writes an IPV6_PKTINFO cmsg at byte `at` carrying row `row`'s source (PKTINFO_SPACE bytes). */
export function writePktinfo(u32: Uint32Array, at: number, table: EndpointTable, row: number): void {
  const w = at >> 2;
  writeHeader(u32, w, PKTINFO_LEN, IPPROTO_IPV6, IPV6_PKTINFO);
  u32[w + 4] = table.src32[4 * row]!;
  u32[w + 5] = table.src32[4 * row + 1]!;
  u32[w + 6] = table.src32[4 * row + 2]!;
  u32[w + 7] = table.src32[4 * row + 3]!;
  u32[w + 8] = table.srcIf[row]!;
  u32[w + 9] = 0;
}

/** Writes a UDP_SEGMENT cmsg at byte `at` with segment size `size` (SEGMENT_SPACE bytes). */
export function writeSegment(bytes: Uint8Array, u32: Uint32Array, at: number, size: number): void {
  const w = at >> 2;
  writeHeader(u32, w, SEGMENT_LEN, SOL_UDP, UDP_SEGMENT);
  u32[w + 4] = 0;
  bytes[at + CMSG_HDR] = size & 0xff; // a native-endian u16
  bytes[at + CMSG_HDR + 1] = size >>> 8;
}
