// The UAPI configuration protocol (what `wg` speaks to a userspace daemon), without I/O: a
// `UapiSession` takes the bytes of one connection as they arrive and returns the replies
// through a callback; the device is reached only through `UapiDevice` (types.ts).
//
// Behaviour follows wireguard-go (device/uapi.go, ipc/uapi_unix.go) as checked against
// Debian's wireguard-go 0.0.20220316, with one deliberate difference: a `set` request is
// parsed and validated whole and only then applied, so a bad line anywhere means an errno and
// no change at all (wireguard-go applies line by line and stops at the bad one). The device may
// apply a large request across event-loop turns (its `apply` returns a promise): the reply, and
// the connection's next request, wait for it; a `get` also waits for a set of another
// connection still being applied (`UapiDevice.setting`), as wireguard-go's reads wait for its lock.
//
// Errno table (the wire carries the negated value, "errno=-22"; `wg` negates it back):
//   0   success
//   5   EIO        a line longer than 65535 bytes (bufio.Scanner's limit)
//   90  EMSGSIZE   a `set` request longer than our cap (maxSetBytes; wireguard-go has none):
//                  refused whole, nothing applied; the rest of it is read and dropped, then
//                  the connection closed
//   22  EINVAL     any bad value or key: hex key not 64 hex digits, number out of range or not
//                  decimal, bad endpoint or CIDR, unknown key, a peer key before public_key,
//                  a device key after it, a flag other than "true", protocol_version other
//                  than 1, `get=1` followed by something else than an empty line; from the
//                  device: too many peers
//   71  EPROTO     a line without '='
//   98  EADDRINUSE from the device: the listen port cannot be bound or the fwmark set
//   55  ENOANO     the device failed unexpectedly (wireguard-go's IpcErrorUnknown)
//   -   no reply, connection closed: an operation line other than "get=1" / "set=1"
// Reading the rest of that table off wireguard-go: update_only or remove for an unknown peer
// is 0; `private_key` of 64 zeros removes the key; keys are accepted in either case and
// private keys are clamped; listen_port and persistent_keepalive_interval are 0..65535,
// fwmark 0..2^32-1 (0 removes the mark), leading zeros allowed, no sign; endpoints are
// literal "a.b.c.d:port" or "[v6%zone]:port", never host names; CIDR host bits are cleared.
// Where Go versions differ we follow current Go: a prefix length with a sign or a leading
// zero ("/+8", "/08") is EINVAL (Go >= 1.22; Debian's build accepts it), and we accept
// `allowed_ip=-CIDR` (wireguard-go >= 0.0.20250522; Debian's rejects it).
import {
  ByteSlab, CR, ChunkWriter, NL, asciiBytes, equalsAscii, indexOfByte, parseCounter, parseEndpoint, parseKey, parsePrefix, parseUint,
} from './text.js';
import { PeerOps } from './peerops.js';
import type { DeviceState, PeerState, SetRequest, UapiDevice } from './types.js';

export const UAPI_EIO = 5;
export const UAPI_EINVAL = 22;
export const UAPI_ENOANO = 55;
export const UAPI_EPROTO = 71;
export const UAPI_EMSGSIZE = 90;
export const UAPI_EADDRINUSE = 98;

/** Longest line bufio.Scanner (and so wireguard-go) reads, newline excluded. */
export const MAX_LINE_BYTES = 65535;
/**
 * The cap on one `set` request scales with the peers the device can hold. `wg setconf` sends
 * 126 bytes for a peer with one allowed IP, 156 with an IPv4 and an IPv6 one, 235 with a
 * preshared key too, 323 with an IPv6 endpoint and a keepalive as well (measured). Parsed, a
 * request takes at most ~1.2 bytes per byte of it (packed sections, peerops.ts: the shortest
 * allowed_ip line, 16 bytes, takes 18) until it is applied, so the cap is what bounds the
 * memory a mistaken or hostile request can take: ~40 MB at the default, and a request
 * over the cap is refused as it arrives, before it is all read.
 */
export const SET_BYTES_PER_PEER = 256;
/** The cap's floor: at the default 65,536 peers, room for 512 bytes each, or one peer's 1.4M allowed IPs. */
export const MIN_SET_BYTES = 32 << 20;

