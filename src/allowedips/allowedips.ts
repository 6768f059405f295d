/**
 * Cryptokey routing table ("allowed IPs"): IPv4 and IPv6 prefixes, each owned by one peer slot,
 * with longest-prefix-match lookup. Mirrors the kernel's allowedips.c: a path-compressed binary
 * trie per family, inputs masked to their prefix, a prefix re-inserted for another peer moves to
 * it, and each peer keeps its prefixes in a list in insertion order (what `wg show` prints).
 *
 * Owned by the control plane (main thread). Nodes live in one flat Int32Array per family (layout
 * in lookup.ts) that grows by doubling and recycles freed nodes through a free list. Workers never
 * read these arrays while they change: they read a published copy made by `snapshot()`.
 *
 * Memory per node: v4 16 bytes + 8 bytes of peer-list links, v6 32 + 8. A trie of N prefixes
 * needs at most 2N - 1 nodes (N plus glue). There is no parent link: removal walks down from the
 * root again (at most 129 steps), cheap on the control plane and 4 bytes per node saved.
 */

import {
  NONE, V4, V6, SharedWriter, TrieTables, cidrOf, lookupV4In, lookupV6In, metaOf, peerOf, word, writeShared,
  type AllowedIPsTables, type Layout,
} from './lookup.js';

export { lookupV4In, lookupV6In, tablesFromShared, SharedWriter, TrieTables, type AllowedIPsTables } from './lookup.js';

/** The kernel's cap on peers per device; peer slots are 0 .. ALLOWEDIPS_MAX_PEERS - 1. */
export const ALLOWEDIPS_MAX_PEERS = 1 << 20;

const INITIAL_NODES = 64;
const INITIAL_PEERS = 64;

/** Bit number `c` (0 = most significant) of the key whose first word is words[off]. */
function bitAt(words: Int32Array, off: number, c: number): number {
  return (words[off + (c >>> 5)] >>> (31 - (c & 31))) & 1;
}

/** Zeroes the bits of words[off .. off+count-1] after the first `c`. */
function maskTo(words: Int32Array, off: number, count: number, c: number): void {
  for (let i = 0; i < count; i++) {
    const keep = c - i * 32;
    if (keep <= 0) words[off + i] = 0;
    else if (keep < 32) words[off + i] &= -1 << (32 - keep);
  }
}

function grown(a: Int32Array, length: number): Int32Array {
  const b = new Int32Array(length);
  b.set(a);
  return b;
}

/**
 * One family's trie: the readable tables plus what only the writer needs (peer-list links, free
 * list, high-water mark). Methods re-read `t.nodes` after every alloc, since growing replaces it.
 */
class Trie {
  t!: TrieTables;
  /** Per-node links of the owning peer's prefix list, as handles (see AllowedIPs). */
  next!: Int32Array;
  prev!: Int32Array;
  /** Nodes ever handed out; nodes [0, used) are in the trie or on the free list. */
  used = 0;
  free = NONE;
  live = 0;
  /** Parent and grandparent of the node the last place()/find() returned. */
  parent = NONE;
  grand = NONE;
  readonly words: number;
  private readonly stride: number;
  private readonly childAt: number;
  private readonly metaAt: number;

  constructor(layout: Layout, readonly family: 0 | 1, private readonly initialNodes = INITIAL_NODES) {
    this.words = layout.words;
    this.stride = layout.stride;
    this.childAt = layout.child;
    this.metaAt = layout.meta;
    this.reset();
  }

  reset(): void {
    this.t = new TrieTables(NONE, new Int32Array(this.initialNodes * this.stride));
    this.next = new Int32Array(this.initialNodes);
    this.prev = new Int32Array(this.initialNodes);
    this.used = 0;
    this.free = NONE;
    this.live = 0;
  }

  get byteLength(): number {
    return this.t.nodes.byteLength + this.next.byteLength + this.prev.byteLength;
  }

  cidr(n: number): number {
    return cidrOf(this.t.nodes[n * this.stride + this.metaAt]);
  }

  peer(n: number): number {
    return peerOf(this.t.nodes[n * this.stride + this.metaAt]);
  }

  setPeer(n: number, peer: number): void {
    const i = n * this.stride + this.metaAt;
    this.t.nodes[i] = metaOf(cidrOf(this.t.nodes[i]), peer);
  }

  /** Index in t.nodes of node n's child on side `bit`. */
  private slot(n: number, bit: number): number {
    return n * this.stride + this.childAt + bit;
  }

  private child(n: number, bit: number): number {
    return this.t.nodes[this.slot(n, bit)];
  }

