/**
 * Batched UDP through koffi: one dual-stack socket per worker, all bound to the listen port
 * with SO_REUSEPORT so the kernel spreads flows across workers; recvmmsg/sendmmsg move up to
 * `capacity` datagrams per syscall between the socket and slots of a slab.
 *
 * Addresses are rows of an `EndpointTable` (./endpoint.ts): `recvBatch` writes packet k's
 * source into row k; `sendBatch` reads each destination from a row.
 *
 * A `UdpBatch` owns, for one socket on one thread, the mmsghdr/iovec/sockaddr_in6/cmsg arrays
 * in an ArrayBuffer that never moves; a batch rewrites slot addresses, lengths and names, and a
 * send also which datagrams each message carries (UDP GSO, ./gso.ts).
 */
import {
  AF_INET6, EACCES, EADDRINUSE, EADDRNOTAVAIL, EAGAIN, EBADF, EINVAL, EIO, EMSGSIZE, ENETUNREACH, ENOTSOCK, EPERM, IPPROTO_IPV6,
  IPV6_V6ONLY, MSG_DONTWAIT, MSG_TRUNC, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOL_SOCKET,
  SO_MARK, SO_RCVBUF, SO_RCVBUFFORCE, SO_REUSEPORT, SO_SNDBUF, SO_SNDBUFFORCE, SysError,
  SlabAddress, addressOf, check, checkBatch, closeFd, errno, libc, writeAddress, MMSGHDR_SIZE, IOVEC_SIZE,
  NAME_SLOT, SOCKADDR_IN6_LEN, recvMessages, setInt,
} from './libc.js';
import { EndpointTable, readSockaddr } from './endpoint.js';
import { SOL_UDP, UDP_SEGMENT, gsoRunLength } from './gso.js';
import { GroReceiver } from './gro.js';
import { CONTROL_SPACE, IPV6_RECVPKTINFO, PKTINFO_SPACE, SEGMENT_SPACE, parseReceived, writePktinfo, writeSegment } from './cmsg.js';

/** Most datagrams one recvBatch/sendBatch call moves (recvmmsg's practical sweet spot). */
export const MAX_BATCH = 128;
/** Default socket buffer size, as wireguard-go (7 MiB). */
export const DEFAULT_BUFFER_BYTES = 7 << 20;

const MMSG = MMSGHDR_SIZE;
const IOV = IOVEC_SIZE;
const NAME = NAME_SLOT;
const CTL = CONTROL_SPACE;
/** Words of a msghdr (x86-64): name, namelen, iov, iovlen, control, controllen, flags; mmsghdr's msg_len. */
export const M_NAME = 0;
export const M_NAMELEN = 2;
export const M_IOV = 4;
export const M_IOVLEN = 6;
export const M_CONTROL = 8;
export const M_CONTROLLEN = 10;
const M_FLAGS = 12;
const M_LEN = 14;

/**
 * What sending from a sticky source may fail with when that address is gone or unusable
 * (ip_route_output: EINVAL; ip6_datagram_send_ctl: EINVAL; no route: ENETUNREACH): forget the
 * source and send again from the routed address, as the kernel does.
 */
export function sourceRefused(e: number): boolean {
  return e === EINVAL || e === EADDRNOTAVAIL || e === ENETUNREACH;
}

/** A sockaddr_in6 for row `row` (or the wildcard address ::, with `port`, when `table` is null). */
function sockaddr(table: EndpointTable | null, row: number, port: number): Uint8Array {
  const sa = new Uint8Array(new ArrayBuffer(SOCKADDR_IN6_LEN));
  sa[0] = AF_INET6;
  const p = table === null ? port : table.port[row]!;
  sa[2] = p >>> 8;
  sa[3] = p & 0xff;
  if (table !== null) sa.set(table.addr.subarray(16 * row, 16 * row + 16), 8);
  return sa;
}