/** The `set` cap for a device of `peerCapacity` peers: 32 MiB up to 131,072 peers, 256 MiB at 2^20. */
export function maxSetBytes(peerCapacity: number): number {
  return Math.max(MIN_SET_BYTES, peerCapacity * SET_BYTES_PER_PEER);
}

export interface UapiSessionOptions {
  maxLineBytes?: number;
  /** Cap on one `set` request (default MIN_SET_BYTES; see maxSetBytes). */
  maxRequestBytes?: number;
  /** Told when a `set` request is refused for its size (the client gets EMSGSIZE). */
  onTooLarge?: (limit: number) => void;
  /** Interface name → index for an endpoint's "%zone"; numeric zones work without it. */
  resolveZone?: (name: string) => number | undefined;
  /** Told about a device that threw (the client gets errno 55). */
  onError?: (err: unknown) => void;
  /**
   * Called when the session finished later than `feed` or `end` returned: a `get` reply written
   * across turns ended, and the input that waited behind it closed the session (or the client
   * had ended). The connection should be closed then.
   */
  onClose?: () => void;
  /**
   * Whether the transport takes more output now; when not, `whenWritable` is called with the
   * continuation. Without them a long reply is produced as fast as the steps run.
   */
  writable?: () => boolean;
  whenWritable?: (resume: () => void) => void;
  /** Called when a `get` reply written across turns is out and `busy` turns false again. */
  onIdle?: () => void;
}

const encoder = new TextEncoder();

const KEYS = [
  'public_key', 'allowed_ip', 'endpoint', 'preshared_key', 'persistent_keepalive_interval', 'replace_allowed_ips',
  'protocol_version', 'update_only', 'remove', 'private_key', 'listen_port', 'fwmark', 'replace_peers',
  'last_handshake_time_sec', 'last_handshake_time_nsec', 'tx_bytes', 'rx_bytes', 'errno',
] as const;
type Key = (typeof KEYS)[number] | '';

/** The key of a line as one of the known constants, '' for any other: no string is built. */
function keyOf(b: Uint8Array, s: number, e: number): Key {
  for (const k of KEYS) if (equalsAscii(b, s, e, k)) return k;
  return '';
}

// ---- set ----

/** Collects one `set` request; the first bad line fixes the errno and the rest is ignored. */
class SetBuilder {
  readonly req: SetRequest = { replacePeers: false, peers: new PeerOps() };
  errno = 0;
  /** Holds the private key and, until it is copied into the request, an endpoint. */
  private readonly slab = new ByteSlab();

  constructor(private readonly resolveZone?: (name: string) => number | undefined) {}

  line(b: Uint8Array, s: number, e: number): void {
    if (this.errno === 0) this.errno = this.parse(b, s, e);
  }

  /** Zeroes the keys the request carries (the device has copied what it keeps). */
  wipe(): void {
    this.req.privateKey?.fill(0);
    this.req.peers.wipe();
  }

  private parse(b: Uint8Array, s: number, e: number): number {
    const eq = indexOfByte(b, 61, s, e);
    if (eq < 0) return UAPI_EPROTO;
    const key = keyOf(b, s, eq);
    const v = eq + 1;
    if (key === 'public_key') return this.req.peers.add(b, v, e) ? 0 : UAPI_EINVAL;
    return this.req.peers.length === 0 ? this.device(key, b, v, e) : this.peerLine(this.req.peers, key, b, v, e);
  }

  private device(key: Key, b: Uint8Array, s: number, e: number): number {
    const req = this.req;
    switch (key) {
      case 'private_key': {
        const k = parseKey(b, s, e, this.slab);
        if (k === null) return UAPI_EINVAL;
        if (k.every((x) => x === 0)) {
          req.privateKey = null;
        } else {
          k[0]! &= 248;
          k[31] = (k[31]! & 127) | 64;
          req.privateKey = k;
        }
        return 0;
      }
      case 'listen_port': {
        const port = parseUint(b, s, e, 0xffff);
        if (port < 0) return UAPI_EINVAL;
        req.listenPort = port;
        return 0;
      }
      case 'fwmark': {
        const mark = parseUint(b, s, e, 0xffffffff);
        if (mark < 0) return UAPI_EINVAL;
        req.fwmark = mark;
        return 0;
      }
      case 'replace_peers':
        if (!equalsAscii(b, s, e, 'true')) return UAPI_EINVAL;
        req.replacePeers = true;
        return 0;
      default:
        return UAPI_EINVAL;
    }
  }

