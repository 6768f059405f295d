/**
 * The libc functions and Linux constants the syscall layer uses, bound through koffi (prebuilt
 * FFI, nothing to compile), plus the two primitives every data-plane worker shares: an eventfd
 * to wake it and a poll set to sleep on.
 *
 * Loaded once per thread: a worker imports this module into its own isolate and gets its own
 * bindings; only fd numbers cross threads (an fd is process-wide).
 *
 * Calling conventions, chosen for the hot path:
 * - Pointer parameters are `void *`. koffi passes a TypedArray (also one over a
 *   SharedArrayBuffer) in place, which is the cheapest call (~70 ns); a BigInt also works.
 *   A computed Number address would box a HeapNumber per call, so per-packet addresses are
 *   written as two uint32 halves into a preallocated iovec/mmsghdr table instead (see
 *   `writeAddress`), and that table is what gets passed.
 * - Failures come back as `-errno` read through `koffi.errno()` right after the call; nothing
 *   on the data path throws. Setup helpers throw `SysError` with a message naming the action.
 * - x86-64 Linux values; `ioctl` is variadic in C but a fixed three-argument prototype is
 *   ABI-identical on x86-64 for an integer/pointer third argument.
 */
import koffi from 'koffi';

const lib = koffi.load('libc.so.6');

export const libc = {
  open: lib.func('int open(const char *path, int flags)'),
  close: lib.func('int close(int fd)'),
  read: lib.func('intptr_t read(int fd, void *buf, size_t len)'),
  write: lib.func('intptr_t write(int fd, void *buf, size_t len)'),
  readv: lib.func('intptr_t readv(int fd, void *iov, int iovcnt)'),
  writev: lib.func('intptr_t writev(int fd, void *iov, int iovcnt)'),
  ioctl: lib.func('int ioctl(int fd, unsigned long request, void *arg)'),
  /** ioctl whose third argument is a value, not a pointer (TUNSETOFFLOAD). */
  ioctlValue: lib.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']),
  poll: lib.func('int poll(void *fds, unsigned long nfds, int timeout)'),
  eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
  socket: lib.func('int socket(int domain, int type, int protocol)'),
  setsockopt: lib.func('int setsockopt(int fd, int level, int name, void *value, uint32_t len)'),
  bind: lib.func('int bind(int fd, void *addr, uint32_t len)'),
  getsockname: lib.func('int getsockname(int fd, void *addr, void *len)'),
  sendto: lib.func('intptr_t sendto(int fd, void *buf, size_t len, int flags, void *addr, uint32_t addrlen)'),
  recvfrom: lib.func('intptr_t recvfrom(int fd, void *buf, size_t len, int flags, void *addr, void *addrlen)'),
  recvmmsg: lib.func('int recvmmsg(int fd, void *msgvec, unsigned int vlen, int flags, void *timeout)'),
  sendmmsg: lib.func('int sendmmsg(int fd, void *msgvec, unsigned int vlen, int flags)'),
  sendmsg: lib.func('intptr_t sendmsg(int fd, void *msg, int flags)'),
  if_nametoindex: lib.func('unsigned int if_nametoindex(const char *name)'),
  inet_pton: lib.func('int inet_pton(int af, const char *src, void *dst)'),
  inet_ntop: lib.func('const char *inet_ntop(int af, void *src, void *dst, uint32_t size)'),
  strerror: lib.func('const char *strerror(int errnum)'),
  clock_gettime: lib.func('int clock_gettime(int clock, void *ts)'),
  flock: lib.func('int flock(int fd, int operation)'),
};

/** errno of the last failed libc call on this thread. */
export const errno = (): number => koffi.errno();

export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const IPPROTO_ICMP = 1;
export const IPPROTO_IPV6 = 41;

export const CLOCK_THREAD_CPUTIME_ID = 3;

export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_REUSEPORT = 15;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const SO_MARK = 36;
export const IPV6_V6ONLY = 26;

export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;

/** struct layouts on x86-64: mmsghdr = msghdr (56) + msg_len (4) + padding; iovec; sockaddr_in6. */
export const MMSGHDR_SIZE = 64;
export const IOVEC_SIZE = 16;
export const SOCKADDR_IN6_LEN = 28;
/** sockaddr_in6 rounded up so every name in an array is 4-byte aligned. */
export const NAME_SLOT = 32;

export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;

export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;

export const EPERM = 1;
export const EINTR = 4;
export const EIO = 5;
export const EBADF = 9;
export const EAGAIN = 11;
export const EACCES = 13;
export const EBUSY = 16;
export const EINVAL = 22;
export const EBADFD = 77;
export const ENOTSOCK = 88;
export const EMSGSIZE = 90;
export const EADDRINUSE = 98;
export const EADDRNOTAVAIL = 99;
export const ENETUNREACH = 101;

/** A setup failure: the action that failed, the errno and libc's text for it. */
export class SysError extends Error {
  constructor(action: string, readonly errno: number) {
    super(`${action}: ${libc.strerror(errno) as string} (errno ${errno})`);
    this.name = 'SysError';
  }
}

/** Throws SysError when a setup call returned a negative value; returns the value otherwise. */
export function check(result: number, action: string): number {
  if (result < 0) throw new SysError(action, errno());
  return result;
}

/**
 * Address of the first byte of a view, as a Number (user-space addresses on x86-64 fit in 47
 * bits). The memory must not move: SharedArrayBuffers and explicitly constructed ArrayBuffers
 * never do. The address does not keep the memory alive: the caller holds the view.
 */
