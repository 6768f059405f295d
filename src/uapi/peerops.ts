// The `public_key=` sections of a parsed `set` request, packed into columns of typed arrays
// that grow by chunks: keys, prefixes and endpoint addresses in byte arenas, a section's flags,
// optional values and first allowed IP in per-section columns, indices where an object graph
// would hold references. A million-peer request held as objects (a section object, its
// allowed-IPs array, a prefix object and a Uint8Array view each) was ~400 bytes of heap per
// peer kept alive through the whole apply: the old generation's collector then had millions
// more objects to mark while the device created its own, and its pauses delayed handshakes
// answered meanwhile. Here the GC sees one typed array per 1,024 rows of a column.
//
// The parser (protocol.ts) appends a section, then writes the lines that follow into it; it
// hands values over as the bytes they were read from, parsed straight into the arenas. The
// device reads sections by index; the readers that return arrays return views of the arenas:
// copy what you keep (the session wipes the preshared keys once the request is applied).
import type { Endpoint } from './types.js';
import { ADDR_BYTES, PREFIX_V6, parseKeyInto, parsePrefixInto } from './text.js';

const KEY_BYTES = 32;

/** Section flags. */
const REMOVE = 1;
const UPDATE_ONLY = 2;
const REPLACE_ALLOWED_IPS = 4;
/** Allowed-IP flags. */
const IP_V6 = 1;
const IP_REMOVE = 2;
/** Absent optional value of a section (preshared key, endpoint, keepalive). */
const NONE = -1;

type Typed = Uint8Array | Uint16Array | Int32Array | Float64Array;

/** Rows per chunk of a Column: a few tens of KB at most, one chunk for most requests. */
const CHUNK_SHIFT = 10;
const CHUNK_ROWS = 1 << CHUNK_SHIFT;

/**
 * `width` elements per row, in chunks of CHUNK_ROWS rows added as rows are reached: growing
 * never copies (doubling one array copied tens of MB at once at a million peers, a stall of
 * the main thread while handshakes waited).
 */
class Column<T extends Typed> {
  private readonly chunks: T[] = [];

  constructor(private readonly make: (n: number) => T, private readonly width = 1) {}

  /** The chunk that holds row r; its elements start at offset(r). */
  chunk(r: number): T {
    const c = r >>> CHUNK_SHIFT;
    while (this.chunks.length <= c) this.chunks.push(this.make(CHUNK_ROWS * this.width));
    return this.chunks[c]!;
  }

  offset(r: number): number {
    return (r & (CHUNK_ROWS - 1)) * this.width;
  }

  get(r: number): number {
    return this.chunk(r)[this.offset(r)]!;
  }

  set(r: number, v: number): void {
    this.chunk(r)[this.offset(r)] = v;
  }

  /** Row r's `width` elements. */
  row(r: number, length = this.width): T {
    const o = this.offset(r);
    return this.chunk(r).subarray(o, o + length) as T;
  }

  /** Zeroes every chunk. */
  wipe(): void {
    for (const c of this.chunks) c.fill(0);
  }
}

const bytes = (n: number): Uint8Array => new Uint8Array(n);
const int32 = (n: number): Int32Array => new Int32Array(n);

export class PeerOps {
  /** Sections so far. */
  length = 0;
  private readonly keys = new Column(bytes, KEY_BYTES);
  private readonly flags = new Column(bytes);
  /** Per section: a row of `psks` / `epAddr`..., the keepalive interval, or NONE. */
  private readonly psk = new Column(int32);
  private readonly ep = new Column(int32);
  private readonly keepaliveSecs = new Column(int32);
  /** The section's first allowed IP; its last is before the next section's first (or `ips`). */
  private readonly ipStart = new Column(int32);

  private readonly psks = new Column(bytes, KEY_BYTES);
  private pskCount = 0;

  private readonly epAddr = new Column(bytes, ADDR_BYTES);
  private readonly epFamily = new Column(bytes);
  private readonly epPort = new Column((n) => new Uint16Array(n));
  /** The scope id + 1 of a "%zone" (0: none). Float64: a scope id may be 2^32 - 1. */
  private readonly epScope = new Column((n) => new Float64Array(n));
  private epCount = 0;

  private readonly ipAddrs = new Column(bytes, ADDR_BYTES);
  private readonly ipCidr = new Column(bytes);
  private readonly ipFlags = new Column(bytes);
  /** Allowed IPs so far. */
  private ips = 0;

  // ---- writing (the parser): each returns false for a value it cannot parse ----

  /** Starts a section for the key in b[s .. e) (64 hex digits). */
  add(b: Uint8Array, s: number, e: number): boolean {
    const i = this.length;
    if (!parseKeyInto(b, s, e, this.keys.chunk(i), this.keys.offset(i))) return false;
    this.flags.set(i, 0);
    this.psk.set(i, NONE);
    this.ep.set(i, NONE);
    this.keepaliveSecs.set(i, NONE);
    this.ipStart.set(i, this.ips);
    this.length = i + 1;
    return true;
  }

  setRemove(): void {
    this.setFlag(REMOVE);
  }

  setUpdateOnly(): void {
    this.setFlag(UPDATE_ONLY);
  }

