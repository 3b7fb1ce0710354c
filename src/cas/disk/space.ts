// The disk budget the blobs and the action cache share: one LRU index of every file in the store
// (by its path under the root), the pins that keep files in use from eviction, the bytes reserved
// for uploads in progress, and eviction itself. Each file is charged in whole disk blocks, as it
// takes on disk. Recency survives restarts through file mtimes, set at most hourly per file and in
// the background.
import { unlink, utimes } from "node:fs/promises";
import { join } from "node:path";
import { Code, StatusError, nextTurn, type Clock, type Logger } from "../../core";
import { LruIndex } from "../lru-index";

interface Entry {
  /** The file's size rounded up to whole disk blocks. */
  bytes: number;
  /** When the file's mtime was last set to its last use. */
  persistedMs: number;
}

/** A file takes whole blocks on disk; charging that keeps --max-cas-size close to real usage. */
const BLOCK = 4096;
/** Persist recency (mtime) for a used file at most this often. */
export const RECENCY_PERSIST_MS = 60 * 60 * 1000;
/** mtime updates in flight at once when persisting recency. */
const RECENCY_BATCH = 32;

export function charge(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

export class DiskSpace {
  private readonly index = new LruIndex<Entry>();
  private readonly pins = new Map<string, number>();
  private reserved = 0;
  private readonly recencyToPersist = new Set<string>();
  private recencyFlush: Promise<void> | undefined;

  constructor(
    private readonly root: string,
    readonly maxBytes: number,
    private readonly log: Logger,
    private readonly clock: Clock,
  ) {}

  /** Files evicted for room since start. */
  evictions = 0;

  get storedBytes(): number {
    return this.index.totalBytes;
  }

  /** Files stored (blobs, their executable twins, action results). */
  get storedFiles(): number {
    return this.index.size;
  }

  /** True when the file is in the store, without counting as a use. */
  has(key: string): boolean {
    return this.index.has(key);
  }

  /** The bytes a file is charged (whole 4 KiB blocks), without counting as a use; undefined when it is not in the store. */
  chargedBytes(key: string): number | undefined {
    return this.index.peek(key)?.bytes;
  }

  /** Marks a file recently used; false when it is not in the store. */
  use(key: string): boolean {
    const e = this.index.use(key);
    if (!e) return false;
    const now = this.clock.now();
    if (now - e.persistedMs > RECENCY_PERSIST_MS) {
      e.persistedMs = now;
      this.recencyToPersist.add(key);
      this.recencyFlush ??= this.persistRecency();
    }
    return true;
  }

  /** Counts a file that is now in place (nothing changes when it is counted already). */
  add(key: string, size: number, lastUsedMs = this.clock.now()): void {
    this.index.add(key, { bytes: charge(size), persistedMs: lastUsedMs });
  }

  /** Counts a file that replaced the one at key. */
  replace(key: string, size: number): void {
    this.index.remove(key);
    this.add(key, size);
    this.evictWhileOver();
  }

  /** Stops counting a file (its file is gone or going); says why in the log when given a reason. */
  forget(key: string, why?: string): void {
    if (this.index.remove(key) && why) this.log.warn(`${key} ${why}`);
  }

  /** Keeps files from eviction until the returned function is called (once). */
  pin(keys: readonly string[]): () => void {
    for (const key of keys) this.pins.set(key, (this.pins.get(key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const key of keys) {
        const n = (this.pins.get(key) ?? 1) - 1;
        if (n <= 0) this.pins.delete(key);
        else this.pins.set(key, n);
      }
    };
  }

  /** RESOURCE_EXHAUSTED when a file of `size` bytes could never fit, whatever is evicted. */
  checkFits(size: number, what: string): void {
    if (charge(size) > this.maxBytes) {
      throw new StatusError(Code.RESOURCE_EXHAUSTED, `${what} is larger than the whole CAS (--max-cas-size ${this.maxBytes} bytes)`);
    }
  }

  /** Room for `size` more bytes, evicting unpinned files as needed; RESOURCE_EXHAUSTED when there is none. */
  reserve(size: number, what: string): void {
    this.checkFits(size, what);
    this.reserved += charge(size);
    if (!this.evictWhileOver()) {
      this.reserved -= charge(size);
      throw new StatusError(Code.RESOURCE_EXHAUSTED, `no room for ${what}: the CAS is full of blobs in use (--max-cas-size ${this.maxBytes} bytes)`);
    }
  }

  /** Gives back reserved room (the file is in place and counted, or abandoned), then evicts if over. */
  release(size: number): void {
    this.reserved -= charge(size);
    this.evictWhileOver();
  }

  /** Evicts least-recently-used unpinned files until stored + reserved fits the limit. */
  evictWhileOver(): boolean {
    const fits = () => this.index.totalBytes + this.reserved <= this.maxBytes;
    if (fits()) return true;
    for (const [key] of this.index.oldestFirst()) {
      if (fits()) break;
      if (this.pins.has(key)) continue;
      this.index.remove(key);
      this.evictions++;
      const path = join(this.root, key);
      unlink(path).catch((err) => this.log.warn(`evicting ${path}: ${err.message}`));
    }
    return fits();
  }

  /** Resolves once every pending recency update has reached the disk (at shutdown, and for tests). */
  async flush(): Promise<void> {
    while (this.recencyFlush) await this.recencyFlush;
  }

  /**
   * Sets mtimes of recently used files, a batch at a time: after a restart one FindMissingBlobs can
   * touch thousands of old blobs, and one utimes each at once would flood the I/O thread pool that
   * uploads and reads share. Starts on the next turn of the event loop, off the caller's path.
   */
  private async persistRecency(): Promise<void> {
    await nextTurn();
    while (this.recencyToPersist.size > 0) {
      const batch: string[] = [];
      for (const key of this.recencyToPersist) {
        batch.push(key);
        if (batch.length === RECENCY_BATCH) break;
      }
      for (const key of batch) this.recencyToPersist.delete(key);
      const t = new Date(this.clock.now());
      await Promise.all(batch.map((key) => utimes(join(this.root, key), t, t).catch(() => {})));
    }
    this.recencyFlush = undefined;
  }
}
