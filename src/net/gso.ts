// UDP generic segmentation offload (UDP_SEGMENT): several datagrams to one endpoint leave as one
// sendmsg with a segment size, and the kernel cuts them (or the NIC does, or, on veth, the
// receiving socket), so the whole UDP/IP stack runs once per run instead of once per datagram.
// wireguard-go does the same since 2023 (conn/bind_std.go, coalesceMessages).
//
// The kernel's rules (net/ipv4/udp.c udp_send_skb, ip_append_data): every segment has the
// segment size except the last, which may be shorter; at most UDP_MAX_SEGMENTS segments; the
// whole payload fits one IP packet; segment size plus headers within the path MTU (EINVAL
// otherwise, and EIO from kernels that need checksum offload on the egress device).
import { endpointEquals, type EndpointTable } from './endpoint.js';

export const SOL_UDP = 17;
export const UDP_SEGMENT = 103;
export const UDP_GRO = 104;
/** Segments per GSO send (include/linux/udp.h; 128 on kernels since 6.12, 64 before). */
export const UDP_MAX_SEGMENTS = 64;
/** Largest UDP payload of one IPv4 packet: 65535 minus the IPv4 and UDP headers. */
export const MAX_PAYLOAD_V4 = 0xffff - 20 - 8;
/** Largest UDP payload of one IPv6 packet (the IPv6 header is outside the payload length). */
export const MAX_PAYLOAD_V6 = 0xffff - 8;

/**
 * How many datagrams, starting with datagram `first` of `count`, can leave as one GSO send:
 * same endpoint (row `rows[k]` of `to`, row k without `rows`), the length of the first one
 * for all but a shorter last one, within the segment and payload limits. 1 means send it alone.
 */
export function gsoRunLength(lens: Int32Array, first: number, count: number, to: EndpointTable, rows?: Uint32Array): number {
  const size = lens[first]!;
  const row = rows === undefined ? first : rows[first]!;
  const max = to.family[row] === 4 ? MAX_PAYLOAD_V4 : MAX_PAYLOAD_V6;
  let total = size;
  let k = first + 1;
  for (; k < count && k - first < UDP_MAX_SEGMENTS; k++) {
    const len = lens[k]!;
    if (len > size || len <= 0 || total + len > max) break;
    if (!endpointEquals(to, row, to, rows === undefined ? k : rows[k]!)) break;
    total += len;
    if (len < size) return k + 1 - first;
  }
  return k - first;
}
