/**
 * Read side of the allowed-IPs trie: the node layout, the longest-prefix-match walks that the data
 * plane runs once per packet, and the SharedArrayBuffer form the control plane publishes.
 *
 * Nothing here writes to a table. The control plane (allowedips.ts) mutates its own arrays and
 * publishes a copy with `AllowedIPs.snapshot()`; a worker builds views over that copy once with
 * `tablesFromShared()` and reads it without locks for as long as it holds it. A copy never changes
 * while any reader holds it, so no ordering between threads is needed; swapping generations and
 * knowing when an old copy is free for reuse is the caller's job.
 *
 * This is the kernel's path-compressed binary trie: a node's subtrees share its first cidr bits,
 * and a node without a peer is glue that only joins two subtrees. All fields of a node sit side by
 * side in one Int32Array (one cache line or less per node visited, instead of one per field):
 *
 *   v4, 4 words (16 B):  key | child0 | child1 | meta
 *   v6, 8 words (32 B):  key0 key1 key2 key3 | child0 | child1 | meta | unused (keeps nodes aligned)
 *
 * key:    the prefix, most significant word first, host bits beyond cidr zeroed;
 * child:  node index of the subtree whose next bit (bit number cidr) is 0 / 1, -1 for none;
 * meta:   cidr | (peer + 1) << 8, so meta >> 8 is 0 for glue nodes (peer slots must stay below
 *         2^23 - 1 to keep meta a positive int32; the table allows 2^20).
 */

export const NONE = -1;

/** Key words per node, words per node, and the offsets of the fields after the key. */
export const V4 = { words: 1, stride: 4, child: 1, meta: 3 } as const;
export const V6 = { words: 4, stride: 8, child: 4, meta: 6 } as const;
export type Layout = typeof V4 | typeof V6;

export const metaOf = (cidr: number, peer: number): number => cidr | ((peer + 1) << 8);
export const cidrOf = (meta: number): number => meta & 0xff;
export const peerOf = (meta: number): number => (meta >> 8) - 1;

/** One family's nodes and root. A plain class so every lookup sees a single object shape. */
export class TrieTables {
  constructor(public root: number, public nodes: Int32Array) {}
}

export interface AllowedIPsTables {
  readonly v4: TrieTables;
  readonly v6: TrieTables;
}

/** The big-endian 32-bit word at buf[off..off+3], as an int32 (only its bits matter here). */
export function word(buf: Uint8Array, off: number): number {
  return (buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3];
}

/**
 * Peer slot owning the longest prefix that contains the IPv4 address at buf[off..off+3], or -1.
 * The caller has checked that the four bytes exist (they come from a parsed packet header).
 */
export function lookupV4In(t: TrieTables, buf: Uint8Array, off: number): number {
  const a = word(buf, off);
  const d = t.nodes;
  let n = t.root, found = NONE;
  while (n !== NONE) {
    const b = n << 2;
    const meta = d[b + 3];
    const c = meta & 0xff;
    // clz of the difference = number of leading bits the address shares with this node.
    if (Math.clz32(d[b] ^ a) < c) break;
    if (meta > 0xff) found = (meta >> 8) - 1;
    if (c === 32) break;
    n = d[b + 1 + ((a >>> (31 - c)) & 1)];
  }
  return found;
}

/** As lookupV4In for the IPv6 address at buf[off..off+15]. */
export function lookupV6In(t: TrieTables, buf: Uint8Array, off: number): number {
  const a0 = word(buf, off), a1 = word(buf, off + 4), a2 = word(buf, off + 8), a3 = word(buf, off + 12);
  const d = t.nodes;
  let n = t.root, found = NONE;
  while (n !== NONE) {
    const b = n << 3;
    const meta = d[b + 6];
    const c = meta & 0xff;
    let shared = 0;
    let x = d[b] ^ a0;
    if (x === 0) {
      shared = 32;
      x = d[b + 1] ^ a1;
      if (x === 0) {
        shared = 64;
        x = d[b + 2] ^ a2;
        if (x === 0) {
          shared = 96;
          x = d[b + 3] ^ a3;
        }
      }
    }
    if (shared + Math.clz32(x) < c) break;
    if (meta > 0xff) found = (meta >> 8) - 1;
    if (c === 128) break;
    const w = c >>> 5;
    const aw = w === 0 ? a0 : w === 1 ? a1 : w === 2 ? a2 : a3;
    n = d[b + 4 + ((aw >>> (31 - (c & 31))) & 1)];
  }
  return found;
}

// Published form: a header of int32 words, then the v4 nodes, then the v6 nodes (starting on a
// 32-byte boundary, like their stride), each family renumbered in depth-first preorder from root 0. That drops the writer's free nodes and puts a
// node's child 0 right after it, often in the same cache line: at 100k peers the trie no longer
// fits in L2 and a lookup's cost is mostly cache misses near the leaves.
const MAGIC = 0x77676970; // "wgip"
const HEADER_WORDS = 8;
const H_MAGIC = 0, H_ROOT4 = 1, H_ROOT6 = 2, H_NODES4 = 3, H_NODES6 = 4;
/** A root-to-leaf path has at most 129 nodes (cidr 0..128), each leaving at most one child pending. */
const MAX_PENDING = 130;