  /** A line of the last section of `ops`. */
  private peerLine(ops: PeerOps, key: Key, b: Uint8Array, s: number, e: number): number {
    switch (key) {
      case 'update_only':
        if (!equalsAscii(b, s, e, 'true')) return UAPI_EINVAL;
        ops.setUpdateOnly();
        return 0;
      case 'remove':
        if (!equalsAscii(b, s, e, 'true')) return UAPI_EINVAL;
        ops.setRemove();
        return 0;
      case 'preshared_key':
        return ops.setPresharedKey(b, s, e) ? 0 : UAPI_EINVAL;
      case 'endpoint': {
        const ep = parseEndpoint(b, s, e, this.slab, this.resolveZone);
        if (ep === null) return UAPI_EINVAL;
        ops.setEndpoint(ep);
        return 0;
      }
      case 'persistent_keepalive_interval': {
        const secs = parseUint(b, s, e, 0xffff);
        if (secs < 0) return UAPI_EINVAL;
        ops.setKeepalive(secs);
        return 0;
      }
      case 'replace_allowed_ips':
        if (!equalsAscii(b, s, e, 'true')) return UAPI_EINVAL;
        ops.setReplaceAllowedIps();
        return 0;
      case 'allowed_ip': {
        const remove = s < e && b[s] === 45;
        return ops.addAllowedIp(b, remove ? s + 1 : s, e, remove) ? 0 : UAPI_EINVAL;
      }
      case 'protocol_version':
        return equalsAscii(b, s, e, '1') ? 0 : UAPI_EINVAL;
      default:
        return UAPI_EINVAL;
    }
  }
}

function stripCR(b: Uint8Array, s: number, e: number): number {
  return e > s && b[e - 1] === CR ? e - 1 : e;
}

/**
 * Parses the body of a `set` request (the lines after "set=1", with or without the final empty
 * line) without applying it: what a session hands to `device.apply`, or the errno it replies.
 */
export function parseSetRequest(body: string, opts: Pick<UapiSessionOptions, 'resolveZone'> = {}): { errno: number; request: SetRequest } {
  const b = encoder.encode(body);
  const builder = new SetBuilder(opts.resolveZone);
  for (let s = 0; s < b.length; ) {
    const nl = b.indexOf(NL, s);
    const e = stripCR(b, s, nl < 0 ? b.length : nl);
    if (e === s) break;
    builder.line(b, s, e);
    s = nl < 0 ? b.length : nl + 1;
  }
  return { errno: builder.errno, request: builder.req };
}

// ---- get ----

const PRIVATE_KEY = asciiBytes('private_key=');
const LISTEN_PORT = asciiBytes('listen_port=');
const FWMARK = asciiBytes('fwmark=');
const PUBLIC_KEY = asciiBytes('public_key=');
const PRESHARED_KEY = asciiBytes('preshared_key=');
const PROTOCOL_VERSION_LINE = asciiBytes('protocol_version=1\n');
const ENDPOINT = asciiBytes('endpoint=');
const LAST_HANDSHAKE_SEC = asciiBytes('last_handshake_time_sec=');
const LAST_HANDSHAKE_NSEC = asciiBytes('last_handshake_time_nsec=');
const TX_BYTES = asciiBytes('tx_bytes=');
const RX_BYTES = asciiBytes('rx_bytes=');
const KEEPALIVE = asciiBytes('persistent_keepalive_interval=');
const ALLOWED_IP = asciiBytes('allowed_ip=');

function writeNumberLine(w: ChunkWriter, key: Uint8Array, n: number | bigint): void {
  w.line();
  w.bytes(key);
  w.uint(n);
  w.byte(NL);
}

function writeKeyLine(w: ChunkWriter, key: Uint8Array, bytes: Uint8Array): void {
  w.line();
  w.bytes(key);
  w.hex(bytes);
  w.byte(NL);
}