  /** A fresh node holding k masked to c, with no peer and no children. */
  private alloc(k: Int32Array, c: number): number {
    let n = this.free;
    if (n !== NONE) {
      this.free = this.child(n, 0);
    } else {
      const capacity = this.next.length;
      if (this.used === capacity) {
        this.t.nodes = grown(this.t.nodes, capacity * 2 * this.stride);
        this.next = grown(this.next, capacity * 2);
        this.prev = grown(this.prev, capacity * 2);
      }
      n = this.used++;
    }
    const d = this.t.nodes, w = this.words, off = n * this.stride;
    for (let i = 0; i < w; i++) d[off + i] = k[i];
    maskTo(d, off, w, c);
    d[off + this.childAt] = NONE;
    d[off + this.childAt + 1] = NONE;
    d[off + this.metaAt] = metaOf(c, NONE);
    this.live++;
    return n;
  }

  private release(n: number): void {
    this.setPeer(n, NONE);
    this.t.nodes[this.slot(n, 0)] = this.free;
    this.free = n;
    this.live--;
  }

  /** Number of leading bits node n's key shares with k. */
  private common(n: number, k: Int32Array): number {
    const d = this.t.nodes, w = this.words, off = n * this.stride;
    for (let i = 0; i < w; i++) {
      const x = d[off + i] ^ k[i];
      if (x !== 0) return i * 32 + Math.clz32(x);
    }
    return w * 32;
  }

  /** Which side of a node with prefix length c the node `n` hangs on. */
  private side(c: number, n: number): number {
    return bitAt(this.t.nodes, n * this.stride, c);
  }

  /** Hangs `node` under `parent` (or makes it the root) on the side its key selects. */
  private link(parent: number, node: number): void {
    if (parent === NONE) this.t.root = node;
    else this.t.nodes[this.slot(parent, this.side(this.cidr(parent), node))] = node;
  }

  /** Puts `to` where `from` hangs under `parent` (or at the root). */
  private replace(parent: number, from: number, to: number): void {
    if (parent === NONE) this.t.root = to;
    else this.t.nodes[this.slot(parent, this.child(parent, 0) === from ? 0 : 1)] = to;
  }

  /**
   * Deepest node on k's path whose prefix contains k/c (so its cidr is at most c), or NONE;
   * sets this.parent / this.grand to its ancestors. k must be masked to c.
   */
  private place(k: Int32Array, c: number): number {
    let n = this.t.root, found = NONE, parent = NONE, grand = NONE;
    while (n !== NONE) {
      const nc = this.cidr(n);
      if (nc > c || this.common(n, k) < nc) break;
      grand = parent;
      parent = found;
      found = n;
      if (nc === c) break;
      n = this.child(n, bitAt(k, 0, nc));
    }
    this.parent = parent;
    this.grand = grand;
    return found;
  }

  /** The node for exactly k/c (glue or owned), or NONE; sets this.parent / this.grand. */
  find(k: Int32Array, c: number): number {
    const n = this.place(k, c);
    return n !== NONE && this.cidr(n) === c ? n : NONE;
  }

  /** The node for exactly k/c, created (without a peer) if missing. The kernel's add(). */
  ensure(k: Int32Array, c: number): number {
    const found = this.place(k, c);
    if (found !== NONE && this.cidr(found) === c) return found;
    const node = this.alloc(k, c);
    let down: number;
    if (found === NONE) {
      down = this.t.root;
      if (down === NONE) {
        this.t.root = node;
        return node;
      }
    } else {
      const slot = this.slot(found, bitAt(k, 0, this.cidr(found)));
      down = this.t.nodes[slot];
      if (down === NONE) {
        this.t.nodes[slot] = node;
        return node;
      }
    }
    // `down` diverges from k/c somewhere below `found`: either it lies inside k/c (node becomes
    // its parent) or they split at bit `split` and a glue node joins the two.
    const split = Math.min(c, this.common(down, k));
    if (split === c) {
      this.t.nodes[this.slot(node, this.side(c, down))] = down;
      this.link(found, node);
      return node;
    }
    const glue = this.alloc(k, split);
    this.t.nodes[this.slot(glue, this.side(split, down))] = down;
    this.t.nodes[this.slot(glue, bitAt(k, 0, split))] = node;
    this.link(found, glue);
    return node;
  }

  /**
   * Removes node n, whose peer the caller has just cleared, from the trie where the last find()
   * located it. A node with two children stays as glue; a glue parent left with one child is
   * spliced out too, so every glue node keeps exactly two children.
   */
  prune(n: number): void {
    const parent = this.parent;
    const c0 = this.child(n, 0), c1 = this.child(n, 1);
    if (c0 !== NONE && c1 !== NONE) return;
    const only = c0 !== NONE ? c0 : c1;
    this.replace(parent, n, only);
    this.release(n);
    if (only !== NONE || parent === NONE || this.peer(parent) !== NONE) return;
    const p0 = this.child(parent, 0);
    this.replace(this.grand, parent, p0 !== NONE ? p0 : this.child(parent, 1));
    this.release(parent);
  }