/** Word offset of the v6 nodes, and total words, of a published copy. */
const v6At = (nodes4: number): number => (HEADER_WORDS + nodes4 * V4.stride + V6.stride - 1) & -V6.stride;
const sharedWords = (nodes4: number, nodes6: number): number => v6At(nodes4) + nodes6 * V6.stride;

/**
 * Writes both tries (nodes4 / nodes6 = their live node counts) into `reuse` if it is large
 * enough, else into a new SharedArrayBuffer, in steps: a million prefixes took 0.2-0.5 s to copy
 * (much of it first touches of the new pages), too long for one turn of the main thread. The
 * tries must not change until `step` has returned true; `sab` is then complete.
 *
 * Each family is copied in preorder with an explicit stack of pending entries (old node, index
 * in the output of the child slot that must point at its copy).
 */
export class SharedWriter {
  readonly sab: SharedArrayBuffer;
  private readonly all: Int32Array;
  private readonly pending = new Int32Array(MAX_PENDING * 2);
  private top = 0;
  private next = 0;
  /** 0: v4, 1: v6, 2: done. */
  private family = 0;

  constructor(private readonly v4: TrieTables, private readonly nodes4: number, private readonly v6: TrieTables, private readonly nodes6: number, reuse?: SharedArrayBuffer) {
    const bytes = sharedWords(nodes4, nodes6) * 4;
    this.sab = reuse !== undefined && reuse.byteLength >= bytes ? reuse : new SharedArrayBuffer(bytes);
    const all = (this.all = new Int32Array(this.sab, 0, bytes / 4));
    all[H_MAGIC] = MAGIC;
    all[H_ROOT4] = v4.root === NONE ? NONE : 0;
    all[H_ROOT6] = v6.root === NONE ? NONE : 0;
    all[H_NODES4] = nodes4;
    all[H_NODES6] = nodes6;
    this.begin(v4);
  }

  private begin(t: TrieTables): void {
    this.top = 0;
    this.next = 0;
    if (t.root === NONE) return;
    this.pending[this.top++] = t.root;
    this.pending[this.top++] = NONE;
  }

  /** Copies at most `maxNodes` more nodes (the caller keeps the clock); true once done. */
  step(maxNodes: number): boolean {
    let left = maxNodes;
    while (this.family < 2) {
      const v6 = this.family === 1;
      const t = v6 ? this.v6 : this.v4, L = v6 ? V6 : V4, count = v6 ? this.nodes6 : this.nodes4;
      const at = v6 ? v6At(this.nodes4) : HEADER_WORDS;
      const d = t.nodes, s = L.stride, out = this.all, pending = this.pending;
      let top = this.top, next = this.next;
      while (top > 0) {
        const fix = pending[--top], n = pending[--top];
        if (next === count) throw new Error('allowed-IPs trie has more nodes than counted');
        const m = next++;
        if (fix !== NONE) out[fix] = m;
        for (let i = 0; i < s; i++) out[at + m * s + i] = d[n * s + i];
        for (let side = 1; side >= 0; side--) {
          const c = d[n * s + L.child + side];
          if (c === NONE) continue;
          pending[top++] = c;
          pending[top++] = at + m * s + L.child + side;
        }
        if (--left <= 0 && top > 0) {
          this.top = top;
          this.next = next;
          return false;
        }
      }
      if (next !== count) throw new Error('allowed-IPs trie has fewer nodes than counted');
      this.family++;
      if (this.family === 1) this.begin(this.v6);
    }
    return true;
  }
}

/**
 * Copies both tries (nodes4 / nodes6 = their live node counts) into `reuse` if it is large enough,
 * else into a new SharedArrayBuffer, and returns the buffer written.
 */
export function writeShared(
  v4: TrieTables, nodes4: number, v6: TrieTables, nodes6: number, reuse?: SharedArrayBuffer,
): SharedArrayBuffer {
  const w = new SharedWriter(v4, nodes4, v6, nodes6, reuse);
  w.step(Infinity);
  return w.sab;
}

/** Views over a buffer made by writeShared (e.g. received by a worker through postMessage). */
export function tablesFromShared(sab: SharedArrayBuffer): AllowedIPsTables {
  const header = new Int32Array(sab, 0, HEADER_WORDS);
  if (header[H_MAGIC] !== MAGIC) throw new TypeError('not an allowed-IPs snapshot');
  const nodes4 = header[H_NODES4], nodes6 = header[H_NODES6];
  if (sab.byteLength < sharedWords(nodes4, nodes6) * 4) throw new RangeError('truncated allowed-IPs snapshot');
  return {
    v4: new TrieTables(header[H_ROOT4], new Int32Array(sab, HEADER_WORDS * 4, nodes4 * V4.stride)),
    v6: new TrieTables(header[H_ROOT6], new Int32Array(sab, v6At(nodes4) * 4, nodes6 * V6.stride)),
  };
}
