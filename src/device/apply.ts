// Applying a validated `set` request in steps between event-loop turns, so that a million-peer
// `wg setconf` (seconds of work) never stops the main thread from answering handshakes and
// running the timers; `get` replies are written the same way (src/uapi/protocol.ts).
//
// A step does a bounded amount of work (`budgetMs`, the clock read every 64 units of work),
// where a unit is one peer removed (`replace_peers`), one peer section's configuration, or
// one of its allowed IPs. The order is the request's: all removals of `replace_peers` first,
// then the sections in order, as the device applied them in one call before.
//
// What others observe while a request is applied across turns (the device decides what to
// publish; see Device.apply):
//   - the main thread (handshakes, timers, a metrics scrape) sees every section before the
//     cursor applied and none after it; a peer's keys, endpoint and keepalive are written in
//     one go, its allowed IPs may span steps;
//   - workers route with the allowed-IPs snapshot published before the request, until the
//     device publishes a new one, which it does only between two sections (when it must to
//     free slots, and at the end): in any snapshot a peer has its old allowed IPs or all of
//     its new ones. Keypairs of removed peers are withdrawn at once, as before.
import { performance } from 'node:perf_hooks';
import type { PeerOps } from '../uapi/peerops.js';

/** What a request is applied to: the device, through the operations the steps need. */
export interface SetTarget<P> {
  /** Removes a peer that `replace_peers` replaces; `isCurrent` said it is still there. */
  removePeer(peer: P): void;
  isCurrent(peer: P): boolean;
  /** Called once the peers `replace_peers` replaces are all removed, before the first of `sections`. */
  afterReplace(sections: number): void;
  /**
   * Applies a section except its allowed IPs (removal, creation, preshared key, endpoint,
   * keepalive, replace_allowed_ips); returns the peer its allowed IPs go to, or undefined
   * when there is none (removed, unknown with update_only, our own key).
   */
  applySection(ops: PeerOps, i: number): P | undefined;
  /** Applies allowed IP `j` of `ops` to `peer`. */
  applyAllowedIp(peer: P, ops: PeerOps, j: number): void;
}

/** How many units of work run between two reads of the clock. */
const CLOCK_EVERY = 64;

export class SetSteps<P> {
  private removed = 0;
  private section = 0;
  /** The peer the current section's allowed IPs go to (undefined: none, or between sections). */
  private peer: P | undefined;
  private ip = 0;

  /** `replaced`: the peers `replace_peers` removes (all peers when the request began), else []. */
  constructor(private readonly ops: PeerOps, private readonly replaced: readonly P[], private readonly target: SetTarget<P>) {}

  /** Sections applied so far. */
  get sectionsDone(): number {
    return this.section;
  }

  /** Whether the cursor is between two sections (no section half applied). */
  get atBoundary(): boolean {
    return this.peer === undefined;
  }

  /** Applies about `budgetMs` of the request; true once all of it is applied. */
  step(budgetMs: number): boolean {
    const until = performance.now() + budgetMs;
    const t = this.target;
    let n = 0;
    const spent = (): boolean => ++n % CLOCK_EVERY === 0 && performance.now() > until;
    while (this.removed < this.replaced.length) {
      const peer = this.replaced[this.removed++]!;
      if (t.isCurrent(peer)) t.removePeer(peer);
      if (this.removed === this.replaced.length) t.afterReplace(this.ops.length);
      if (spent()) return false;
    }
    while (this.section < this.ops.length) {
      const ops = this.ops;
      if (this.peer === undefined) {
        this.peer = t.applySection(ops, this.section);
        this.ip = ops.allowedIpStart(this.section);
      }
      if (this.peer !== undefined) {
        const end = ops.allowedIpEnd(this.section);
        while (this.ip < end) {
          t.applyAllowedIp(this.peer, ops, this.ip++);
          if (this.ip < end && spent()) return false;
        }
      }
      this.peer = undefined;
      this.section++;
      if (spent()) return this.section === this.ops.length;
    }
    return true;
  }
}