function writePeer(w: ChunkWriter, p: PeerState): void {
  writeKeyLine(w, PUBLIC_KEY, p.publicKey);
  writeKeyLine(w, PRESHARED_KEY, p.presharedKey);
  w.line();
  w.bytes(PROTOCOL_VERSION_LINE);
  if (p.endpoint !== undefined) {
    w.line();
    w.bytes(ENDPOINT);
    w.endpoint(p.endpoint);
    w.byte(NL);
  }
  writeNumberLine(w, LAST_HANDSHAKE_SEC, p.lastHandshakeSec);
  writeNumberLine(w, LAST_HANDSHAKE_NSEC, p.lastHandshakeNsec);
  writeNumberLine(w, TX_BYTES, p.txBytes);
  writeNumberLine(w, RX_BYTES, p.rxBytes);
  writeNumberLine(w, KEEPALIVE, p.persistentKeepaliveInterval);
  for (const ip of p.allowedIps) {
    w.line();
    w.bytes(ALLOWED_IP);
    w.prefix(ip.addr, ip.cidr);
    w.byte(NL);
  }
}

/**
 * A `get` reply, "errno=0" included, in chunks of at most 64 KiB: the device (listen_port and
 * fwmark only when non-zero, private_key only when set) at once, then the peers in steps, so a
 * million-peer reply (~10 s of work) need not block the main thread, which also answers
 * handshakes and runs the timers.
 */
export class GetReply {
  private readonly w: ChunkWriter;
  private readonly peers: Iterator<PeerState>;

  constructor(device: UapiDevice, emit: (chunk: Uint8Array) => void) {
    const w = (this.w = new ChunkWriter(emit));
    const d = device.deviceState();
    if (d.privateKey !== undefined && d.privateKey.some((x) => x !== 0)) writeKeyLine(w, PRIVATE_KEY, d.privateKey);
    if (d.listenPort !== 0) writeNumberLine(w, LISTEN_PORT, d.listenPort);
    if (d.fwmark !== 0) writeNumberLine(w, FWMARK, d.fwmark);
    this.peers = device.peerStates();
  }

  /** Writes peers for about `budgetMs`; true once the whole reply is out. */
  step(budgetMs: number): boolean {
    const until = performance.now() + budgetMs;
    for (let n = 1; ; n++) {
      // The clock is read every 64 peers: a peer costs ~10 µs, a clock read ~0.05 µs.
      if ((n & 63) === 0 && performance.now() > until) return false;
      const r = this.peers.next();
      if (r.done === true) break;
      writePeer(this.w, r.value);
    }
    this.w.line();
    this.w.ascii('errno=0\n\n');
    this.w.flush();
    return true;
  }
}

/** Writes a whole `get` reply at once. */
export function writeGetResponse(device: UapiDevice, emit: (chunk: Uint8Array) => void): void {
  new GetReply(device, emit).step(Infinity);
}

/** Main-thread time one step of a `get` reply may take before yielding a turn. */
const GET_STEP_MS = 5;

/**
 * Reads a `get` reply (ours or another implementation's) back into state, as `wg` does; null
 * when a line is malformed or the reply does not end with "errno=N" and an empty line. The
 * errno comes back positive, as the device reports it ("errno=-22" → 22).
 */
export function parseGetResponse(text: string): { errno: number; device: DeviceState; peers: PeerState[] } | null {
  const device: DeviceState = { listenPort: 0, fwmark: 0 };
  const peers: PeerState[] = [];
  let peer: PeerState | undefined;
  const slab = new ByteSlab();
  const b = encoder.encode(text);
  for (let s = 0; s < b.length; ) {
    const e = b.indexOf(NL, s);
    const eq = e < 0 ? -1 : indexOfByte(b, 61, s, e);
    if (eq < 0) return null;
    const key = keyOf(b, s, eq);
    const v = eq + 1;
    s = e + 1;
    if (key === 'errno') {
      const minus = v < e && b[v] === 45;
      const n = parseUint(b, minus ? v + 1 : v, e, 0x7fffffff);
      if (n < 0 || s + 1 !== b.length || b[s] !== NL) return null;
      return { errno: minus || n === 0 ? n : -n, device, peers };
    }
    if (key === 'public_key') {
      const publicKey = parseKey(b, v, e, slab);
      if (publicKey === null) return null;
      peer = {
        publicKey, presharedKey: slab.take(32), lastHandshakeSec: 0, lastHandshakeNsec: 0,
        txBytes: 0n, rxBytes: 0n, persistentKeepaliveInterval: 0, allowedIps: [],
      };
      peers.push(peer);
    } else if (!(peer === undefined ? readDeviceLine(device, key, b, v, e, slab) : readPeerLine(peer, key, b, v, e, slab))) {
      return null;
    }
  }
  return null;
}