/** Sets SO_MARK (the fwmark; 0 clears it). Returns 0 or -errno (-EPERM without CAP_NET_ADMIN). */
export function setMark(fd: number, mark: number): number {
  return setInt(fd, SOL_SOCKET, SO_MARK, mark | 0);
}

/** The port `fd` is bound to. Throws SysError. */
export function localPort(fd: number): number {
  const sa = new Uint8Array(new ArrayBuffer(SOCKADDR_IN6_LEN));
  check(libc.getsockname(fd, sa, Uint32Array.of(SOCKADDR_IN6_LEN)), 'getsockname');
  return (sa[2]! << 8) | sa[3]!;
}

/** Options for `openUdpSockets`. */
export interface UdpOptions {
  /** SO_RCVBUF/SO_SNDBUF target; forced past rmem_max/wmem_max when CAP_NET_ADMIN allows. */
  readonly bufferBytes?: number;
  /** SO_MARK for every socket (needs CAP_NET_ADMIN). */
  readonly fwmark?: number;
}

function dualStackSocket(reusePort: boolean, bufferBytes: number): number {
  const fd = check(libc.socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), 'socket(AF_INET6, SOCK_DGRAM)');
  try {
    check(setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0), 'IPV6_V6ONLY=0');
    if (reusePort) check(setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1), 'SO_REUSEPORT');
    // The local address of each datagram (IPv4 ones v4-mapped), for the sticky source.
    check(setInt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1), 'IPV6_RECVPKTINFO');
    if (setInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, bufferBytes) < 0) setInt(fd, SOL_SOCKET, SO_RCVBUF, bufferBytes);
    if (setInt(fd, SOL_SOCKET, SO_SNDBUFFORCE, bufferBytes) < 0) setInt(fd, SOL_SOCKET, SO_SNDBUF, bufferBytes);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  return fd;
}

function bindOrThrow(fd: number, port: number): void {
  if (libc.bind(fd, sockaddr(null, 0, port), SOCKADDR_IN6_LEN) === 0) return;
  const e = errno();
  const hint = e === EADDRINUSE ? ' (port in use)' : e === EPERM || e === EACCES ? ' (privileged port)' : '';
  throw new SysError(`bind UDP [::]:${port}${hint}`, e);
}

/**
 * Opens `count` non-blocking dual-stack UDP sockets sharing one port with SO_REUSEPORT, one per
 * worker. Port 0 lets the kernel pick; the others then join the port it picked. A nonzero
 * port is first probed with a plain bind, so a port held by anyone (another daemon with
 * SO_REUSEPORT included) fails with EADDRINUSE instead of silently sharing its traffic.
 * Throws SysError with every fd closed on failure.
 */
export function openUdpSockets(port: number, count: number, options: UdpOptions = {}): { fds: number[]; port: number } {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new RangeError(`bad UDP port ${port}`);
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`socket count must be a positive integer, got ${count}`);
  const bufferBytes = options.bufferBytes ?? DEFAULT_BUFFER_BYTES;
  const fds: number[] = [];
  try {
    if (port !== 0) {
      const probe = dualStackSocket(false, 0);
      fds.push(probe);
      bindOrThrow(probe, port);
      fds.pop();
      closeFd(probe);
    }
    for (let i = 0; i < count; i++) {
      const fd = dualStackSocket(true, bufferBytes);
      fds.push(fd);
      bindOrThrow(fd, port);
      if (port === 0) port = localPort(fd);
      if (options.fwmark !== undefined) {
        const r = setMark(fd, options.fwmark);
        if (r < 0) throw new SysError(`SO_MARK ${options.fwmark}`, -r);
      }
    }
  } catch (err) {
    fds.forEach(closeFd);
    throw err;
  }
  return { fds, port };
}

/**
 * Writes a sockaddr_in6 for row `row` of `to` at word `s` of `u32` (family, port big-endian,
 * flowinfo, address, scope id).
 */