  /** Copies node n's key into k. */
  keyInto(n: number, k: Int32Array): void {
    for (let i = 0; i < this.words; i++) k[i] = this.t.nodes[n * this.stride + i];
  }

  /** Node n's prefix as network-order bytes. */
  read(n: number): Uint8Array {
    const w = this.words, out = new Uint8Array(w * 4);
    for (let i = 0; i < w; i++) {
      const v = this.t.nodes[n * this.stride + i];
      out[i * 4] = v >>> 24;
      out[i * 4 + 1] = v >>> 16;
      out[i * 4 + 2] = v >>> 8;
      out[i * 4 + 3] = v;
    }
    return out;
  }
}

function checkPeer(peer: number): void {
  if (!Number.isInteger(peer) || peer < 0 || peer >= ALLOWEDIPS_MAX_PEERS) {
    throw new RangeError(`peer slot out of range: ${peer}`);
  }
}

/**
 * The table. Peer-list entries are handles: node index * 2 + family (0 = v4, 1 = v6), so one list
 * threads through both tries; head/tail are per peer slot and grow with the highest slot used.
 */
export class AllowedIPs {
  private readonly v4: Trie;
  private readonly v6: Trie;
  private head = new Int32Array(INITIAL_PEERS).fill(NONE);
  private tail = new Int32Array(INITIAL_PEERS).fill(NONE);
  /** The current key, parsed and masked: one per table so no caller shares scratch space. */
  private readonly k = new Int32Array(4);
  private prefixes = 0;

  /**
   * `initialNodes`: room per family before the first growth. Growing copies every node (~80 ms
   * at 2^20 nodes, a stall in the middle of a large `set`); a caller that expects many prefixes
   * may reserve room up front: fresh arrays are zero pages, resident only once nodes use them.
   */
  constructor(initialNodes = INITIAL_NODES) {
    const n = Math.max(INITIAL_NODES, initialNodes);
    this.v4 = new Trie(V4, 0, n);
    this.v6 = new Trie(V6, 1, n);
  }

  /** Number of prefixes (owned nodes) in both families. */
  get count(): number {
    return this.prefixes;
  }

  /** Trie nodes in use, glue nodes included. */
  get nodeCount(): number {
    return this.v4.live + this.v6.live;
  }

  /** Bytes held by all typed arrays (capacity, not just the nodes in use). */
  get byteLength(): number {
    return this.v4.byteLength + this.v6.byteLength + this.head.byteLength + this.tail.byteLength;
  }

  /** Gives addr/cidr (host bits are ignored) to `peer`, taking it from its previous owner. */
  insert(peer: number, addr: Uint8Array, cidr: number): void {
    checkPeer(peer);
    const trie = this.load(addr, cidr);
    const n = trie.ensure(this.k, cidr);
    const h = (n << 1) | trie.family;
    const owner = trie.peer(n);
    if (owner === NONE) this.prefixes++;
    else this.unlinkEntry(owner, h);
    trie.setPeer(n, peer);
    this.appendEntry(peer, h);
  }

  /** Removes addr/cidr (host bits ignored) if `peer` owns exactly that prefix. */
  remove(peer: number, addr: Uint8Array, cidr: number): boolean {
    checkPeer(peer);
    const trie = this.load(addr, cidr);
    const n = trie.find(this.k, cidr);
    if (n === NONE || trie.peer(n) !== peer) return false;
    this.unlinkEntry(peer, (n << 1) | trie.family);
    this.drop(trie, n);
    return true;
  }

  removeByPeer(peer: number): void {
    checkPeer(peer);
    if (peer >= this.head.length) return;
    for (let h = this.head[peer]; h !== NONE;) {
      const trie = this.trieOf(h), n = h >> 1;
      const next = trie.next[n];
      trie.keyInto(n, this.k);
      trie.find(this.k, trie.cidr(n));
      this.drop(trie, n);
      h = next;
    }
    this.head[peer] = NONE;
    this.tail[peer] = NONE;
  }

  /** The peer's prefixes, oldest insertion first (a re-insert counts as new, as in the kernel). */
  entriesForPeer(peer: number): Array<{ addr: Uint8Array; cidr: number }> {
    checkPeer(peer);
    const out: Array<{ addr: Uint8Array; cidr: number }> = [];
    if (peer >= this.head.length) return out;
    for (let h = this.head[peer]; h !== NONE;) {
      const trie = this.trieOf(h), n = h >> 1;
      out.push({ addr: trie.read(n), cidr: trie.cidr(n) });
      h = trie.next[n];
    }
    return out;
  }