function readDeviceLine(d: DeviceState, key: Key, b: Uint8Array, s: number, e: number, slab: ByteSlab): boolean {
  if (key === 'private_key') {
    const k = parseKey(b, s, e, slab);
    if (k !== null) d.privateKey = k;
    return k !== null;
  }
  if (key === 'listen_port') return (d.listenPort = parseUint(b, s, e, 0xffff)) >= 0;
  if (key === 'fwmark') return (d.fwmark = parseUint(b, s, e, 0xffffffff)) >= 0;
  return false;
}

function readPeerLine(p: PeerState, key: Key, b: Uint8Array, s: number, e: number, slab: ByteSlab): boolean {
  switch (key) {
    case 'preshared_key': {
      const k = parseKey(b, s, e, slab);
      if (k !== null) p.presharedKey = k;
      return k !== null;
    }
    case 'endpoint': {
      const ep = parseEndpoint(b, s, e, slab);
      if (ep !== null) p.endpoint = ep;
      return ep !== null;
    }
    case 'allowed_ip': {
      const prefix = parsePrefix(b, s, e, slab);
      if (prefix !== null) p.allowedIps.push(prefix);
      return prefix !== null;
    }
    case 'protocol_version':
      return equalsAscii(b, s, e, '1');
    case 'last_handshake_time_sec':
      return (p.lastHandshakeSec = parseUint(b, s, e, Number.MAX_SAFE_INTEGER)) >= 0;
    case 'last_handshake_time_nsec':
      return (p.lastHandshakeNsec = parseUint(b, s, e, 999999999)) >= 0;
    case 'tx_bytes':
      return (p.txBytes = parseCounter(b, s, e)) >= 0n;
    case 'rx_bytes':
      return (p.rxBytes = parseCounter(b, s, e)) >= 0n;
    case 'persistent_keepalive_interval':
      return (p.persistentKeepaliveInterval = parseUint(b, s, e, 0xffff)) >= 0;
    default:
      return false;
  }
}

// ---- a connection ----

const OP = 0;
const GET_BLANK = 1;
const SET = 2;
const CLOSED = 3;
/**
 * A `set` refused for its size, its reply sent: the rest of it is read and dropped up to its
 * blank line. `wg` reads the reply only once it has written its whole request; closing at once
 * would kill it with SIGPIPE instead of letting it print the error.
 */
const SKIP = 4;

const OP_LINE_BYTES = 5; // "get=1" and "set=1"

/**
 * One client connection. Requests may arrive split across chunks and several may follow one
 * another; each gets its reply in order. After `feed` returns false the connection must be
 * closed (its last reply, if any, was already sent).
 */
export class UapiSession {
  private state = OP;
  private carry = new Uint8Array(256);
  private carryLen = 0;
  private set: SetBuilder | undefined;
  private setBytes = 0;
  private readonly maxLine: number;
  private readonly maxRequest: number;
  /** A `get` reply in progress; input that arrives meanwhile waits in `queued`. */
  private getting: GetReply | null = null;
  /**
   * A `set` whose apply completes later (applied in steps, or a listen port change), or a `get`
   * waiting for another connection's set; input waits likewise.
   */
  private applying = false;
  private queued: Uint8Array[] = [];
  private endQueued = false;
  /** In SKIP: no byte of the current line seen yet (so a newline would end the request). */
  private skipAtLineStart = false;

