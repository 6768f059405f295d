// The main thread's side of the slot quarantine: slots it unpublished wait here, tagged with the
// epoch begun after the unpublish, until every worker has crossed a batch boundary since
// (../queues/epoch.ts); then their release runs (a peer slot back to its pool, a keypair's keys
// zeroed and its slot freed). The kernel's call_rcu, with our workers' batches as the grace period.
import type { EpochDomain } from '../queues/epoch.js';

/** How long `reclaimNow` may spin for workers to cross a batch boundary (they do so within microseconds unless descheduled). */
const SPIN_LIMIT_MS = 50;

export class Reclaimer {
  // A FIFO of (epoch, release) in epoch order, as parallel arrays with a head index.
  private epochs: number[] = [];
  private releases: (() => void)[] = [];
  private head = 0;
  /** The epoch retirements since the last advance will wait for (0: none pending). */
  private openEpoch = 0;

  constructor(private readonly domain: EpochDomain) {}

  /**
   * Queues `release` until no worker can hold what the caller has just unpublished. Several
   * retirements in a row share one epoch: call `seal` once after a group (or let `poll` do it).
   */
  retire(release: () => void): void {
    if (this.openEpoch === 0) this.openEpoch = this.domain.current() + 1;
    this.epochs.push(this.openEpoch);
    this.releases.push(release);
  }

  /** Begins the epoch the open group waits for (after everything in it was unpublished). */
  seal(): void {
    if (this.openEpoch === 0) return;
    while (this.domain.current() < this.openEpoch) this.domain.advance();
    this.openEpoch = 0;
  }

  /** Runs the releases whose grace period is over. Returns how many ran. */
  poll(): number {
    this.seal();
    let ran = 0;
    while (this.head < this.epochs.length && this.domain.passed(this.epochs[this.head]!)) {
      const release = this.releases[this.head]!;
      this.releases[this.head] = noop;
      this.head++;
      release();
      ran++;
    }
    if (this.head > 1024 && this.head * 2 > this.epochs.length) {
      this.epochs = this.epochs.slice(this.head);
      this.releases = this.releases.slice(this.head);
      this.head = 0;
    }
    return ran;
  }

  /** Slots waiting. */
  get pending(): number {
    return this.epochs.length - this.head;
  }

  /**
   * When a table is out of free slots: waits (briefly, spinning) for the workers to pass the
   * pending epochs, releasing what it can. Returns whether anything was released.
   */
  reclaimNow(): boolean {
    if (this.pending === 0) return false;
    const deadline = Date.now() + SPIN_LIMIT_MS;
    for (;;) {
      if (this.poll() > 0) return true;
      if (Date.now() > deadline) return false;
    }
  }

  /** Runs every pending release without waiting (the workers are stopped). */
  drainAll(): void {
    while (this.head < this.releases.length) {
      const release = this.releases[this.head]!;
      this.releases[this.head++] = noop;
      release();
    }
    this.epochs = [];
    this.releases = [];
    this.head = 0;
  }
}

const noop = (): void => {};