export function writeName(u32: Uint32Array, s: number, to: EndpointTable, row: number): void {
  const p = to.port[row]!;
  u32[s] = AF_INET6 | ((p >>> 8) << 16) | ((p & 0xff) << 24);
  u32[s + 1] = 0;
  u32[s + 2] = to.addr32[4 * row]!;
  u32[s + 3] = to.addr32[4 * row + 1]!;
  u32[s + 4] = to.addr32[4 * row + 2]!;
  u32[s + 5] = to.addr32[4 * row + 3]!;
  u32[s + 6] = 0;
}

/**
 * One thread's batch machinery for one socket fd. Construct one per worker from the fd number;
 * never share an instance between threads.
 *
 * Receive and send have their own mmsghdr arrays: a receive message k always points at iovec k
 * and name k, written once, while a send message points at the iovec and name of the first
 * datagram of its run, because with UDP GSO one message carries a run of datagrams (one iovec
 * each, straight from their slab slots) plus a UDP_SEGMENT cmsg.
 */
export class UdpBatch {
  private readonly bytes: Uint8Array;
  private readonly u32: Uint32Array;
  private readonly base: number;
  /** The send messages as a view, the cheapest pointer to hand koffi for a batch's first call. */
  private readonly sendMsgs: Uint8Array;
  /** Address of each send mmsghdr, so sendmmsg can resume mid-batch without a subarray. */
  private readonly sendMsgAddr: bigint[] = [];
  private readonly sendAt: number;
  private readonly iovAt: number;
  private readonly nameAt: number;
  private readonly recvCtlAt: number;
  private readonly sendCtlAt: number;
  /** Per send message: its first datagram and how many it carries. */
  private readonly msgFirst: Uint32Array;
  private readonly msgCount: Uint32Array;
  private readonly slab = new SlabAddress();
  private gsoOn: boolean;
  private readonly gro: GroReceiver | null;
  /**
   * After a sendBatch: datagram k's sticky source was refused by the kernel and cleared in its
   * row of `to` (the caller forgets it for the peer too); `sourcesRefused` counts them.
   */
  readonly sourceRefused: Uint8Array;
  sourcesRefused = 0;
  /** The last plain receive filled the batch (see `pending`). */
  private full = true;