  constructor(
    private readonly device: UapiDevice,
    private readonly send: (chunk: Uint8Array) => void,
    private readonly opts: UapiSessionOptions = {},
  ) {
    this.maxLine = opts.maxLineBytes ?? MAX_LINE_BYTES;
    this.maxRequest = opts.maxRequestBytes ?? MIN_SET_BYTES;
  }

  /**
   * A `get` reply is being written across turns, or a `set` is still applying: the transport
   * should stop reading meanwhile.
   */
  get busy(): boolean {
    return this.getting !== null || this.applying;
  }

  feed(chunk: Uint8Array): boolean {
    if (this.busy) {
      // A copy: a Buffer's own slice() would be a view of memory the caller may reuse.
      this.queued.push(Uint8Array.prototype.slice.call(chunk));
      return true;
    }
    let p = 0;
    while (p < chunk.length && this.state !== CLOSED) {
      if (this.state === SKIP) {
        p = this.skip(chunk, p);
        continue;
      }
      if (this.state === GET_BLANK) {
        this.get(chunk[p++] === NL);
        if (this.busy) return this.wait(chunk, p);
        continue;
      }
      const nl = chunk.indexOf(NL, p);
      const end = nl < 0 ? chunk.length : nl;
      // Past a limit the session is closed, or skips the rest of a refused request from `p`.
      if (!this.withinLimits(this.carryLen + end - p, end - p + (nl < 0 ? 0 : 1))) continue;
      if (nl < 0) {
        this.keep(chunk, p, end);
        break;
      }
      if (this.carryLen > 0) {
        this.keep(chunk, p, end);
        this.line(this.carry, 0, this.carryLen);
        this.carryLen = 0;
      } else {
        this.line(chunk, p, end);
      }
      p = nl + 1;
      if (this.busy) return this.wait(chunk, p);
    }
    return this.state !== CLOSED;
  }

  /** Requests are answered in order: the rest of `chunk` from `p` waits for this reply. */
  private wait(chunk: Uint8Array, p: number): boolean {
    if (p < chunk.length) this.queued.push(Uint8Array.prototype.slice.call(chunk, p));
    return true;
  }

  /**
   * The client will send nothing more: a `set` in progress ends here, as in wireguard-go.
   * Returns false while a reply is still to come (`busy`); `onClose` follows it.
   */
  end(): boolean {
    if (this.busy) {
      this.endQueued = true;
      return false;
    }
    if (this.state === SET) {
      const e = stripCR(this.carry, 0, this.carryLen);
      if (e > 0) this.set!.line(this.carry, 0, e);
      this.finishSet();
      if (this.busy) {
        this.endQueued = true;
        return false;
      }
    }
    this.state = CLOSED;
    return true;
  }

  /** The connection is gone: stop a reply in progress. */
  abort(): void {
    this.set?.wipe();
    this.getting = null;
    this.queued = [];
    this.endQueued = false;
    this.state = CLOSED;
  }

  private withinLimits(lineBytes: number, newBytes: number): boolean {
    if (this.state === OP) {
      // No operation is longer: the line can only be invalid, which closes without a reply.
      if (lineBytes > OP_LINE_BYTES) this.state = CLOSED;
    } else if (lineBytes > this.maxLine) {
      this.refuse(UAPI_EIO);
    } else if ((this.setBytes += newBytes) > this.maxRequest) {
      this.opts.onTooLarge?.(this.maxRequest);
      this.refuse(UAPI_EMSGSIZE);
      this.skipAtLineStart = this.carryLen === 0;
      this.carryLen = 0;
      this.state = SKIP;
    }
    return this.state === SET || this.state === OP;
  }

  /** Drops the refused request's bytes from `p` up to its blank line; returns where it stopped. */
  private skip(chunk: Uint8Array, p: number): number {
    for (;;) {
      const nl = chunk.indexOf(NL, p);
      if (nl < 0) {
        // A lone CR so far may still be the start of "\r\n".
        if (p < chunk.length && !(chunk.length - p === 1 && chunk[p] === CR)) this.skipAtLineStart = false;
        return chunk.length;
      }
      if (this.skipAtLineStart && (nl === p || (nl === p + 1 && chunk[p] === CR))) {
        this.state = CLOSED;
        return nl + 1;
      }
      this.skipAtLineStart = true;
      p = nl + 1;
    }
  }

