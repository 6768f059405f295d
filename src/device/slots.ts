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
