/**
 * The control plane's outgoing datagrams (handshake responses and initiations, cookie replies,
 * keepalives), sent in batches: one sendmmsg(2) for everything queued in one synchronous run of
 * the main thread instead of one sendmsg(2) per message. Under a handshake flood the main thread
 * answers up to a few hundred messages per event-loop turn; a syscall each was ~6 % of its time.
 *
 * A message is copied in when queued (they are at most an initiation's 148 bytes), with its
 * destination and sticky source, so the caller's buffer and endpoint row are free again at
 * once. `flush` sends them; a queue that fills up flushes itself, and the owner schedules a
 * flush at the end of its run (Handshakes does it with a microtask), so a message waits at most
 * until the current batch of records is handled. What became of each message is reported
 * through `onResult` with the tag the caller gave it (a peer slot, or -1), so the caller can
 * count bytes and forget a sticky source the kernel refused, as after a sendmsg.
 *
 * Layout, one ArrayBuffer that never moves, CAPACITY entries of each:
 *   mmsghdr | iovec | sockaddr_in6 | IPV6_PKTINFO cmsg | payload (MAX_DATAGRAM bytes)
 */
import { EAGAIN, MSG_DONTWAIT, SOCKADDR_IN6_LEN, addressOf, errno, libc, writeAddress, MMSGHDR_SIZE, IOVEC_SIZE, NAME_SLOT } from './libc.js';
import { M_CONTROL, M_CONTROLLEN, M_IOV, M_IOVLEN, M_NAME, M_NAMELEN, sourceRefused, writeName } from './udp.js';
import type { EndpointTable } from './endpoint.js';
import { PKTINFO_SPACE, writePktinfo } from './cmsg.js';

/** Messages per sendmmsg; a fuller queue flushes itself. */
export const DATAGRAM_BATCH = 64;
/** Largest message the control plane sends (a handshake initiation is 148 bytes). */
export const MAX_DATAGRAM = 160;

const IOV_AT = DATAGRAM_BATCH * MMSGHDR_SIZE;
const NAME_AT = IOV_AT + DATAGRAM_BATCH * IOVEC_SIZE;
const CTL_AT = NAME_AT + DATAGRAM_BATCH * NAME_SLOT;
const DATA_AT = CTL_AT + DATAGRAM_BATCH * PKTINFO_SPACE;
const BYTES = DATA_AT + DATAGRAM_BATCH * MAX_DATAGRAM;

/**
 * Told what became of a queued message: `sent` is its length or -errno; `sourceRefused`: its
 * sticky source was refused and it went (or failed) from the routed address.
 */
export type DatagramResult = (tag: number, sent: number, sourceRefused: boolean) => void;

export class DatagramBatch {
  private readonly bytes = new Uint8Array(new ArrayBuffer(BYTES));
  private readonly u32 = new Uint32Array(this.bytes.buffer);
  private readonly base = addressOf(this.bytes);
  private readonly tags = new Int32Array(DATAGRAM_BATCH);
  private readonly lens = new Uint32Array(DATAGRAM_BATCH);
  private readonly sourced = new Uint8Array(DATAGRAM_BATCH);
  private readonly refused = new Uint8Array(DATAGRAM_BATCH);
  /** Address of each mmsghdr, so a flush can resume mid-queue (koffi takes a BigInt pointer). */
  private readonly msgAddr: bigint[] = [];
  private count = 0;
  /** sendmmsg calls made, for the benches. */
  syscalls = 0;

  constructor(private readonly fd: () => number, private readonly onResult: DatagramResult) {
    for (let i = 0; i < DATAGRAM_BATCH; i++) {
      const m = (i * MMSGHDR_SIZE) >> 2;
      writeAddress(this.u32, m + M_NAME, this.base + NAME_AT + i * NAME_SLOT);
      writeAddress(this.u32, m + M_IOV, this.base + IOV_AT + i * IOVEC_SIZE);
      this.u32[m + M_IOVLEN] = 1;
      writeAddress(this.u32, (IOV_AT + i * IOVEC_SIZE) >> 2, this.base + DATA_AT + i * MAX_DATAGRAM);
      this.msgAddr.push(BigInt(this.base + i * MMSGHDR_SIZE));
    }
  }

  /** Messages queued and not sent yet. */
  get pending(): number {
    return this.count;
  }

  /**
   * Queues a copy of `buf[off, off + len)` for row `row` of `to` (from its sticky source when it
   * has one); `tag` comes back with the result. Flushes first when the queue is full.
   */
  queue(buf: Uint8Array, off: number, len: number, to: EndpointTable, row: number, tag: number): void {
    if (len > MAX_DATAGRAM || len < 0) throw new RangeError(`control datagram of ${len} bytes (at most ${MAX_DATAGRAM})`);
    if (this.count === DATAGRAM_BATCH) this.flush();
    const i = this.count++;
    const u32 = this.u32;
    const m = (i * MMSGHDR_SIZE) >> 2;
    this.bytes.set(buf.subarray(off, off + len), DATA_AT + i * MAX_DATAGRAM);
    u32[((IOV_AT + i * IOVEC_SIZE) >> 2) + 2] = len;
    u32[m + M_NAMELEN] = SOCKADDR_IN6_LEN;
    writeName(u32, (NAME_AT + i * NAME_SLOT) >> 2, to, row);
    const sourced = to.hasSource(row);
    if (sourced) {
      writePktinfo(u32, CTL_AT + i * PKTINFO_SPACE, to, row);
      writeAddress(u32, m + M_CONTROL, this.base + CTL_AT + i * PKTINFO_SPACE);
      u32[m + M_CONTROLLEN] = PKTINFO_SPACE;
    } else {
      this.noControl(m);
    }
    this.tags[i] = tag;
    this.lens[i] = len;
    this.sourced[i] = sourced ? 1 : 0;
    this.refused[i] = 0;
  }

  private noControl(m: number): void {
    writeAddress(this.u32, m + M_CONTROL, 0);
    this.u32[m + M_CONTROLLEN] = 0;
  }

  /**
   * Sends everything queued, as few sendmmsg calls as the kernel allows, and reports each
   * message. A message the kernel refuses is reported with -errno and the rest go on (EAGAIN
   * included: a full socket buffer drops control messages as a lone sendmsg would); one whose
   * sticky source is refused goes again from the routed address.
   */
  flush(): void {
    const count = this.count;
    if (count === 0) return;
    const fd = this.fd();
    let i = 0;
    try {
      while (i < count) {
        this.syscalls++;
        const r = libc.sendmmsg(fd, i === 0 ? this.bytes : this.msgAddr[i]!, count - i, MSG_DONTWAIT) as number;
        if (r > 0) {
          for (const end = i + r; i < end; i++) this.report(i, this.lens[i]!);
          continue;
        }
        const e = r === 0 ? EAGAIN : errno();
        if (this.sourced[i] === 1 && sourceRefused(e)) {
          this.sourced[i] = 0;
          this.refused[i] = 1;
          this.noControl((i * MMSGHDR_SIZE) >> 2);
          continue;
        }
        this.report(i, -e);
        i++;
      }
    } finally {
      // A throwing onResult must not make the next flush send these again.
      this.count = 0;
    }
  }

  private report(i: number, sent: number): void {
    this.onResult(this.tags[i]!, sent, this.refused[i] === 1);
  }
}