  /** Ends a `set` before its end: the first errno of its lines, if any, is the one reported. */
  private refuse(errno: number): void {
    this.reply(this.set!.errno || errno);
    // What was parsed so far goes now, not when the connection is collected.
    this.set!.wipe();
    this.set = undefined;
    this.state = CLOSED;
  }

  private keep(b: Uint8Array, s: number, e: number): void {
    const need = this.carryLen + e - s;
    if (need > this.carry.length) {
      const bigger = new Uint8Array(Math.max(need, 2 * this.carry.length));
      bigger.set(this.carry.subarray(0, this.carryLen));
      this.carry = bigger;
    }
    this.carry.set(b.subarray(s, e), this.carryLen);
    this.carryLen = need;
  }

  private line(b: Uint8Array, s: number, e: number): void {
    if (this.state === OP) {
      if (equalsAscii(b, s, e, 'get=1')) {
        this.state = GET_BLANK;
      } else if (equalsAscii(b, s, e, 'set=1')) {
        this.state = SET;
        this.set = new SetBuilder(this.opts.resolveZone);
        this.setBytes = 0;
      } else {
        this.state = CLOSED;
      }
      return;
    }
    const end = stripCR(b, s, e);
    if (end === s) this.finishSet();
    else this.set!.line(b, s, end);
  }

  private get(blank: boolean): void {
    this.state = OP;
    if (!blank) {
      this.reply(UAPI_EINVAL);
      return;
    }
    const pending = this.device.setting;
    if (pending !== undefined) {
      // A set (maybe another connection's) is being applied: the reply shows it whole.
      this.applying = true;
      void pending.then(() => {
        this.applying = false;
        if (this.state === CLOSED) return;
        this.startGet();
        if (!this.busy) this.resume();
      });
      return;
    }
    this.startGet();
  }

  private startGet(): void {
    try {
      const reply = new GetReply(this.device, this.send);
      if (!reply.step(GET_STEP_MS)) {
        this.getting = reply;
        setImmediate(() => this.continueGet());
      }
    } catch (err) {
      this.failed(err);
    }
  }

  private continueGet(): void {
    const reply = this.getting;
    if (reply === null) return; // aborted
    if (this.opts.writable?.() === false) {
      this.opts.whenWritable!(() => this.continueGet());
      return;
    }
    try {
      if (!reply.step(GET_STEP_MS)) {
        setImmediate(() => this.continueGet());
        return;
      }
    } catch (err) {
      this.failed(err);
    }
    this.getting = null;
    this.resume();
  }

  /** A reply that took several turns is out: the input that waited for it goes on. */
  private resume(): void {
    if (this.state === CLOSED) return; // aborted meanwhile
    const queued = this.queued;
    this.queued = [];
    for (const chunk of queued) {
      if (this.busy) this.queued.push(chunk);
      else if (!this.feed(chunk)) {
        this.opts.onClose?.();
        return;
      }
    }
    if (this.busy) return;
    if (this.endQueued) {
      this.endQueued = false;
      if (this.end()) this.opts.onClose?.();
    } else this.opts.onIdle?.();
  }

  private finishSet(): void {
    const builder = this.set!;
    this.set = undefined;
    this.state = OP;
    if (builder.errno !== 0) {
      builder.wipe();
      this.reply(builder.errno);
      return;
    }
    let errno: number | Promise<number>;
    try {
      errno = this.device.apply(builder.req);
    } catch (err) {
      builder.wipe();
      this.failed(err);
      return;
    }
    if (typeof errno === 'number') {
      builder.wipe();
      this.reply(errno);
      return;
    }
    this.applying = true;
    errno.then((n) => {
      if (this.state !== CLOSED) this.reply(n);
    }, (err: unknown) => {
      if (this.state !== CLOSED) this.failed(err);
    }).finally(() => {
      builder.wipe();
      this.applying = false;
      this.resume();
    });
  }

  private failed(err: unknown): void {
    this.opts.onError?.(err);
    this.reply(UAPI_ENOANO);
  }

  private reply(errno: number): void {
    this.send(encoder.encode(`errno=${errno === 0 ? 0 : -errno}\n\n`));
  }
}
