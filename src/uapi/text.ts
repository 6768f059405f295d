// Text forms of UAPI values, read from and written to bytes without intermediate strings:
// hex keys, decimal numbers, addresses, endpoints and prefixes, with the exact rules of Go's
// net/netip and strconv that wireguard-go parses with, and netip's canonical output.
import type { Endpoint } from './types.js';

export const NL = 10;
export const CR = 13;
const COLON = 58;
const HEX_DIGITS = '0123456789abcdef';

const SLAB_BYTES = 64 * 1024;

/**
 * Hands out the small byte arrays of parsed values as views of shared 64 KiB buffers: a
 * separate Uint8Array(32) costs ~240 bytes of heap and a backing store for the GC to sweep, a
 * view ~100 bytes, which matters when one request carries a million peers.
 */
export class ByteSlab {
  private buf = new ArrayBuffer(0);
  private off = 0;

  take(n: number): Uint8Array {
    if (this.off + n > this.buf.byteLength) {
      this.buf = new ArrayBuffer(SLAB_BYTES);
      this.off = 0;
    }
    const view = new Uint8Array(this.buf, this.off, n);
    this.off += n;
    return view;
  }
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

function latin1(b: Uint8Array, s: number, e: number): string {
  let out = '';
  for (let i = s; i < e; i++) out += String.fromCharCode(b[i]!);
  return out;
}

export function indexOfByte(b: Uint8Array, c: number, s: number, e: number): number {
  for (let i = s; i < e; i++) if (b[i] === c) return i;
  return -1;
}

function lastIndexOfByte(b: Uint8Array, c: number, s: number, e: number): number {
  for (let i = e - 1; i >= s; i--) if (b[i] === c) return i;
  return -1;
}

export function equalsAscii(b: Uint8Array, s: number, e: number, text: string): boolean {
  if (e - s !== text.length) return false;
  for (let i = 0; i < text.length; i++) if (b[s + i] !== text.charCodeAt(i)) return false;
  return true;
}

/** A 32-byte key from exactly 64 hex digits (Go's hex.DecodeString + length check). */
export function parseKey(b: Uint8Array, s: number, e: number, slab: ByteSlab): Uint8Array | null {
  const key = slab.take(32);
  return parseKeyInto(b, s, e, key, 0) ? key : null;
}

/** As parseKey, into out[off .. off+31]. */
export function parseKeyInto(b: Uint8Array, s: number, e: number, out: Uint8Array, off: number): boolean {
  if (e - s !== 64) return false;
  for (let i = 0; i < 32; i++) {
    const hi = hexValue(b[s + 2 * i]!);
    const lo = hexValue(b[s + 2 * i + 1]!);
    if (hi < 0 || lo < 0) return false;
    out[off + i] = (hi << 4) | lo;
  }
  return true;
}

/** Decimal digits only, at most `max` (strconv.ParseUint(v, 10, bits)); -1 when invalid. */
export function parseUint(b: Uint8Array, s: number, e: number, max: number): number {
  if (s === e) return -1;
  let v = 0;
  for (let i = s; i < e; i++) {
    const d = b[i]! - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
    if (v > max) return -1;
  }
  return v;
}

/** Bytes an address takes in the arrays the parsers below write into: IPv4 in the first 4. */
export const ADDR_BYTES = 16;
/** Added to the prefix length parsePrefixInto returns for an IPv6 prefix. */
export const PREFIX_V6 = 0x100;

/** Go's parseIPv4: four decimal fields, no leading zeros, each <= 255. */
function parseV4(b: Uint8Array, s: number, e: number, out: Uint8Array, off: number): boolean {
  let field = 0;
  let val = 0;
  let digits = 0;
  for (let i = s; i < e; i++) {
    const c = b[i]!;
    if (c >= 48 && c <= 57) {
      if (digits === 1 && val === 0) return false;
      val = val * 10 + c - 48;
      digits++;
      if (val > 255) return false;
    } else if (c === 46 && digits > 0 && i !== e - 1 && field < 3) {
      out[off + field++] = val;
      val = 0;
      digits = 0;
    } else {
      return false;
    }
  }
  if (field !== 3 || digits === 0) return false;
  out[off + 3] = val;
  return true;
}

/** Go's parseIPv6 without the zone: hex fields of value < 2^16, one "::", an optional trailing IPv4. */
function parseV6(b: Uint8Array, s: number, end: number, ip: Uint8Array, off: number): boolean {
  ip.fill(0, off, off + ADDR_BYTES);
  let ellipsis = -1;
  let p = s;
  let i = 0;
  if (end - p >= 2 && b[p] === COLON && b[p + 1] === COLON) {
    ellipsis = 0;
    p += 2;
    if (p === end) return true;
  }
  while (i < 16) {
    let n = 0;
    let acc = 0;
    for (; p + n < end; n++) {
      const h = hexValue(b[p + n]!);
      if (h < 0) break;
      acc = acc * 16 + h;
      if (acc > 0xffff) return false;
    }
    if (n === 0) return false;
    if (p + n < end && b[p + n] === 46) {
      if ((ellipsis < 0 && i !== 12) || i + 4 > 16 || !parseV4(b, p, end, ip, off + i)) return false;
      p = end;
      i += 4;
      break;
    }
    ip[off + i] = acc >> 8;
    ip[off + i + 1] = acc & 0xff;
    i += 2;
    p += n;
    if (p === end) break;
    if (b[p] !== COLON || p + 1 === end) return false;
    p++;
    if (b[p] === COLON) {
      if (ellipsis >= 0) return false;
      ellipsis = i;
      if (++p === end) break;
    }
  }
  if (p !== end) return false;
  if (i < 16) {
    if (ellipsis < 0) return false;
    const n = 16 - i;
    ip.copyWithin(off + ellipsis + n, off + ellipsis, off + i);
    ip.fill(0, off + ellipsis, off + ellipsis + n);
  } else if (ellipsis >= 0) {
    return false;
  }
  return true;
}

/**
 * Go's netip.ParseAddr without a zone, into out[off .. off+15]: the first '.' or ':' decides
 * the family (4 or 6; 0 when invalid). A '%' makes either parse fail.
 */
function parseAddrInto(b: Uint8Array, s: number, e: number, out: Uint8Array, off: number): 0 | 4 | 6 {
  for (let i = s; i < e; i++) {
    const c = b[i];
    if (c === 46) return parseV4(b, s, e, out, off) ? 4 : 0;
    if (c === COLON) return parseV6(b, s, e, out, off) ? 6 : 0;
    if (c === 37) return 0;
  }
  return 0;
}

function maskAddr(addr: Uint8Array, off: number, bytes: number, cidr: number): void {
  for (let i = 0; i < bytes; i++) {
    const bits = cidr - 8 * i;
    if (bits < 8) addr[off + i]! &= bits <= 0 ? 0 : (0xff00 >> bits) & 0xff;
  }
}

/**
 * netip.ParsePrefix (Go >= 1.22: no sign, no leading zero in the length) into out[off ..
 * off+15], host bits cleared: the prefix length (+ PREFIX_V6 for IPv6), or -1 when invalid.
 */
export function parsePrefixInto(b: Uint8Array, s: number, e: number, out: Uint8Array, off: number): number {
  const slash = lastIndexOfByte(b, 47, s, e);
  if (slash < 0) return -1;
  const family = parseAddrInto(b, s, slash, out, off);
  if (family === 0) return -1;
  if (e - slash > 2 && b[slash + 1] === 48) return -1;
  const cidr = parseUint(b, slash + 1, e, family === 4 ? 32 : 128);
  if (cidr < 0) return -1;
  maskAddr(out, off, family === 4 ? 4 : 16, cidr);
  return family === 4 ? cidr : cidr + PREFIX_V6;
}

/** As parsePrefixInto, into a view of the slab of 4 or 16 bytes. */
export function parsePrefix(b: Uint8Array, s: number, e: number, slab: ByteSlab): { addr: Uint8Array; cidr: number } | null {
  const addr = slab.take(ADDR_BYTES);
  const r = parsePrefixInto(b, s, e, addr, 0);
  if (r < 0) return null;
  return r < PREFIX_V6 ? { addr: addr.subarray(0, 4), cidr: r } : { addr, cidr: r - PREFIX_V6 };
}

/** netip.ParseAddrPort: "a.b.c.d:port" or "[v6%zone]:port"; a zone becomes the scope id. */
export function parseEndpoint(
  b: Uint8Array, s: number, e: number, slab: ByteSlab, resolve?: (name: string) => number | undefined,
): Endpoint | null {
  const colon = lastIndexOfByte(b, COLON, s, e);
  if (colon <= s || colon + 1 === e) return null;
  let is = s;
  let ie = colon;
  const bracketed = b[is] === 91;
  if (bracketed) {
    if (ie - is < 2 || b[ie - 1] !== 93) return null;
    is++;
    ie--;
  }
  const port = parseUint(b, colon + 1, e, 0xffff);
  if (port < 0) return null;
  // Only an IPv6 address may have a zone, and not an empty one.
  const pct = indexOfByte(b, 37, is, ie);
  if (pct + 1 === ie) return null;
  const addr = slab.take(ADDR_BYTES);
  const family = parseAddrInto(b, is, pct < 0 ? ie : pct, addr, 0);
  if (family === 0 || bracketed !== (family === 6) || (pct >= 0 && family !== 6)) return null;
  const ep: Endpoint = { family, addr: family === 4 ? addr.subarray(0, 4) : addr, port };
  if (pct >= 0) {
    // Like wireguard-go's zoneToUint32: an interface name first, then a number.
    const scopeId = resolve?.(latin1(b, pct + 1, ie)) ?? parseUint(b, pct + 1, ie, 0xffffffff);
    if (scopeId < 0) return null;
    ep.scopeId = scopeId;
  }
  return ep;
}

/** Decimal digits only, at most 2^64 - 1 (the byte counters); -1n when invalid. */
export function parseCounter(b: Uint8Array, s: number, e: number): bigint {
  if (s === e || e - s > 20 || indexOfNonDigit(b, s, e) >= 0) return -1n;
  const n = BigInt(latin1(b, s, e));
  return n < 1n << 64n ? n : -1n;
}

function indexOfNonDigit(b: Uint8Array, s: number, e: number): number {
  for (let i = s; i < e; i++) if (b[i]! < 48 || b[i]! > 57) return i;
  return -1;
}

/** The two ASCII hex digits of each byte value: the first in the high 8 bits, the second in the low 8. */
const HEX_PAIRS = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) t[i] = (HEX_DIGITS.charCodeAt(i >> 4) << 8) | HEX_DIGITS.charCodeAt(i & 15);
  return t;
})();