  /**
   * replace_allowed_ips=true. Earlier allowed_ip lines of this section would be wiped by the
   * replace: they are dropped. (One side effect is lost: in wireguard-go such a prefix, taken
   * from another peer on insertion, is then gone from both; `wg` always sends the replace first.)
   */
  setReplaceAllowedIps(): void {
    this.setFlag(REPLACE_ALLOWED_IPS);
    this.ips = this.ipStart.get(this.length - 1);
  }

  private setFlag(flag: number): void {
    const i = this.length - 1;
    this.flags.set(i, this.flags.get(i) | flag);
  }

  /** The preshared key in b[s .. e); a second one in a section replaces the first. */
  setPresharedKey(b: Uint8Array, s: number, e: number): boolean {
    const i = this.length - 1;
    const row = this.psk.get(i) === NONE ? this.pskCount : this.psk.get(i);
    if (!parseKeyInto(b, s, e, this.psks.chunk(row), this.psks.offset(row))) return false;
    if (row === this.pskCount) this.pskCount++;
    this.psk.set(i, row);
    return true;
  }

  setEndpoint(endpoint: Endpoint): void {
    const i = this.length - 1;
    let row = this.ep.get(i);
    if (row === NONE) {
      row = this.epCount++;
      this.ep.set(i, row);
    }
    this.epAddr.chunk(row).set(endpoint.addr, this.epAddr.offset(row));
    this.epFamily.set(row, endpoint.family);
    this.epPort.set(row, endpoint.port);
    this.epScope.set(row, endpoint.scopeId === undefined ? 0 : endpoint.scopeId + 1);
  }

  setKeepalive(seconds: number): void {
    this.keepaliveSecs.set(this.length - 1, seconds);
  }

  /** Adds (or with `remove`, removes) the prefix in b[s .. e) to the section's allowed IPs. */
  addAllowedIp(b: Uint8Array, s: number, e: number, remove: boolean): boolean {
    const j = this.ips;
    const r = parsePrefixInto(b, s, e, this.ipAddrs.chunk(j), this.ipAddrs.offset(j));
    if (r < 0) return false;
    this.ipCidr.set(j, r & (PREFIX_V6 - 1));
    this.ipFlags.set(j, (r >= PREFIX_V6 ? IP_V6 : 0) | (remove ? IP_REMOVE : 0));
    this.ips = j + 1;
    return true;
  }

  /** Zeroes the preshared keys, once the request is applied or refused. */
  wipe(): void {
    this.psks.wipe();
  }

  // ---- reading (the device), by section index i or allowed-IP index j ----

  publicKey(i: number): Uint8Array {
    return this.keys.row(i);
  }

  /** remove=true: remove the peer (nothing if unknown) and ignore the rest of the section. */
  removes(i: number): boolean {
    return (this.flags.get(i) & REMOVE) !== 0;
  }

  /** update_only=true: change the peer only if it exists. */
  updateOnly(i: number): boolean {
    return (this.flags.get(i) & UPDATE_ONLY) !== 0;
  }

  /** replace_allowed_ips=true: applied before the section's allowed IPs. */
  replacesAllowedIps(i: number): boolean {
    return (this.flags.get(i) & REPLACE_ALLOWED_IPS) !== 0;
  }

  /** All zeros clears the preshared key. */
  presharedKey(i: number): Uint8Array | undefined {
    const row = this.psk.get(i);
    return row === NONE ? undefined : this.psks.row(row);
  }

  endpoint(i: number): Endpoint | undefined {
    const row = this.ep.get(i);
    if (row === NONE) return undefined;
    const family = this.epFamily.get(row) as 4 | 6;
    const ep: Endpoint = { family, addr: this.epAddr.row(row, family === 4 ? 4 : 16), port: this.epPort.get(row) };
    const scope = this.epScope.get(row);
    if (scope !== 0) ep.scopeId = scope - 1;
    return ep;
  }

  /** persistent_keepalive_interval, in seconds (0 turns it off). */
  keepalive(i: number): number | undefined {
    const v = this.keepaliveSecs.get(i);
    return v === NONE ? undefined : v;
  }

  /**
   * The section's allowed IPs are those from allowedIpStart(i) to allowedIpEnd(i) (excluded),
   * in request order, applied after replace_allowed_ips.
   */
  allowedIpStart(i: number): number {
    return this.ipStart.get(i);
  }

  allowedIpEnd(i: number): number {
    return i + 1 < this.length ? this.ipStart.get(i + 1) : this.ips;
  }

  /** 4 or 16 bytes, host bits cleared. */
  allowedIpAddr(j: number): Uint8Array {
    return this.ipAddrs.row(j, (this.ipFlags.get(j) & IP_V6) !== 0 ? 16 : 4);
  }

  allowedIpCidr(j: number): number {
    return this.ipCidr.get(j);
  }

  /**
   * `allowed_ip=-CIDR`: remove the prefix from this peer only; otherwise it moves to this peer
   * from any other that holds it (wireguard-go, kernel).
   */
  allowedIpRemoves(j: number): boolean {
    return (this.ipFlags.get(j) & IP_REMOVE) !== 0;
  }
}
