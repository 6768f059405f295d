// The `public_key=` sections of a parsed `set` request, packed into a few typed arrays that
// grow by doubling: keys, prefixes and endpoint addresses in byte arenas, a section's flags,
// optional values and first allowed IP in per-section columns, indices where an object graph
// would hold references. A million-peer request held as objects (a section object, its
// allowed-IPs array, a prefix object and a Uint8Array view each) was ~400 bytes of heap per
// peer kept alive through the whole apply: the old generation's collector then had millions
// more objects to mark while the device created its own, and its pauses delayed handshakes
// answered meanwhile. Here the GC sees a dozen objects whatever the size of the request.
//
// The parser (protocol.ts) appends a section, then writes the lines that follow into it; it
// hands values over as the bytes they were read from, parsed straight into the arenas. The
// device reads sections by index; the readers that return arrays return views of the arenas,
// valid until the next append: copy what you keep.
import type { Endpoint } from './types.js';
import { ADDR_BYTES, PREFIX_V6, parseKeyInto, parsePrefixInto } from './text.js';

const KEY_BYTES = 32;
const MIN_ROWS = 16;

/** Section flags. */
const REMOVE = 1;
const UPDATE_ONLY = 2;
const REPLACE_ALLOWED_IPS = 4;
/** Allowed-IP flags. */
const IP_V6 = 1;
const IP_REMOVE = 2;
/** Absent optional value of a section (preshared key, endpoint, keepalive). */
const NONE = -1;

type Column = Uint8Array | Uint16Array | Int32Array | Float64Array;

/** `a` with room for `rows` rows of `width` elements: itself, or a copy twice as long. */
function room<T extends Column>(a: T, rows: number, width = 1): T {
  if (rows * width <= a.length) return a;
  const grown = new (a.constructor as new (n: number) => T)(Math.max(rows, 2 * (a.length / width)) * width);
  grown.set(a);
  return grown;
}

export class PeerOps {
  /** Sections so far. */
  length = 0;
  private keys = new Uint8Array(MIN_ROWS * KEY_BYTES);
  private flags = new Uint8Array(MIN_ROWS);
  /** Per section: a row of `psks` / `epAddr`..., the keepalive interval, or NONE. */
  private psk = new Int32Array(MIN_ROWS);
  private ep = new Int32Array(MIN_ROWS);
  private keepaliveSecs = new Int32Array(MIN_ROWS);
  /** The section's first allowed IP; its last is before the next section's first (or `ips`). */
  private ipStart = new Int32Array(MIN_ROWS);

  private psks = new Uint8Array(0);
  private pskCount = 0;

  private epAddr = new Uint8Array(0);
  private epFamily = new Uint8Array(0);
  private epPort = new Uint16Array(0);
  /** The scope id + 1 of a "%zone" (0: none). Float64: a scope id may be 2^32 - 1. */
  private epScope = new Float64Array(0);
  private epCount = 0;

  private ipAddrs = new Uint8Array(0);
  private ipCidr = new Uint8Array(0);
  private ipFlags = new Uint8Array(0);
  /** Allowed IPs so far. */
  private ips = 0;

  // ---- writing (the parser): each returns false for a value it cannot parse ----

  /** Starts a section for the key in b[s .. e) (64 hex digits). */
  add(b: Uint8Array, s: number, e: number): boolean {
    const i = this.length;
    this.keys = room(this.keys, i + 1, KEY_BYTES);
    if (!parseKeyInto(b, s, e, this.keys, i * KEY_BYTES)) return false;
    if (i >= this.flags.length) {
      this.flags = room(this.flags, i + 1);
      this.psk = room(this.psk, i + 1);
      this.ep = room(this.ep, i + 1);
      this.keepaliveSecs = room(this.keepaliveSecs, i + 1);
      this.ipStart = room(this.ipStart, i + 1);
    }
    this.flags[i] = 0;
    this.psk[i] = NONE;
    this.ep[i] = NONE;
    this.keepaliveSecs[i] = NONE;
    this.ipStart[i] = this.ips;
    this.length = i + 1;
    return true;
  }

  setRemove(): void {
    this.flags[this.length - 1]! |= REMOVE;
  }

  setUpdateOnly(): void {
    this.flags[this.length - 1]! |= UPDATE_ONLY;
  }

  /**
   * replace_allowed_ips=true. Earlier allowed_ip lines of this section would be wiped by the
   * replace: they are dropped. (One side effect is lost: in wireguard-go such a prefix, taken
   * from another peer on insertion, is then gone from both; `wg` always sends the replace first.)
   */
  setReplaceAllowedIps(): void {
    const i = this.length - 1;
    this.flags[i]! |= REPLACE_ALLOWED_IPS;
    this.ips = this.ipStart[i]!;
  }