const asciiEncoder = new TextEncoder();

/** ASCII text written often (the keys of every line of a reply), encoded once for ChunkWriter.bytes. */
export function asciiBytes(text: string): Uint8Array {
  return asciiEncoder.encode(text);
}

const CHUNK_BYTES = 64 * 1024;
const MAX_SAFE_BIGINT = BigInt(Number.MAX_SAFE_INTEGER);
/** Longer than any line of a `get` reply (a key line is 75 bytes). */
const MAX_GET_LINE = 128;

/** Writes ASCII into fixed-size chunks and hands each full one on, so no reply is one string. */
export class ChunkWriter {
  private buf = new Uint8Array(CHUNK_BYTES);
  private pos = 0;

  constructor(private readonly emit: (chunk: Uint8Array) => void) {}

  line(): void {
    if (this.pos + MAX_GET_LINE > this.buf.length) this.flush();
  }

  ascii(text: string): void {
    for (let i = 0; i < text.length; i++) this.buf[this.pos++] = text.charCodeAt(i);
  }

  /**
   * Bytes encoded once by asciiBytes. A loop, not buf.set(): these are 10-30 bytes, and the
   * builtin's fixed cost per call was the largest of a million-peer `get` (ten million calls).
   */
  bytes(b: Uint8Array): void {
    const buf = this.buf;
    let pos = this.pos;
    for (let i = 0; i < b.length; i++) buf[pos++] = b[i]!;
    this.pos = pos;
  }

