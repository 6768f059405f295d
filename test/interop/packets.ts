// IPv4/IPv6 ICMP echo packets built and parsed by hand, so tests can put real traffic through
// a tunnel and recognise what comes back.

function checksum(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  for (let i = start; i < end; i += 2) sum += (buf[i]! << 8) | (i + 1 < end ? buf[i + 1]! : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export function ipv4(s: string): Uint8Array {
  return Uint8Array.from(s.split('.').map(Number));
}

export function icmpEchoV4(src: string, dst: string, id: number, seq: number, payload: Uint8Array): Uint8Array {
  const len = 20 + 8 + payload.length;
  const p = new Uint8Array(len);
  const v = new DataView(p.buffer);
  p[0] = 0x45;
  v.setUint16(2, len);
  v.setUint16(4, id);
  p[8] = 64; // TTL
  p[9] = 1; // ICMP
  p.set(ipv4(src), 12);
  p.set(ipv4(dst), 16);
  v.setUint16(10, checksum(p, 0, 20));
  p[20] = 8; // echo request
  v.setUint16(24, id);
  v.setUint16(26, seq);
  p.set(payload, 28);
  v.setUint16(22, checksum(p, 20, len));
  return p;
}

export interface Echo { src: string; dst: string; type: number; id: number; seq: number; payload: Uint8Array }

/** Parses an IPv4 ICMP echo (request or reply); undefined for anything else. */
export function parseIcmpV4(p: Uint8Array): Echo | undefined {
  if (p.length < 28 || p[0]! >> 4 !== 4 || p[9] !== 1) return undefined;
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const total = v.getUint16(2);
  const ihl = (p[0]! & 0xf) * 4;
  if (total > p.length) return undefined;
  return {
    src: Array.from(p.subarray(12, 16)).join('.'),
    dst: Array.from(p.subarray(16, 20)).join('.'),
    type: p[ihl]!,
    id: v.getUint16(ihl + 4),
    seq: v.getUint16(ihl + 6),
    payload: p.slice(ihl + 8, total),
  };
}
