/**
 * Multi-queue TUN device through koffi: the main thread opens one queue per worker with
 * `openQueues` and hands each worker an fd number; the worker wraps its fd in a `TunQueue` and
 * moves packets between the queue and slots of a SharedArrayBuffer slab.
 *
 * Without IFF_VNET_HDR the kernel hands over one packet per read(2) and takes one per write(2),
 * so a batch is a loop of single-packet syscalls until EAGAIN. Each call goes through readv/writev
 * on a one-entry iovec that the queue owns: the slot's address is written into the iovec as two
 * uint32 halves, so a packet costs no allocation (see libc.ts on why not a Number address).
 *
 * The device can be moved to another network namespace after it is opened; the fds keep
 * working, but name-based lookups (`interfaceIndex`, `getMtu`) only see the calling thread's
 * namespace. `tunAttached` works across namespaces and tells whether the device still exists.
 */
import {
  EAGAIN, EBADF, EBADFD, EBUSY, EINVAL, EPERM, AF_INET, O_CLOEXEC, O_NONBLOCK, O_RDWR,
  SOCK_CLOEXEC, SOCK_DGRAM, SlabAddress, SysError, check, checkBatch, closeFd, errno, libc, writeAddress,
} from '../net/libc.js';

const TUNSETIFF = 0x400454ca;
const TUNSETOFFLOAD = 0x400454d0;
const IFF_VNET_HDR = 0x4000;
const TUN_F_CSUM = 0x01;
const TUN_F_TSO4 = 0x02;
const TUN_F_TSO6 = 0x04;
const SIOCGIFMTU = 0x8921;
const SIOCSIFMTU = 0x8922;
const IFF_TUN = 0x0001;
const IFF_MULTI_QUEUE = 0x0100;
const IFF_NO_PI = 0x1000;
/** Fail with EBUSY instead of attaching when the device already exists. */
const IFF_TUN_EXCL = 0x8000;
const IFNAMSIZ = 16;
const IFREQ_SIZE = 40;

/** Longest interface name the kernel takes (IFNAMSIZ minus the terminating NUL). */
export const MAX_NAME_LEN = IFNAMSIZ - 1;

/** True for names the kernel's dev_valid_name accepts; '%' is refused too (no name templates). */
export function isValidName(name: string): boolean {
  return name.length <= MAX_NAME_LEN && /^[\x21-\x7e]+$/.test(name) && !/[/:%]/.test(name) && name !== '.' && name !== '..';
}

function ifreq(name: string): { bytes: Uint8Array; view: DataView } {
  if (!isValidName(name)) throw new TypeError(`invalid interface name ${JSON.stringify(name)}`);
  const bytes = new Uint8Array(new ArrayBuffer(IFREQ_SIZE));
  for (let i = 0; i < name.length; i++) bytes[i] = name.charCodeAt(i);
  return { bytes, view: new DataView(bytes.buffer) };
}

const SETIFF_HINTS: Record<number, string> = {
  [EPERM]: ' (creating a TUN device needs CAP_NET_ADMIN)',
  [EBUSY]: ' (an interface with that name already exists)',
  [EINVAL]: ' (an interface with that name exists and is not a multi-queue TUN device)',
};

function openQueue(name: string, exclusive: boolean, offload: boolean): number {
  const req = ifreq(name);
  const fd = check(libc.open('/dev/net/tun', O_RDWR | O_NONBLOCK | O_CLOEXEC), 'open /dev/net/tun');
  const flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE | (exclusive ? IFF_TUN_EXCL : 0) | (offload ? IFF_VNET_HDR : 0);
  req.view.setUint16(IFNAMSIZ, flags, true);
  if (libc.ioctl(fd, TUNSETIFF, req.bytes) < 0) {
    const e = errno();
    closeFd(fd);
    throw new SysError(`TUNSETIFF ${name}${SETIFF_HINTS[e] ?? ''}`, e);
  }
  // Checksum and TCP segmentation offload: the kernel may now hand over unfinished checksums
  // and 64 KiB TCP super-packets, which src/tun/offload.ts completes and cuts.
  if (offload && libc.ioctlValue(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) {
    const e = errno();
    closeFd(fd);
    throw new SysError(`TUNSETOFFLOAD ${name}`, e);
  }
  return fd;
}

/**
 * Creates TUN device `name` and returns `n` non-blocking queue fds for it, one per worker. The
 * first open refuses an existing interface of that name, so two daemons never share a device.
 * Throws SysError (all fds closed) on failure. The device exists while any fd is open. With
 * `offload`, every packet read or written starts with a virtio_net_hdr (IFF_VNET_HDR).
 */
export function openQueues(name: string, n: number, offload = false): number[] {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`queue count must be a positive integer, got ${n}`);
  const fds: number[] = [];
  try {
    for (let i = 0; i < n; i++) fds.push(openQueue(name, i === 0, offload));
  } catch (err) {
    fds.forEach(closeFd);
    throw err;
  }
  return fds;
}