  byte(c: number): void {
    this.buf[this.pos++] = c;
  }

  hex(bytes: Uint8Array): void {
    const buf = this.buf;
    let pos = this.pos;
    for (let i = 0; i < bytes.length; i++) {
      const pair = HEX_PAIRS[bytes[i]!]!;
      buf[pos] = pair >> 8;
      buf[pos + 1] = pair & 0xff;
      pos += 2;
    }
    this.pos = pos;
  }

  uint(value: number | bigint): void {
    // The byte counters are bigints, nearly always far below 2^53: as numbers they take the
    // digit loop, not a string each.
    const n = typeof value === 'bigint' && value <= MAX_SAFE_BIGINT ? Number(value) : value;
    if (typeof n === 'bigint' || n > Number.MAX_SAFE_INTEGER) {
      this.ascii(n.toString());
      return;
    }
    // Digits straight into the chunk: a million-peer `get` writes ~10M of these numbers, and a
    // string per number was the largest cost of the dump.
    let end = this.pos;
    for (let v = n; v >= 10; v = Math.floor(v / 10)) end++;
    this.pos = end + 1;
    let v = n;
    do {
      this.buf[end--] = 48 + (v % 10);
      v = Math.floor(v / 10);
    } while (v > 0);
  }

  /** A 16-bit group in lower-case hex without leading zeros, as RFC 5952 writes it. */
  private group(g: number): void {
    let shift = 12;
    while (shift > 0 && (g >> shift) === 0) shift -= 4;
    for (; shift >= 0; shift -= 4) this.buf[this.pos++] = HEX_DIGITS.charCodeAt((g >> shift) & 15);
  }

