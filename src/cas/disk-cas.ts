// The content-addressable store on disk, and the disk budget it shares with the action cache.
//
// Layout under --root: cas/<fn>/<hash[0:2]>/<hash>-<size>, each a read-only blob, and
// ac/<fn>/<hash[0:2]>/<hash>-<size>, each an action cache entry (written by ActionCache). The
// directories are the source of truth: at start they are scanned into one in-memory LRU index of
// both kinds, keyed by path, so --max-cas-size bounds the whole store and evicts either kind.
// A blob is written to a temporary file under <root>/tmp while its hash is computed, then linked
// into place, so a blob is visible only when complete and verified; a crash leaves at most a
// temporary file, removed at start. The size in the name lets the scan drop a file that a power
// loss left shorter than it should be.
import { chmod, chown, copyFile, link, open, unlink, utimes, type FileHandle } from "node:fs/promises";
import { linkSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { Code, StatusError, missingBlobsError } from "../rpc/status";
import { EMPTY_HASH, formatDigest, hashBytes, newHasher, type BlobDigest, type DigestFunctionName, type Hasher } from "./digest";
import type { Logger } from "../log";
import { PRIVILEGED } from "../identity";

interface Entry {
  /** Bytes charged against the limit: the file's size rounded up to whole disk blocks. */
  charged: number;
  /** When the file's mtime was last set; mtime orders eviction across restarts. */
  persistedMs: number;
}

export interface DiskCasOptions {
  root: string;
  maxBytes: number;
  log: Logger;
}

const FUNCTIONS: DigestFunctionName[] = ["sha256", "blake3"];
/** Uploads reach the disk in writes of about this size. */
const WRITE_BATCH_BYTES = 1024 * 1024;
/** Persist recency (mtime) for a touched file at most this often. */
const TOUCH_PERSIST_MS = 60 * 60 * 1000;
/** mtime updates in flight at once when persisting recency. */
const RECENCY_BATCH = 32;
/** A file takes whole blocks on disk; charging that keeps --max-cas-size close to real usage. */
const BLOCK = 4096;

/**
 * A file's place in the store, relative to the root: "cas/..." or "ac/...". A blob also has an
 * executable twin ("<name>.x", mode 0555), made on first need: execroots hardlink files from the
 * store, and a hardlink cannot have its own mode.
 */
function relativePath(kind: "cas" | "ac", d: BlobDigest, executable = false): string {
  return `${kind}/${d.fn}/${d.hash.slice(0, 2)}/${d.hash}-${d.size}${executable ? ".x" : ""}`;
}

function charge(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

export class DiskCas {
  /** Relative paths in least-recently-used order (Map keeps insertion order; a touch re-inserts). */
  private readonly index = new Map<string, Entry>();
  private readonly pins = new Map<string, number>();
  private storedBytes = 0;
  private reservedBytes = 0;
  private readonly recencyToPersist = new Set<string>();
  private recencyFlush: Timer | undefined;

  private constructor(
    readonly root: string,
    readonly maxBytes: number,
    private readonly log: Logger,
  ) {}

  static async open(opts: DiskCasOptions): Promise<DiskCas> {
    const cas = new DiskCas(opts.root, opts.maxBytes, opts.log);
    cas.load();
    return cas;
  }

  get tmpDir(): string {
    return join(this.root, "tmp");
  }

  pathOf(d: BlobDigest): string {
    return join(this.root, relativePath("cas", d));
  }

  /** True when the blob is stored (the empty blob always is). Marks it recently used. */
  has(d: BlobDigest): boolean {
    return this.use(relativePath("cas", d));
  }

  /** True when the blob is stored, without counting as a use (for cheap checks on every chunk). */
  contains(d: BlobDigest): boolean {
    return this.index.has(relativePath("cas", d));
  }

  /** Keeps a blob from eviction until the returned function is called. */
  pin(d: BlobDigest): () => void {
    const key = relativePath("cas", d);
    this.pins.set(key, (this.pins.get(key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.pins.get(key) ?? 1) - 1;
      if (n <= 0) this.pins.delete(key);
      else this.pins.set(key, n);
    };
  }

  /** Reads a whole blob; for small blobs (batch reads, Directory and Tree messages). */
  async read(d: BlobDigest): Promise<Uint8Array | undefined> {
    if (!this.has(d)) return undefined;
    let data: Uint8Array;
    try {
      data = new Uint8Array(await Bun.file(this.pathOf(d)).arrayBuffer());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return this.forget(relativePath("cas", d), "vanished from disk");
      throw err;
    }
    // Verified on every read: a damaged blob is removed (so it can be uploaded again), never served.
    if (data.length !== d.size || (await hashBytes(d.fn, data)) !== d.hash) return this.discardDamaged(d);
    return data;
  }

  /** Removes a blob whose bytes on disk no longer match its digest. */
  discardDamaged(d: BlobDigest): undefined {
    unlink(this.pathOf(d)).catch(() => {});
    return this.forget(relativePath("cas", d), "is damaged on disk (content does not match its digest); removed");
  }

  /** Opens a stored blob for streaming; the caller closes the handle. undefined when missing. */
  async openForRead(d: BlobDigest): Promise<FileHandle | undefined> {
    if (!this.has(d)) return undefined;
    try {
      return await open(this.pathOf(d), "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return this.forget(relativePath("cas", d), "vanished from disk");
      throw err;
    }
  }

  /**
   * Stores a blob held in memory, after checking its digest; true when it was not stored before.
   * Small blobs (batch uploads) dominate
   * by count, so this path is one hash and one synchronous create-write, then a link into place, no streaming.
   */
  async put(d: BlobDigest, data: Uint8Array): Promise<boolean> {
    if (data.length !== d.size) {
      throw new StatusError(Code.INVALID_ARGUMENT, `blob ${formatDigest(d)}: got ${data.length} bytes, digest says ${d.size}`);
    }
    if (this.has(d)) return false;
    const actual = await hashBytes(d.fn, data);
    if (actual !== d.hash) {
      throw new StatusError(Code.INVALID_ARGUMENT, `digest mismatch: content hashes to ${actual} (${d.fn}), not ${d.hash}`);
    }
    this.reserve(d);
    const tmp = join(this.tmpDir, randomUUID());
    try {
      writeFileSync(tmp, data, { mode: 0o444, flag: "wx" });
      await this.publish(d, tmp);
      return true;
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    } finally {
      this.release(d);
    }
  }

  /**
   * Starts a streamed upload: space is reserved up front (evicting if needed), bytes go to a
   * temporary file and through the hasher, and commit() verifies and publishes.
   */
  async beginWrite(d: BlobDigest): Promise<BlobWriter> {
    this.reserve(d);
    const tmp = join(this.tmpDir, randomUUID());
    try {
      const fh = await open(tmp, "wx", 0o600);
      return new BlobWriter(this, d, tmp, fh, await newHasher(d.fn));
    } catch (err) {
      this.reservedBytes -= charge(d.size);
      throw err;
    }
  }

  /** Called by BlobWriter once its temporary file holds the verified blob. */
  async publish(d: BlobDigest, tmp: string): Promise<void> {
    await this.place(tmp, relativePath("cas", d), d.size);
  }

  /**
   * Moves a finished temporary file to key, never over an existing file: a rename over a blob that
   * an execroot is hardlinking at that moment makes the link fail (the replaced inode has no links
   * left). When the file is already there (a concurrent upload, twin or output), it is the same
   * bytes, and the temporary file is dropped.
   */
  private async place(tmp: string, key: string, size: number): Promise<void> {
    try {
      await link(tmp, join(this.root, key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    await unlink(tmp);
    this.add(key, size);
  }

  /**
   * Hardlinks a stored blob (or its executable twin, made on first use) to dst: no data is copied.
   * The caller pins the blob first. Falls back to a copy where a link is impossible (too many
   * links to one inode, another filesystem).
   */
  async linkTo(d: BlobDigest, dst: string, executable: boolean): Promise<void> {
    const key = relativePath("cas", d, executable);
    const src = join(this.root, key);
    if (executable && !this.use(key)) {
      this.reserve(d);
      try {
        await this.placeCopy(this.pathOf(d), key, 0o555, d.size);
      } finally {
        this.release(d);
      }
    }
    try {
      // Synchronous from the use() above: eviction cannot run in between.
      linkSync(src, dst);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") {
        // Gone from disk behind the index's back (removed from outside, or a late eviction unlink):
        // forget it; a twin is made again, a blob is missing.
        this.forget(key, "vanished from disk");
        if (executable && this.has(d)) return this.linkTo(d, dst, executable);
        throw missingBlobsError(`input blob ${formatDigest(d)} is not in the CAS`, [`blobs/${formatDigest(d)}`]);
      }
      if (code !== "EMLINK" && code !== "EXDEV") throw err;
      await copyFile(src, dst);
      await chmod(dst, executable ? 0o555 : 0o444);
    }
  }

  /**
   * Stores a file already hashed to d (an action's output) without copying it: it is made read-only
   * and ours, then hardlinked into the store, so other output paths naming it still find it. A file
   * with other links (an input hardlinked from the store, an executable twin) is never changed in
   * place: it is copied instead. Nothing to do when the blob is already stored.
   */
  async adopt(d: BlobDigest, file: string, st: { nlink: number }): Promise<void> {
    if (this.has(d)) return;
    this.reserve(d);
    try {
      if (st.nlink > 1) return await this.placeCopy(file, relativePath("cas", d), 0o444, d.size);
      if (PRIVILEGED) await chown(file, 0, 0);
      await chmod(file, 0o444);
      try {
        await link(file, this.pathOf(d));
      } catch (err) {
        // Stored meanwhile by another upload or action: the same bytes.
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      this.add(relativePath("cas", d), d.size);
    } finally {
      this.release(d);
    }
  }

  /** Copies a file into the store at key (through tmp/, so it appears whole), read-only with mode. */
  private async placeCopy(from: string, key: string, mode: number, size: number): Promise<void> {
    const tmp = join(this.tmpDir, randomUUID());
    try {
      await copyFile(from, tmp);
      await chmod(tmp, mode);
      await this.place(tmp, key, size);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
  }

  /** Gives back the space reserved by beginWrite, then evicts if over the limit. */
  release(d: BlobDigest): void {
    this.reservedBytes -= charge(d.size);
    this.evictWhileOver();
  }

  /** Where the action cache keeps the entry for this action. */
  acPath(action: BlobDigest): string {
    return join(this.root, relativePath("ac", action));
  }

  /** The action cache wrote (or replaced) an entry of this many bytes. */
  acStored(action: BlobDigest, bytes: number): void {
    this.forget(relativePath("ac", action));
    this.add(relativePath("ac", action), bytes);
    this.evictWhileOver();
  }

  /** The action cache read an entry: it counts as recently used. */
  acUsed(action: BlobDigest): void {
    this.use(relativePath("ac", action));
  }

  /** The action cache removed an entry. */
  acRemoved(action: BlobDigest): void {
    this.forget(relativePath("ac", action));
  }

  private add(key: string, size: number): void {
    if (this.index.has(key)) return;
    this.index.set(key, { charged: charge(size), persistedMs: Date.now() });
    this.storedBytes += charge(size);
  }

  private reserve(d: BlobDigest): void {
    if (charge(d.size) > this.maxBytes) {
      throw new StatusError(
        Code.RESOURCE_EXHAUSTED,
        `blob ${formatDigest(d)} is larger than the whole CAS (--max-cas-size ${this.maxBytes} bytes)`,
      );
    }
    this.reservedBytes += charge(d.size);
    if (!this.evictWhileOver()) {
      this.reservedBytes -= charge(d.size);
      throw new StatusError(
        Code.RESOURCE_EXHAUSTED,
        `no room for blob ${formatDigest(d)}: the CAS is full of blobs in use (--max-cas-size ${this.maxBytes} bytes)`,
      );
    }
  }

  /** Evicts least-recently-used unpinned files until stored + reserved fits the limit. */
  private evictWhileOver(): boolean {
    const fits = () => this.storedBytes + this.reservedBytes <= this.maxBytes;
    if (fits()) return true;
    for (const [key, e] of this.index) {
      if (fits()) break;
      if (this.pins.has(key)) continue;
      this.index.delete(key);
      this.storedBytes -= e.charged;
      const path = join(this.root, key);
      unlink(path).catch((err) => this.log.warn(`evicting ${path}: ${err.message}`));
    }
    return fits();
  }

  /** Marks a file recently used; false when it is not in the store. */
  private use(key: string): boolean {
    const e = this.index.get(key);
    if (!e) return false;
    this.index.delete(key);
    this.index.set(key, e);
    const now = Date.now();
    if (now - e.persistedMs > TOUCH_PERSIST_MS) {
      e.persistedMs = now;
      this.recencyToPersist.add(key);
      this.recencyFlush ??= setTimeout(() => void this.persistRecency(), 0);
    }
    return true;
  }

  /**
   * Sets mtimes of recently used files, a batch at a time in the background: after a restart one
   * FindMissingBlobs can touch thousands of old blobs, and one utimes each at once would flood the
   * I/O thread pool that uploads and reads share.
   */
  private async persistRecency(): Promise<void> {
    while (this.recencyToPersist.size > 0) {
      const batch: string[] = [];
      for (const key of this.recencyToPersist) {
        batch.push(key);
        if (batch.length === RECENCY_BATCH) break;
      }
      for (const key of batch) this.recencyToPersist.delete(key);
      const t = new Date();
      await Promise.all(batch.map((key) => utimes(join(this.root, key), t, t).catch(() => {})));
    }
    this.recencyFlush = undefined;
  }

  /** Drops an index entry (its file is gone or going); logs why when given a reason. */
  private forget(key: string, why?: string): undefined {
    const e = this.index.get(key);
    if (e) {
      this.index.delete(key);
      this.storedBytes -= e.charged;
      if (why) this.log.warn(`${key} ${why}`);
    }
    return undefined;
  }

  /** Rebuilds the index from the directories. Synchronous calls: at start, speed beats concurrency. */
  private load(): void {
    rmSync(this.tmpDir, { recursive: true, force: true });
    mkdirSync(this.tmpDir, { recursive: true });
    const found: { key: string; size: number; mtime: number }[] = [];
    let blobs = 0;
    let twins = 0;
    for (const kind of ["cas", "ac"] as const) {
      for (const fn of FUNCTIONS) {
        const fnDir = join(this.root, kind, fn);
        mkdirSync(fnDir, { recursive: true });
        const shards = new Set(readdirSync(fnDir));
        for (let i = 0; i < 256; i++) {
          const shard = i.toString(16).padStart(2, "0");
          if (!shards.has(shard)) mkdirSync(join(fnDir, shard));
        }
        for (const shard of shards) {
          for (const name of readdirSync(join(fnDir, shard))) {
            const key = `${kind}/${fn}/${shard}/${name}`;
            const m = /^([0-9a-f]{64})-(\d+)(\.x)?$/.exec(name);
            const st = statSync(join(this.root, key), { throwIfNoEntry: false });
            // A blob's size is in its name; an AC entry's name carries the action's size instead.
            const sizeOk = kind === "ac" || st?.size === Number(m?.[2]);
            if (!m || !st?.isFile() || !sizeOk || m[1]!.slice(0, 2) !== shard) {
              this.log.warn(`removing unexpected file in the store: ${key}`);
              rmSync(join(this.root, key), { recursive: true, force: true });
              continue;
            }
            found.push({ key, size: st.size, mtime: st.mtimeMs });
            if (kind === "cas" && !m[3]) blobs++;
            if (m[3]) twins++;
          }
        }
        if (kind === "cas") {
          // The empty blob always exists; keep it on disk so reads need no special case.
          const empty = relativePath("cas", { fn, hash: EMPTY_HASH[fn], size: 0 });
          if (!found.some((f) => f.key === empty)) {
            writeFileSync(join(this.root, empty), "", { mode: 0o444 });
            found.push({ key: empty, size: 0, mtime: Date.now() });
          } else blobs--;
          this.pins.set(empty, 1);
        }
      }
    }
    found.sort((a, b) => a.mtime - b.mtime);
    for (const f of found) {
      this.index.set(f.key, { charged: charge(f.size), persistedMs: f.mtime });
      this.storedBytes += charge(f.size);
    }
    this.evictWhileOver();
    const entries = found.length - blobs - twins - FUNCTIONS.length;
    this.log.info(`store: ${blobs} blobs and ${entries} action results, ${this.storedBytes} bytes of ${this.maxBytes} (--max-cas-size)`);
  }
}

/** One upload in progress: a temporary file plus the running hash. */
export class BlobWriter {
  private written = 0;
  private done = false;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;

  constructor(
    private readonly cas: DiskCas,
    readonly digest: BlobDigest,
    private readonly tmp: string,
    private readonly fh: FileHandle,
    private readonly hasher: Hasher,
  ) {}

  get committedSize(): number {
    return this.written;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.written + chunk.length > this.digest.size) {
      throw new StatusError(
        Code.INVALID_ARGUMENT,
        `blob ${formatDigest(this.digest)}: received more than the ${this.digest.size} bytes its digest says`,
      );
    }
    this.hasher.update(chunk);
    // Clients send small chunks (Bazel: 16 KiB); one write call per MiB costs far less than one per chunk.
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.written += chunk.length;
    if (this.pendingBytes >= WRITE_BATCH_BYTES) await this.flush();
  }

  /** Writes the buffered chunks to the temporary file. */
  private async flush(): Promise<void> {
    let chunks = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    while (chunks.length > 0) {
      let { bytesWritten } = await this.fh.writev(chunks);
      // A short write: drop what was written and go on with the rest.
      while (chunks.length > 0 && bytesWritten >= chunks[0]!.length) bytesWritten -= chunks.shift()!.length;
      if (bytesWritten > 0) chunks = [chunks[0]!.subarray(bytesWritten), ...chunks.slice(1)];
    }
  }

  /** Verifies size and hash, then makes the blob visible. Nothing is stored on a mismatch. */
  async commit(): Promise<void> {
    if (this.written !== this.digest.size) {
      throw new StatusError(
        Code.INVALID_ARGUMENT,
        `blob ${formatDigest(this.digest)}: received ${this.written} bytes, digest says ${this.digest.size}`,
      );
    }
    await this.flush();
    const actual = this.hasher.digestHex();
    if (actual !== this.digest.hash) {
      throw new StatusError(
        Code.INVALID_ARGUMENT,
        `digest mismatch: content hashes to ${actual} (${this.digest.fn}), not ${this.digest.hash}`,
      );
    }
    await this.fh.chmod(0o444);
    await this.fh.close();
    this.done = true;
    try {
      await this.cas.publish(this.digest, this.tmp);
    } finally {
      this.cas.release(this.digest);
    }
  }

  /** Discards the upload; safe to call after commit (then it does nothing). */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.fh.close().catch(() => {});
    await unlink(this.tmp).catch(() => {});
    this.cas.release(this.digest);
  }
}