  clear(): void {
    this.v4.reset();
    this.v6.reset();
    this.head = new Int32Array(INITIAL_PEERS).fill(NONE);
    this.tail = new Int32Array(INITIAL_PEERS).fill(NONE);
    this.prefixes = 0;
  }

  /** Peer owning the longest prefix containing the IPv4 address at buf[off..off+3], or -1. */
  lookupV4(buf: Uint8Array, off: number): number {
    return lookupV4In(this.v4.t, buf, off);
  }

  /** Peer owning the longest prefix containing the IPv6 address at buf[off..off+15], or -1. */
  lookupV6(buf: Uint8Array, off: number): number {
    return lookupV6In(this.v6.t, buf, off);
  }

  /**
   * The live arrays, for readers in this thread (lookupV4In / lookupV6In) and for inspection.
   * Valid until the next insert/remove/clear, which may replace the arrays or relink nodes.
   */
  exportTables(): AllowedIPsTables {
    const a = this.v4.t, b = this.v6.t;
    return { v4: new TrieTables(a.root, a.nodes), v6: new TrieTables(b.root, b.nodes) };
  }

  /**
   * A compacted copy of both tries in one SharedArrayBuffer, for workers (`tablesFromShared` on
   * their side), which must treat it as immutable. Costs a walk over every node in use: publish
   * once per configuration change, not per prefix.
   *
   * `reuse` is an earlier snapshot that no reader uses any more (the caller's generation swap
   * guarantees that); it is overwritten if large enough, which spares allocating and
   * first-touching fresh pages — most of the cost on VMs where page faults are slow.
   */
  snapshot(reuse?: SharedArrayBuffer): SharedArrayBuffer {
    return writeShared(this.v4.t, this.v4.live, this.v6.t, this.v6.live, reuse);
  }

  /**
   * As snapshot(), written in steps (`SharedWriter.step`) by a caller that must not hold the
   * main thread for the whole copy; the table must not change until the writer is done.
   */
  snapshotWriter(reuse?: SharedArrayBuffer): SharedWriter {
    return new SharedWriter(this.v4.t, this.v4.live, this.v6.t, this.v6.live, reuse);
  }

  /** Validates addr/cidr, leaves the masked key in this.k and returns the family's trie. */
  private load(addr: Uint8Array, cidr: number): Trie {
    if (!(addr instanceof Uint8Array) || (addr.length !== 4 && addr.length !== 16)) {
      throw new TypeError('address must be a Uint8Array of 4 or 16 bytes');
    }
    const words = addr.length >>> 2;
    if (!Number.isInteger(cidr) || cidr < 0 || cidr > words * 32) {
      throw new RangeError(`cidr out of range for a ${addr.length * 8}-bit address: ${cidr}`);
    }
    for (let i = 0; i < words; i++) {
      this.k[i] = word(addr, i * 4);
    }
    maskTo(this.k, 0, words, cidr);
    return words === 1 ? this.v4 : this.v6;
  }

  /** Clears node n's owner (already unlinked from its list) and takes it out of the trie. */
  private drop(trie: Trie, n: number): void {
    trie.setPeer(n, NONE);
    this.prefixes--;
    trie.prune(n);
  }

  private trieOf(h: number): Trie {
    return (h & 1) === 0 ? this.v4 : this.v6;
  }

  private appendEntry(peer: number, h: number): void {
    if (peer >= this.head.length) this.growPeers(peer);
    const last = this.tail[peer];
    const trie = this.trieOf(h);
    trie.prev[h >> 1] = last;
    trie.next[h >> 1] = NONE;
    if (last === NONE) this.head[peer] = h;
    else this.trieOf(last).next[last >> 1] = h;
    this.tail[peer] = h;
  }

  private unlinkEntry(peer: number, h: number): void {
    const trie = this.trieOf(h);
    const before = trie.prev[h >> 1], after = trie.next[h >> 1];
    if (before === NONE) this.head[peer] = after;
    else this.trieOf(before).next[before >> 1] = after;
    if (after === NONE) this.tail[peer] = before;
    else this.trieOf(after).prev[after >> 1] = before;
  }

  private growPeers(peer: number): void {
    let n = this.head.length * 2;
    while (n <= peer) n *= 2;
    const head = new Int32Array(n).fill(NONE), tail = new Int32Array(n).fill(NONE);
    head.set(this.head);
    tail.set(this.tail);
    this.head = head;
    this.tail = tail;
  }
}