  /** Go's netip.Addr.String: dotted IPv4, "::ffff:a.b.c.d" for mapped IPv4, RFC 5952 IPv6. */
  addr(a: Uint8Array): void {
    if (a.length === 4) {
      this.uint(a[0]!);
      for (let i = 1; i < 4; i++) {
        this.byte(46);
        this.uint(a[i]!);
      }
      return;
    }
    let mapped = a[10] === 0xff && a[11] === 0xff;
    for (let i = 0; i < 10 && mapped; i++) mapped = a[i] === 0;
    if (mapped) {
      this.ascii('::ffff:');
      this.uint(a[12]!);
      for (let i = 13; i < 16; i++) {
        this.byte(46);
        this.uint(a[i]!);
      }
      return;
    }
    // The longest run of two or more zero groups becomes "::" (the first one on a tie).
    let zs = 8;
    let ze = 8;
    for (let i = 0; i < 8; i++) {
      let j = i;
      while (j < 8 && a[2 * j] === 0 && a[2 * j + 1] === 0) j++;
      if (j - i >= 2 && j - i > ze - zs) {
        zs = i;
        ze = j;
      }
    }
    for (let i = 0; i < 8; i++) {
      if (i === zs) {
        this.ascii('::');
        i = ze;
        if (i >= 8) break;
      } else if (i > 0) {
        this.byte(COLON);
      }
      this.group((a[2 * i]! << 8) | a[2 * i + 1]!);
    }
  }

  /** netip.AddrPort.String; like wireguard-go, without the zone of a link-local endpoint. */
  endpoint(ep: Endpoint): void {
    if (ep.family === 6) this.byte(91);
    this.addr(ep.addr);
    if (ep.family === 6) this.byte(93);
    this.byte(COLON);
    this.uint(ep.port);
  }

  prefix(addr: Uint8Array, cidr: number): void {
    this.addr(addr);
    this.byte(47);
    this.uint(cidr);
  }

  flush(): void {
    if (this.pos === 0) return;
    this.emit(this.buf.subarray(0, this.pos));
    this.buf = new Uint8Array(CHUNK_BYTES);
    this.pos = 0;
  }
}
