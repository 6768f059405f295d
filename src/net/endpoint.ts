/**
 * Endpoints as rows of flat arrays, so addresses never become objects on the data path: IPv6 as
 * is, IPv4 as ::ffff:a.b.c.d, which is also how a dual-stack socket sees and takes IPv4 peers.
 * Parsing and formatting endpoint strings ("1.2.3.4:51820", "[fd00::1]:51820") allocate and
 * belong to the control plane.
 */
import { AF_INET, AF_INET6, libc } from './libc.js';

/**
 * Rows of endpoints: the remote `addr` 16 bytes per row (`addr32` is the same memory as 4
 * words), `port` in host order, `family` 4, 6 or 0 for an empty row; and the local side of the
 * path, the "sticky source": `src` (16 bytes, `src32` as words; all zero for none, then the
 * kernel's routing picks) and `srcIf`, the interface index that goes with an IPv6 link-local
 * source (0 otherwise). Pass an existing buffer (e.g. a SharedArrayBuffer from another thread)
 * to view the same rows.
 */
export class EndpointTable {
  static bytesFor(capacity: number): number {
    return capacity * 40;
  }

  readonly addr: Uint8Array;
  readonly addr32: Uint32Array;
  readonly src: Uint8Array;
  readonly src32: Uint32Array;
  readonly srcIf: Uint32Array;
  readonly port: Uint16Array;
  readonly family: Uint8Array;
  readonly buffer: ArrayBufferLike;

  constructor(readonly capacity: number, buffer?: ArrayBufferLike) {
    this.buffer = buffer ?? new ArrayBuffer(EndpointTable.bytesFor(capacity));
    if (this.buffer.byteLength < EndpointTable.bytesFor(capacity)) throw new RangeError('endpoint table buffer too small');
    this.addr = new Uint8Array(this.buffer, 0, 16 * capacity);
    this.addr32 = new Uint32Array(this.buffer, 0, 4 * capacity);
    this.src = new Uint8Array(this.buffer, 16 * capacity, 16 * capacity);
    this.src32 = new Uint32Array(this.buffer, 16 * capacity, 4 * capacity);
    this.srcIf = new Uint32Array(this.buffer, 32 * capacity, capacity);
    this.port = new Uint16Array(this.buffer, 36 * capacity, capacity);
    this.family = new Uint8Array(this.buffer, 38 * capacity, capacity);
  }

  /** Whether row `row` has a sticky source. */
  hasSource(row: number): boolean {
    const s = this.src32;
    return (s[4 * row]! | s[4 * row + 1]! | s[4 * row + 2]! | s[4 * row + 3]!) !== 0;
  }

  /** Forgets row `row`'s sticky source (the routed address is used from then on). */
  clearSource(row: number): void {
    this.src32.fill(0, 4 * row, 4 * row + 4);
    this.srcIf[row] = 0;
  }
}

/** Copies row `i` of `src` to row `j` of `dst` (remote and local side) without allocating. */
export function copyEndpoint(src: EndpointTable, i: number, dst: EndpointTable, j: number): void {
  for (let w = 0; w < 4; w++) {
    dst.addr32[4 * j + w] = src.addr32[4 * i + w]!;
    dst.src32[4 * j + w] = src.src32[4 * i + w]!;
  }
  dst.srcIf[j] = src.srcIf[i]!;
  dst.port[j] = src.port[i]!;
  dst.family[j] = src.family[i]!;
}

/** True when row `i` of `a` and row `j` of `b` hold the same path: remote endpoint and local source. */
export function endpointEquals(a: EndpointTable, i: number, b: EndpointTable, j: number): boolean {
  return a.family[i] === b.family[j] && a.port[i] === b.port[j] &&
    a.addr32[4 * i] === b.addr32[4 * j] && a.addr32[4 * i + 1] === b.addr32[4 * j + 1] &&
    a.addr32[4 * i + 2] === b.addr32[4 * j + 2] && a.addr32[4 * i + 3] === b.addr32[4 * j + 3] &&
    a.src32[4 * i] === b.src32[4 * j] && a.src32[4 * i + 1] === b.src32[4 * j + 1] &&
    a.src32[4 * i + 2] === b.src32[4 * j + 2] && a.src32[4 * i + 3] === b.src32[4 * j + 3] && a.srcIf[i] === b.srcIf[j];
}