  /**
   * `offload`: send runs of datagrams with UDP_SEGMENT when the kernel has it; with `groAreaAt`,
   * the offset of GRO_AREA_BYTES of contiguous slab reserved for this socket, also receive
   * with UDP_GRO (./gro.ts).
   */
  constructor(readonly fd: number, readonly capacity: number = MAX_BATCH, offload = false, groAreaAt = -1) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1024) throw new RangeError(`bad batch capacity ${capacity}`);
    this.bytes = new Uint8Array(new ArrayBuffer(capacity * (2 * MMSG + IOV + NAME + 2 * CTL)));
    this.u32 = new Uint32Array(this.bytes.buffer);
    this.sendAt = capacity * MMSG;
    this.iovAt = 2 * capacity * MMSG;
    this.nameAt = this.iovAt + capacity * IOV;
    this.recvCtlAt = this.nameAt + capacity * NAME;
    this.sendCtlAt = this.recvCtlAt + capacity * CTL;
    this.sendMsgs = this.bytes.subarray(this.sendAt);
    this.msgFirst = new Uint32Array(capacity);
    this.msgCount = new Uint32Array(capacity);
    this.sourceRefused = new Uint8Array(capacity);
    const base = (this.base = addressOf(this.bytes));
    for (let k = 0; k < capacity; k++) {
      const m = (k * MMSG) >> 2;
      writeAddress(this.u32, m + M_NAME, base + this.nameAt + k * NAME);
      writeAddress(this.u32, m + M_IOV, base + this.iovAt + k * IOV);
      this.u32[m + M_IOVLEN] = 1;
      writeAddress(this.u32, m + M_CONTROL, base + this.recvCtlAt + k * CTL);
      this.sendMsgAddr.push(BigInt(base + this.sendAt + k * MMSG));
    }
    // Setting the socket's default segment size to 0 (none) is harmless and fails only on
    // kernels without UDP GSO (before 4.18): the probe.
    this.gsoOn = offload && setInt(fd, SOL_UDP, UDP_SEGMENT, 0) === 0;
    this.gro = offload && groAreaAt >= 0 && GroReceiver.enable(fd) ? new GroReceiver(fd, groAreaAt) : null;
  }

  /**
   * After recvBatch: whether datagrams may still be waiting, so receiving again before sleeping
   * in poll is worth a syscall (the last receive filled the batch, or coalesced segments are
   * left to cut). False once a receive came back short: the socket was empty then.
   */
  get pending(): boolean {
    return this.gro !== null ? this.gro.pending : this.full;
  }

  /** Whether sends still use UDP GSO (off after the kernel refused it with EIO). */
  get gso(): boolean {
    return this.gsoOn;
  }

  /**
   * Receives up to `max` datagrams without blocking: datagram k goes to
   * `slab[offsets[k] ..+ maxLen)`, its length to `lens[k]` (-EMSGSIZE if it was truncated:
   * drop it), its source and the local address it arrived on to row k of `from`. Returns the
   * count (0 when nothing waits) or -errno. With UDP GRO, datagrams longer than `maxLen` go to
   * the `large` buffers while they last (see GroReceiver.recvBatch).
   */
  recvBatch(slab: Uint8Array, offsets: Uint32Array, maxLen: number, lens: Int32Array, from: EndpointTable, max: number, large?: LargeBuffers): number {
    if (max > this.capacity || max > from.capacity) throw new RangeError(`batch of ${max} exceeds capacity`);
    checkBatch(offsets, lens, max, maxLen);
    if (this.gro !== null) return this.gro.recvBatch(slab, offsets, maxLen, lens, from, max, large);
    const base = this.slab.of(slab);
    const u32 = this.u32;
    for (let k = 0; k < max; k++) {
      const off = offsets[k]!;
      if (off + maxLen > slab.byteLength) throw new RangeError(`slot ${off}+${maxLen} outside the slab`);
      const v = (this.iovAt + k * IOV) >> 2;
      writeAddress(u32, v, base + off);
      u32[v + 2] = maxLen;
      const m = (k * MMSG) >> 2;
      u32[m + M_NAMELEN] = SOCKADDR_IN6_LEN; // shrunk by the last call
      u32[m + M_CONTROLLEN] = CTL;
    }
    const n = recvMessages(this.fd, this.bytes, max);
    this.full = n >= max;
    for (let k = 0; k < n; k++) {
      const m = (k * MMSG) >> 2;
      lens[k] = (u32[m + M_FLAGS]! & MSG_TRUNC) !== 0 ? -EMSGSIZE : u32[m + M_LEN]!;
      readSockaddr(this.bytes, u32, this.nameAt + k * NAME, from, k);
      parseReceived(u32, this.recvCtlAt + k * CTL, u32[m + M_CONTROLLEN]!, from, k);
    }
    return n;
  }

  /**
   * Sends datagrams k < count from `slab[offsets[k] ..+ lens[k])` to row k of `to`, from the
   * row's sticky source when it has one. Returns how many were consumed: sent, or refused for
   * that datagram alone (no route, too big…), in which case `lens[k]` becomes -errno. Stops at
   * EAGAIN (send the rest later). -errno only when the fd itself is unusable before any send.
   * Runs that leave as one GSO message are still accounted per datagram: a run the kernel
   * refuses is sent again one datagram per message, never dropped; so is a datagram whose
   * source the kernel refuses, from the routed address (see `sourceRefused`).
   */
  sendBatch(slab: Uint8Array, offsets: Uint32Array, lens: Int32Array, to: EndpointTable, count: number): number {
    if (count > this.capacity) throw new RangeError(`batch of ${count} exceeds capacity ${this.capacity}`);
    checkBatch(offsets, lens, count);
    const base = this.slab.of(slab);
    const u32 = this.u32;
    if (this.sourcesRefused > 0) {
      this.sourceRefused.fill(0);
      this.sourcesRefused = 0;
    }
    for (let k = 0; k < count; k++) {
      const off = offsets[k]!;
      const len = lens[k]!;
      if (len < 0 || off + len > slab.byteLength) throw new RangeError(`slot ${off}+${len} outside the slab`);
      const v = (this.iovAt + k * IOV) >> 2;
      writeAddress(u32, v, base + off);
      u32[v + 2] = len;
      writeName(u32, (this.nameAt + k * NAME) >> 2, to, k);
    }
    let messages = this.layout(0, count, this.gsoOn, lens, to);
    let m = 0;
    while (m < messages) {
      const r = libc.sendmmsg(this.fd, m === 0 ? this.sendMsgs : this.sendMsgAddr[m], messages - m, MSG_DONTWAIT) as number;
      if (r >= 0) {
        if (r === 0) break;
        m += r;
        continue;
      }
      const e = errno();
      if (e === EAGAIN) break;
      const first = this.msgFirst[m]!;
      if (e === EBADF || e === ENOTSOCK) return first === 0 ? -e : first;
      if (to.hasSource(first) && sourceRefused(e)) {
        // The sticky source is gone (address removed, interface down): forget it for the
        // run's datagrams and send them again from the routed address.
        for (let k = first; k < first + this.msgCount[m]!; k++) {
          to.clearSource(k);
          this.sourceRefused[k] = 1;
          this.sourcesRefused++;
        }
        messages = this.layout(first, count, this.gsoOn, lens, to);
        m = 0;
        continue;
      }
      if (this.msgCount[m]! > 1) {
        // EIO: the kernel cannot do GSO on this path at all (before 6.11 it needs checksum
        // offload on the egress device), so stop asking. Anything else (EINVAL: a segment
        // above the path MTU; EMSGSIZE) belongs to this run: its datagrams go one by one, so
        // each gets its own result.
        if (e === EIO) this.gsoOn = false;
        messages = this.layout(first, count, false, lens, to);
        m = 0;
        continue;
      }
      lens[first] = -e;
      m++;
    }
    return m < messages ? this.msgFirst[m]! : count;
  }

  /**
   * Writes send messages from message 0 on for datagrams [first, count): runs that may share
   * one GSO message when `gso` (see gsoRunLength: same path, sticky source included), else one
   * datagram each, each with its source's pktinfo when it has one. Returns the count.
   */
  private layout(first: number, count: number, gso: boolean, lens: Int32Array, to: EndpointTable): number {
    const u32 = this.u32;
    let m = 0;
    for (let k = first; k < count; m++) {
      const n = gso ? gsoRunLength(lens, k, count, to) : 1;
      const h = (this.sendAt + m * MMSG) >> 2;
      writeAddress(u32, h + M_NAME, this.base + this.nameAt + k * NAME);
      u32[h + M_NAMELEN] = SOCKADDR_IN6_LEN;
      writeAddress(u32, h + M_IOV, this.base + this.iovAt + k * IOV);
      u32[h + M_IOVLEN] = n;
      const c = this.sendCtlAt + m * CTL;
      let ctl = 0;
      if (to.hasSource(k)) {
        writePktinfo(u32, c, to, k);
        ctl = PKTINFO_SPACE;
      }
      if (n > 1) {
        writeSegment(this.bytes, u32, c + ctl, lens[k]!);
        ctl += SEGMENT_SPACE;
      }
      writeAddress(u32, h + M_CONTROL, ctl > 0 ? this.base + c : 0);
      u32[h + M_CONTROLLEN] = ctl;
      this.msgFirst[m] = k;
      this.msgCount[m] = n;
      k += n;
    }
    return m;
  }
}

/**
 * Buffers for packets longer than a slab slot (a jumbo MTU): `at[i]` is the byte offset in the
 * slab of buffer i, `bytes` long each; `used` counts those a batch has taken. The owner resets
 * `used` at every batch.
 */
export interface LargeBuffers {
  readonly at: Uint32Array;
  readonly bytes: number;
  used: number;
}
