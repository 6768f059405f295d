// The load generator's initiations in flight, in the order they were sent, so those that time
// out leave from the front: every initiation has the same timeout, so send order is expiry
// order and one queue needs no sorting. A power-of-two ring that only grows (doubling when
// full), so pushing allocates nothing once it has reached the run's largest backlog.
//
// Entries are pooled objects that the engine reuses once an initiation is answered, long
// before its entry reaches the front. Each entry therefore remembers the object's generation
// when it was pushed; an entry whose object has moved on since is stale and is skipped.

export interface Generational {
  /** Bumped each time the object is reused for a new initiation. */
  readonly generation: number;
}

export class TimeoutQueue<T extends Generational> {
  private items: (T | undefined)[] = new Array<T | undefined>(1024).fill(undefined);
  private generations = new Float64Array(1024);
  private times = new Float64Array(1024);
  private head = 0;
  private tail = 0;

  get length(): number {
    return this.tail - this.head;
  }

  push(item: T, atMs: number): void {
    if (this.length === this.items.length) this.grow();
    const i = this.tail & (this.items.length - 1);
    this.items[i] = item;
    this.generations[i] = item.generation;
    this.times[i] = atMs;
    this.tail++;
  }

  /** When the oldest entry was pushed; Infinity when empty. */
  oldestMs(): number {
    return this.length === 0 ? Infinity : this.times[this.head & (this.items.length - 1)]!;
  }

  /** Removes the oldest entry: its object if still on the same initiation, else undefined. */
  shift(): T | undefined {
    if (this.length === 0) return undefined;
    const i = this.head & (this.items.length - 1);
    const item = this.items[i]!;
    const live = item.generation === this.generations[i];
    this.items[i] = undefined;
    this.head++;
    return live ? item : undefined;
  }

  private grow(): void {
    const n = this.items.length;
    const items = new Array<T | undefined>(2 * n).fill(undefined);
    const generations = new Float64Array(2 * n);
    const times = new Float64Array(2 * n);
    for (let k = 0; k < n; k++) {
      const i = (this.head + k) & (n - 1);
      items[k] = this.items[i];
      generations[k] = this.generations[i]!;
      times[k] = this.times[i]!;
    }
    this.items = items;
    this.generations = generations;
    this.times = times;
    this.head = 0;
    this.tail = n;
  }
}
