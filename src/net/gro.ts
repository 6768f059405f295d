// UDP generic receive offload (UDP_GRO): the kernel hands over several datagrams of one flow as
// one buffer plus their segment size in a cmsg, so its receive path and recvmmsg run once per
// run of datagrams. On veth a sender's GSO run even arrives unsegmented. A coalesced buffer can
// hold 64 KiB, more than a slab slot, so messages land in an area of contiguous slab slots
// reserved for this receiver and are then cut into the caller's slots with copyWithin: a copy
// per datagram for a syscall and a kernel pass per run (wireguard-go copies too,
// conn/bind_std.go splitCoalescedMessages).
import { EndpointTable, copyEndpoint, readSockaddr } from './endpoint.js';
import {
  EMSGSIZE, IOVEC_SIZE, MMSGHDR_SIZE, MSG_TRUNC, NAME_SLOT, SOCKADDR_IN6_LEN, SlabAddress, addressOf, recvMessages, setInt,
  writeAddress,
} from './libc.js';
import { SOL_UDP, UDP_GRO } from './gso.js';
import { CONTROL_SPACE, parseReceived } from './cmsg.js';
import type { LargeBuffers } from './udp.js';

/** Messages per recvmmsg: each may carry up to 64 KiB of datagrams. */
const MESSAGES = 8;
/** The largest coalesced buffer: an IP packet's worth (the kernel stops merging before 64 KiB). */
const REGION = 0x10000;
const MMSG = MMSGHDR_SIZE;
const IOV = IOVEC_SIZE;
const NAME = NAME_SLOT;
const CMSG = CONTROL_SPACE;
/** Bytes of slab a receiver needs, contiguous (see WorkerPool). */
export const GRO_AREA_BYTES = MESSAGES * REGION;

export class GroReceiver {
  private readonly bytes: Uint8Array;
  private readonly u32: Uint32Array;
  private readonly slab = new SlabAddress();
  private readonly nameAt = MESSAGES * (MMSG + IOV);
  private readonly cmsgAt = MESSAGES * (MMSG + IOV + NAME);
  private readonly sources = new EndpointTable(MESSAGES);
  private readonly msgLen = new Int32Array(MESSAGES);
  private readonly segment = new Int32Array(MESSAGES);
  // The cursor over received messages not yet cut: message `next` of `count`, byte `at`.
  private count = 0;
  private next = 0;
  private at = 0;
  /** The last receive got fewer messages than it asked for: the socket was empty then. */
  private short = false;

  /** `areaAt`: where in the slab the GRO_AREA_BYTES reserved for this receiver begin. */
  constructor(private readonly fd: number, private readonly areaAt: number) {
    this.bytes = new Uint8Array(new ArrayBuffer(MESSAGES * (MMSG + IOV + NAME + CMSG)));
    this.u32 = new Uint32Array(this.bytes.buffer);
    const base = addressOf(this.bytes);
    for (let k = 0; k < MESSAGES; k++) {
      const m = (k * MMSG) >> 2;
      writeAddress(this.u32, m, base + this.nameAt + k * NAME);
      writeAddress(this.u32, m + 4, base + MESSAGES * MMSG + k * IOV);
      this.u32[m + 6] = 1;
      writeAddress(this.u32, m + 8, base + this.cmsgAt + k * CMSG);
      this.u32[((MESSAGES * MMSG + k * IOV) >> 2) + 2] = REGION;
    }
  }

  /** Whether datagrams may be waiting without a new poll: segments left over, or the last receive was full. */
  get pending(): boolean {
    return this.next < this.count || !this.short;
  }

  /**
   * Enables UDP_GRO on `fd`; false when the kernel lacks it (before 5.0), and then nothing
   * changes for the socket.
   */
  static enable(fd: number): boolean {
    return setInt(fd, SOL_UDP, UDP_GRO, 1) === 0;
  }

  /**
   * The contract of UdpBatch.recvBatch: up to `max` datagrams into the caller's slots. A
   * datagram longer than `maxLen` goes to the next of the `large` buffers and `offsets[k]`
   * points there (the caller restores its slot offsets after the batch); when none is left the
   * batch ends before it, and it comes first in the next call. Without `large` it is refused
   * (-EMSGSIZE).
   */
  recvBatch(slab: Uint8Array, offsets: Uint32Array, maxLen: number, lens: Int32Array, from: EndpointTable, max: number, large?: LargeBuffers): number {
    let k = 0;
    while (k < max) {
      if (this.next === this.count) {
        // Asking again after a short receive would only find the socket empty (one wasted
        // syscall per wake-up at low rates); the caller polls first.
        if (k > 0 && this.short) break;
        const r = this.receive(slab);
        if (r <= 0) return k > 0 ? k : r;
      }
      const j = this.next;
      const size = Math.min(this.segment[j]!, this.msgLen[j]! - this.at);
      if (size > maxLen && large !== undefined && size <= large.bytes) {
        if (large.used === large.at.length) break;
        offsets[k] = large.at[large.used++]!;
        const src = this.areaAt + j * REGION + this.at;
        slab.copyWithin(offsets[k]!, src, src + size);
        lens[k] = size;
      } else if (size > maxLen) {
        lens[k] = -EMSGSIZE;
      } else {
        const src = this.areaAt + j * REGION + this.at;
        slab.copyWithin(offsets[k]!, src, src + size);
        lens[k] = size;
      }
      copyEndpoint(this.sources, j, from, k);
      k++;
      this.at += this.segment[j]!;
      if (this.at >= this.msgLen[j]!) {
        this.next++;
        this.at = 0;
      }
    }
    return k;
  }

  /** One recvmmsg into the regions. Returns the message count, 0 when none wait, or -errno. */
  private receive(slab: Uint8Array): number {
    if (this.areaAt + GRO_AREA_BYTES > slab.byteLength) throw new RangeError('GRO area outside the slab');
    const u32 = this.u32;
    const area = this.slab.of(slab) + this.areaAt;
    for (let k = 0; k < MESSAGES; k++) {
      const m = (k * MMSG) >> 2;
      writeAddress(u32, (MESSAGES * MMSG + k * IOV) >> 2, area + k * REGION);
      u32[m + 2] = SOCKADDR_IN6_LEN;
      u32[m + 10] = CMSG; // msg_controllen, shrunk by the kernel to what it wrote
    }
    const n = recvMessages(this.fd, this.bytes, MESSAGES);
    this.short = n < MESSAGES;
    if (n <= 0) return n;
    for (let k = 0; k < n; k++) {
      const m = (k * MMSG) >> 2;
      const len = u32[m + 14]!;
      readSockaddr(this.bytes, u32, this.nameAt + k * NAME, this.sources, k);
      const segment = parseReceived(u32, this.cmsgAt + k * CMSG, u32[m + 10]!, this.sources, k);
      this.msgLen[k] = len;
      // A truncated datagram (only possible uncoalesced) is passed on as one oversized segment.
      this.segment[k] = (u32[m + 12]! & MSG_TRUNC) !== 0 ? REGION + 1 : Math.max(segment > 0 ? segment : len, 1);
    }
    this.count = n;
    this.next = 0;
    this.at = 0;
    return n;
  }
}