/**
 * Parses "a.b.c.d:port" or "[v6]:port" into row `row`. Returns false (row untouched) for
 * anything else: host names, zone ids ("%eth0"), ports outside 0..65535.
 */
export function parseEndpoint(text: string, table: EndpointTable, row: number): boolean {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(text);
  if (m === null) return false;
  const port = Number(m[3]);
  if (port > 0xffff) return false;
  if (m[1] !== undefined) {
    const bytes = new Uint8Array(new ArrayBuffer(16));
    if (libc.inet_pton(AF_INET6, m[1], bytes) !== 1) return false;
    writeEndpointRow(table, row, isV4Mapped(bytes) ? 4 : 6, bytes, port);
  } else {
    const bytes = new Uint8Array(new ArrayBuffer(4));
    if (libc.inet_pton(AF_INET, m[2]!, bytes) !== 1) return false;
    writeEndpointRow(table, row, 4, bytes, port);
  }
  return true;
}

/**
 * Writes row `row`: a 4-byte IPv4 address as ::ffff:a.b.c.d, a 16-byte address as is, and no
 * sticky source (a configured endpoint starts from the routed address, as `wg set` does in the kernel).
 */
export function writeEndpointRow(table: EndpointTable, row: number, family: number, addr: Uint8Array, port: number): void {
  table.clearSource(row);
  const a = table.addr;
  const o = 16 * row;
  if (addr.length === 4) {
    a.fill(0, o, o + 10);
    a[o + 10] = 0xff;
    a[o + 11] = 0xff;
    a.set(addr, o + 12);
  } else {
    a.set(addr, o);
  }
  table.port[row] = port;
  table.family[row] = family;
}

/** Formats row `row` as "a.b.c.d:port" or "[v6]:port"; null for an empty row. */
export function formatEndpoint(table: EndpointTable, row: number): string | null {
  const family = table.family[row];
  if (family !== 4 && family !== 6) return null;
  const a = table.addr.subarray(16 * row, 16 * row + 16);
  if (family === 4) return `${a[12]}.${a[13]}.${a[14]}.${a[15]}:${table.port[row]}`;
  const text = libc.inet_ntop(AF_INET6, a, new Uint8Array(new ArrayBuffer(64)), 64) as string;
  return `[${text}]:${table.port[row]}`;
}

/**
 * Reads the sockaddr_in6 a recvmmsg wrote at byte `at` (4-byte aligned) of `bytes`, whose
 * words `u32` views, into row `row`'s remote side: the socket is dual-stack, so IPv4 sources
 * come v4-mapped.
 */
export function readSockaddr(bytes: Uint8Array, u32: Uint32Array, at: number, table: EndpointTable, row: number): void {
  const s = at >> 2;
  const a = 4 * row;
  table.addr32[a] = u32[s + 2]!;
  table.addr32[a + 1] = u32[s + 3]!;
  table.addr32[a + 2] = u32[s + 4]!;
  table.addr32[a + 3] = u32[s + 5]!;
  table.port[row] = (bytes[at + 2]! << 8) | bytes[at + 3]!;
  table.family[row] = u32[s + 2] === 0 && u32[s + 3] === 0 && u32[s + 4] === 0xffff0000 ? 4 : 6;
}

/**
 * Reads an in6_pktinfo (the local address a datagram arrived on, and the interface) at word `s`
 * of `u32` into row `row`'s local side; the interface is kept only for IPv6 link-local
 * addresses, where it is part of the address (elsewhere it would pin replies to one interface).
 */
export function readPktinfo(u32: Uint32Array, s: number, table: EndpointTable, row: number): void {
  const a = 4 * row;
  const w0 = u32[s]!;
  table.src32[a] = w0;
  table.src32[a + 1] = u32[s + 1]!;
  table.src32[a + 2] = u32[s + 2]!;
  table.src32[a + 3] = u32[s + 3]!;
  // fe80::/10 in the first (little-endian loaded) word: bytes 0xfe, 0x80..0xbf.
  table.srcIf[row] = (w0 & 0xc0ff) === 0x80fe ? u32[s + 4]! : 0;
}

function isV4Mapped(a: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}
