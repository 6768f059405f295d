// Slot numbers of a fixed-capacity table: freed ones come back last-freed first, then never-used
// ones in order, the order a stack of every slot would give, without building that stack up
// front (4M entries at the 2^20-peer limit).

export class SlotPool {
  private readonly freed: number[] = [];
  private next: number;

  /** Slots `first` to `capacity - 1`. */
  constructor(first: number, private readonly capacity: number) {
    this.next = first;
  }

  /** A free slot, or -1 when all are taken. */
  take(): number {
    const slot = this.freed.pop();
    if (slot !== undefined) return slot;
    return this.next < this.capacity ? this.next++ : -1;
  }

  /** How many take() can hand out now. */
  get free(): number {
    return this.freed.length + this.capacity - this.next;
  }

  give(slot: number): void {
    this.freed.push(slot);
  }
}

/**
 * Slot numbers that can also be taken by number: the keypair slots of cluster-routable indices
 * (./routable.ts), where the index is drawn first and its low bits name the slot. One flag per
 * slot; take() (the fallback when no drawn index hit a free slot) scans on from where it last
 * stopped.
 */
export class ClaimableSlots {
  private readonly used: Uint8Array;
  private cursor: number;

  /** Slots `first` to `capacity - 1`. */
  constructor(private readonly first: number, private readonly capacity: number) {
    this.used = new Uint8Array(capacity);
    this.cursor = first;
  }

  /** A free slot, or -1 when all are taken. */
  take(): number {
    for (let n = this.first; n < this.capacity; n++) {
      const slot = this.cursor;
      this.cursor = slot + 1 < this.capacity ? slot + 1 : this.first;
      if (this.claim(slot)) return slot;
    }
    return -1;
  }

  /** Takes `slot` if it is in range and free. */
  claim(slot: number): boolean {
    if (slot < this.first || slot >= this.capacity || this.used[slot] !== 0) return false;
    this.used[slot] = 1;
    return true;
  }

  give(slot: number): void {
    this.used[slot] = 0;
  }
}
