// A least-recently-used index of sized entries: a plain structure, not thread-safe and doing no I/O;
// its owner decides what a use is and what eviction does. A Map keeps insertion order, so a use
// re-inserts the entry and iteration runs from the least recently used.

export interface Sized {
  /** What the entry counts against the budget. */
  readonly bytes: number;
}

export class LruIndex<V extends Sized> {
  private readonly entries = new Map<string, V>();
  private total = 0;
  /** The most recently used key: using it again changes nothing (a million uses of one blob were a million re-insertions). */
  private newest: string | undefined;

  get size(): number {
    return this.entries.size;
  }

  /** The sum of every entry's bytes. */
  get totalBytes(): number {
    return this.total;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** The entry, without counting as a use. */
  peek(key: string): V | undefined {
    return this.entries.get(key);
  }

  /** Adds an entry as the most recently used; false (and nothing changes) when the key is there already. */
  add(key: string, value: V): boolean {
    if (this.entries.has(key)) return false;
    this.entries.set(key, value);
    this.total += value.bytes;
    this.newest = key;
    return true;
  }

  /** Marks an entry most recently used; undefined when there is none. */
  use(key: string): V | undefined {
    const value = this.entries.get(key);
    if (value === undefined || key === this.newest) return value;
    this.entries.delete(key);
    this.entries.set(key, value);
    this.newest = key;
    return value;
  }

  remove(key: string): V | undefined {
    const value = this.entries.get(key);
    if (value === undefined) return undefined;
    this.entries.delete(key);
    this.total -= value.bytes;
    if (key === this.newest) this.newest = undefined;
    return value;
  }

  /** Entries from the least recently used on; removing the current one while iterating is allowed. */
  oldestFirst(): IterableIterator<[string, V]> {
    return this.entries.entries();
  }
}