export function addressOf(view: ArrayBufferView): number {
  return Number(koffi.address(view));
}

/** Writes a 64-bit pointer at u32[index], u32[index + 1] without boxing a BigInt. */
export function writeAddress(u32: Uint32Array, index: number, address: number): void {
  u32[index] = address % 0x1_0000_0000;
  u32[index + 1] = address / 0x1_0000_0000;
}

/**
 * The address of the slab a batch moves packets through, looked up once per slab. Holding the
 * slab here keeps it alive for as long as its address may be handed to the kernel.
 */
export class SlabAddress {
  private slab: Uint8Array | null = null;
  private base = 0;

  of(slab: Uint8Array): number {
    if (slab !== this.slab) {
      this.slab = slab;
      this.base = addressOf(slab);
    }
    return this.base;
  }
}

/** setsockopt with an int value. Returns 0 or -errno. */
export function setInt(fd: number, level: number, name: number, value: number): number {
  return libc.setsockopt(fd, level, name, Int32Array.of(value), 4) < 0 ? -errno() : 0;
}

/**
 * Rejects batch arguments that would make the kernel read or write outside the caller's
 * arrays (a programmer error, so it throws). `maxLen` is checked for receive batches only.
 */
export function checkBatch(offsets: Uint32Array, lens: Int32Array, count: number, maxLen = 1): void {
  if (!(count >= 0 && count <= offsets.length && count <= lens.length)) {
    throw new RangeError(`batch of ${count} with ${offsets.length} offsets and ${lens.length} lengths`);
  }
  // A TUN read with IFF_VNET_HDR can return a 64 KiB super-packet plus its 10-byte header.
  if (!(maxLen >= 1 && maxLen <= 0xffff + 10)) throw new RangeError(`bad maximum packet length ${maxLen}`);
}

/**
 * recvmmsg of up to `count` messages from the mmsghdr array `msgs`, never blocking. Returns the
 * count, 0 when nothing waits, or -errno.
 */
export function recvMessages(fd: number, msgs: Uint8Array, count: number): number {
  const n = libc.recvmmsg(fd, msgs, count, MSG_DONTWAIT, null) as number;
  if (n >= 0) return n;
  const e = errno();
  return e === EAGAIN ? 0 : -e;
}

export function closeFd(fd: number): void {
  libc.close(fd);
}

/**
 * A non-blocking eventfd that wakes a worker sleeping in `PollSet.wait`. Create it on one
 * thread, pass `fd` to another and wrap it there with `new EventFd(fd)`: each wrapper owns its
 * own 8-byte buffer, so no memory is shared between threads.
 */
export class EventFd {
  // The 64-bit counter as two uint32 halves (little-endian), so signalling boxes no BigInt.
  private readonly counter = new Uint32Array(new ArrayBuffer(8));
  private readonly bytes = new Uint8Array(this.counter.buffer);

  constructor(readonly fd: number) {}

  static create(): EventFd {
    return new EventFd(check(libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), 'eventfd'));
  }

  /** Adds 1 to the counter, making the fd readable. Returns 0 or -errno. */
  signal(): number {
    this.counter[0] = 1;
    this.counter[1] = 0;
    return libc.write(this.fd, this.bytes, 8) === 8 ? 0 : -errno();
  }

  /** Resets the counter. Returns how many signals were pending (0 if none) or -errno. */
  drain(): number {
    if (libc.read(this.fd, this.bytes, 8) === 8) return this.counter[0]! + this.counter[1]! * 0x1_0000_0000;
    const e = errno();
    return e === EAGAIN ? 0 : -e;
  }

  close(): void {
    closeFd(this.fd);
  }
}

/**
 * A fixed set of fds to sleep on with poll(2), its pollfd array allocated once. A blocking
 * wait cannot be interrupted from JS, so every set a worker sleeps on should hold an EventFd.
 * Block only in workers: waiting on the main thread stalls its event loop.
 */
export class PollSet {
  private readonly table: Int32Array;
  private readonly halves: Int16Array;
  private readonly bytes: Uint8Array;

  readonly size: number;

  constructor(fds: readonly number[], events: number = POLLIN) {
    this.size = fds.length;
    const buffer = new ArrayBuffer(8 * Math.max(1, fds.length));
    this.table = new Int32Array(buffer);
    this.halves = new Int16Array(buffer);
    this.bytes = new Uint8Array(buffer);
    fds.forEach((fd, i) => this.set(i, fd, events));
  }

  /** Replaces entry `i` (a negative fd makes poll skip it). */
  set(i: number, fd: number, events: number = POLLIN): void {
    if (i < 0 || i >= this.size) throw new RangeError(`poll entry ${i} outside 0..${this.size - 1}`);
    this.table[2 * i] = fd;
    this.halves[4 * i + 2] = events;
  }

  /** Sleeps until an fd is ready or `timeoutMs` passes (-1 = forever). Returns ready count or -errno (-EINTR included). */
  wait(timeoutMs: number): number {
    const n = libc.poll(this.bytes, this.size, timeoutMs) as number;
    return n >= 0 ? n : -errno();
  }

  /** True when entry `i` has data, or an error/hang-up that a read will report. */
  ready(i: number): boolean {
    return (this.halves[4 * i + 3]! & (POLLIN | POLLERR | POLLHUP | POLLNVAL)) !== 0;
  }
}