/** ifindex of `name` in the calling thread's network namespace, 0 when there is none. */
export function interfaceIndex(name: string): number {
  return libc.if_nametoindex(name) as number;
}

/**
 * False once the device behind a queue fd has been deleted (or the fd is closed), probed with a
 * zero-length write, which works after the device moved to another namespace: the kernel
 * answers EINVAL while the device exists and EBADFD once it is gone. (wireguard-go reads EIO
 * from the same probe as "down"; current kernels answer EINVAL before looking at the link.)
 */
export function tunAttached(fd: number): boolean {
  return libc.write(fd, null, 0) >= 0 || errno() === EINVAL;
}

function mtuIoctl(name: string, request: number, mtu: number): number {
  const req = ifreq(name);
  req.view.setInt32(IFNAMSIZ, mtu, true);
  const sock = check(libc.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), 'socket for MTU ioctl');
  const r = libc.ioctl(sock, request, req.bytes);
  const e = errno();
  closeFd(sock);
  if (r < 0) throw new SysError(`${request === SIOCSIFMTU ? 'set' : 'get'} MTU of ${name}`, e);
  return req.view.getInt32(IFNAMSIZ, true);
}

/** MTU of `name` in the calling thread's namespace. Throws SysError. */
export function getMtu(name: string): number {
  return mtuIoctl(name, SIOCGIFMTU, 0);
}

/** Sets the MTU of `name` in the calling thread's namespace. Throws SysError. */
export function setMtu(name: string, mtu: number): void {
  mtuIoctl(name, SIOCSIFMTU, mtu);
}

/**
 * One thread's handle on one queue fd. Not shared between threads: construct one per worker
 * from the fd number. Slots are byte offsets into a slab (typically a Uint8Array over a
 * SharedArrayBuffer) whose address is looked up once.
 */
export class TunQueue {
  private readonly iov = new Uint32Array(new ArrayBuffer(16));
  private readonly iovBytes = new Uint8Array(this.iov.buffer);
  private readonly slab = new SlabAddress();

  constructor(readonly fd: number) {}

  /**
   * Reads up to `max` packets, packet k into `slab[offsets[k] ..+ maxLen)` with its length in
   * `lens[k]`, stopping at EAGAIN. Returns the packet count (0 when nothing was waiting), or
   * -errno when the first read failed otherwise (-EBADFD: the device was deleted). `maxLen`
   * must be at least the device MTU.
   */
  readBatch(slab: Uint8Array, offsets: Uint32Array, maxLen: number, lens: Int32Array, max: number): number {
    checkBatch(offsets, lens, max, maxLen);
    const base = this.slab.of(slab);
    const iov = this.iov;
    iov[2] = maxLen;
    iov[3] = 0;
    let n = 0;
    for (; n < max; n++) {
      const off = offsets[n]!;
      if (off + maxLen > slab.byteLength) throw new RangeError(`slot ${off}+${maxLen} outside the slab`);
      writeAddress(iov, 0, base + off);
      const r = libc.readv(this.fd, this.iovBytes, 1) as number;
      if (r < 0) {
        const e = errno();
        if (n === 0 && e !== EAGAIN) return -e;
        break;
      }
      lens[n] = r;
    }
    return n;
  }

  /**
   * Writes packets k < count from `slab[offsets[k] ..+ lens[k])`. Returns how many packets were
   * consumed: written, or refused by the kernel (a malformed packet, the device down), in which
   * case `lens[k]` is overwritten with -errno and the packet is dropped. Stops early at EAGAIN
   * (retry the rest later). Returns -errno only when the fd itself is unusable before any packet.
   */
  writeBatch(slab: Uint8Array, offsets: Uint32Array, lens: Int32Array, count: number): number {
    checkBatch(offsets, lens, count);
    const base = this.slab.of(slab);
    const iov = this.iov;
    iov[3] = 0;
    let n = 0;
    for (; n < count; n++) {
      const off = offsets[n]!;
      const len = lens[n]!;
      if (len < 0 || off + len > slab.byteLength) throw new RangeError(`slot ${off}+${len} outside the slab`);
      writeAddress(iov, 0, base + off);
      iov[2] = len;
      if ((libc.writev(this.fd, this.iovBytes, 1) as number) >= 0) continue;
      const e = errno();
      if (e === EAGAIN) break;
      if (e === EBADF || e === EBADFD) return n === 0 ? -e : n;
      lens[n] = -e;
    }
    return n;
  }

  close(): void {
    closeFd(this.fd);
  }
}