  /** The preshared key in b[s .. e); a second one in a section replaces the first. */
  setPresharedKey(b: Uint8Array, s: number, e: number): boolean {
    const i = this.length - 1;
    let row = this.psk[i]!;
    if (row === NONE) {
      row = this.pskCount;
      const old = this.psks;
      this.psks = room(old, row + 1, KEY_BYTES);
      if (this.psks !== old) old.fill(0);
    }
    if (!parseKeyInto(b, s, e, this.psks, row * KEY_BYTES)) return false;
    if (row === this.pskCount) this.pskCount++;
    this.psk[i] = row;
    return true;
  }

  setEndpoint(endpoint: Endpoint): void {
    const i = this.length - 1;
    let row = this.ep[i]!;
    if (row === NONE) {
      row = this.epCount++;
      this.epAddr = room(this.epAddr, row + 1, ADDR_BYTES);
      this.epFamily = room(this.epFamily, row + 1);
      this.epPort = room(this.epPort, row + 1);
      this.epScope = room(this.epScope, row + 1);
      this.ep[i] = row;
    }
    this.epAddr.set(endpoint.addr, row * ADDR_BYTES);
    this.epFamily[row] = endpoint.family;
    this.epPort[row] = endpoint.port;
    this.epScope[row] = endpoint.scopeId === undefined ? 0 : endpoint.scopeId + 1;
  }

  setKeepalive(seconds: number): void {
    this.keepaliveSecs[this.length - 1] = seconds;
  }

  /** Adds (or with `remove`, removes) the prefix in b[s .. e) to the section's allowed IPs. */
  addAllowedIp(b: Uint8Array, s: number, e: number, remove: boolean): boolean {
    const j = this.ips;
    if (j >= this.ipCidr.length) {
      this.ipAddrs = room(this.ipAddrs, j + 1, ADDR_BYTES);
      this.ipCidr = room(this.ipCidr, j + 1);
      this.ipFlags = room(this.ipFlags, j + 1);
    }
    const r = parsePrefixInto(b, s, e, this.ipAddrs, j * ADDR_BYTES);
    if (r < 0) return false;
    this.ipCidr[j] = r & (PREFIX_V6 - 1);
    this.ipFlags[j] = (r >= PREFIX_V6 ? IP_V6 : 0) | (remove ? IP_REMOVE : 0);
    this.ips = j + 1;
    return true;
  }

  /** Zeroes the preshared keys, once the request is applied or refused. */
  wipe(): void {
    this.psks.fill(0);
  }

  // ---- reading (the device), by section index i or allowed-IP index j ----

  publicKey(i: number): Uint8Array {
    return this.keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES);
  }

  /** remove=true: remove the peer (nothing if unknown) and ignore the rest of the section. */
  removes(i: number): boolean {
    return (this.flags[i]! & REMOVE) !== 0;
  }

  /** update_only=true: change the peer only if it exists. */
  updateOnly(i: number): boolean {
    return (this.flags[i]! & UPDATE_ONLY) !== 0;
  }

  /** replace_allowed_ips=true: applied before the section's allowed IPs. */
  replacesAllowedIps(i: number): boolean {
    return (this.flags[i]! & REPLACE_ALLOWED_IPS) !== 0;
  }

  /** All zeros clears the preshared key. */
  presharedKey(i: number): Uint8Array | undefined {
    const row = this.psk[i]!;
    return row === NONE ? undefined : this.psks.subarray(row * KEY_BYTES, (row + 1) * KEY_BYTES);
  }

  endpoint(i: number): Endpoint | undefined {
    const row = this.ep[i]!;
    if (row === NONE) return undefined;
    const family = this.epFamily[row] as 4 | 6;
    const at = row * ADDR_BYTES;
    const ep: Endpoint = { family, addr: this.epAddr.subarray(at, at + (family === 4 ? 4 : 16)), port: this.epPort[row]! };
    if (this.epScope[row] !== 0) ep.scopeId = this.epScope[row]! - 1;
    return ep;
  }

  /** persistent_keepalive_interval, in seconds (0 turns it off). */
  keepalive(i: number): number | undefined {
    const v = this.keepaliveSecs[i]!;
    return v === NONE ? undefined : v;
  }

  /**
   * The section's allowed IPs are those from allowedIpStart(i) to allowedIpEnd(i) (excluded),
   * in request order, applied after replace_allowed_ips.
   */
  allowedIpStart(i: number): number {
    return this.ipStart[i]!;
  }

  allowedIpEnd(i: number): number {
    return i + 1 < this.length ? this.ipStart[i + 1]! : this.ips;
  }

  /** 4 or 16 bytes, host bits cleared. */
  allowedIpAddr(j: number): Uint8Array {
    return this.ipAddrs.subarray(j * ADDR_BYTES, j * ADDR_BYTES + ((this.ipFlags[j]! & IP_V6) !== 0 ? 16 : 4));
  }

  allowedIpCidr(j: number): number {
    return this.ipCidr[j]!;
  }

  /**
   * `allowed_ip=-CIDR`: remove the prefix from this peer only; otherwise it moves to this peer
   * from any other that holds it (wireguard-go, kernel).
   */
  allowedIpRemoves(j: number): boolean {
    return (this.ipFlags[j]! & IP_REMOVE) !== 0;
  }
}
