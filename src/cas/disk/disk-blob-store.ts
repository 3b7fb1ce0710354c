// The content-addressable store on disk: each blob a read-only file named by its digest, checked on
// the way in and on every read. Uploads go to tmp/ while they are hashed and enter the store whole
// (BlobFiles.place); a blob that no longer matches its digest is dropped and never served.
import { open, type FileHandle } from "node:fs/promises";
import { rmSync, writeFileSync } from "node:fs";
import { Code, StatusError, errnoCode, hashBytes, newHasher, slices } from "../../core";
import type { BlobReader, BlobWriter, LocalBlobFiles, ReadRange } from "../blob-store";
import { formatDigest, type BlobDigest } from "../digest";
import type { BlobFiles } from "./blob-files";
import { DiskBlobWriter } from "./blob-writer";
import { storeKey } from "./layout";
import { adoptFile, linkBlob } from "./links";

export class DiskBlobStore implements LocalBlobFiles {
  constructor(private readonly files: BlobFiles) {}

  get capacityBytes(): number {
    return this.files.space.maxBytes;
  }

  async findMissing(digests: readonly BlobDigest[]): Promise<BlobDigest[]> {
    const missing: BlobDigest[] = [];
    const pause = slices(10_000);
    for (const d of digests) {
      if (!this.files.space.use(storeKey("cas", d))) missing.push(d);
      await pause();
    }
    return missing;
  }

  async get(d: BlobDigest): Promise<Uint8Array | undefined> {
    const key = storeKey("cas", d);
    if (!this.files.space.use(key)) return undefined;
    let data: Uint8Array;
    try {
      data = await Bun.file(this.files.path(key)).bytes();
    } catch (err) {
      if (errnoCode(err) === "ENOENT") return this.files.vanished(key);
      throw err;
    }
    // Verified on every read: a damaged blob is removed (so it can be uploaded again), never served.
    if (data.length !== d.size || (await hashBytes(d.fn, data)) !== d.hash) return this.files.discardDamaged(key);
    return data;
  }

  async read(d: BlobDigest, range: ReadRange): Promise<BlobReader | undefined> {
    const key = storeKey("cas", d);
    if (!this.files.space.use(key)) return undefined;
    const unpin = this.files.space.pin([key]);
    let fh: FileHandle;
    try {
      fh = await open(this.files.path(key), "r");
    } catch (err) {
      unpin();
      if (errnoCode(err) === "ENOENT") return this.files.vanished(key);
      throw err;
    }
    const end = range.limit === 0 ? d.size : Math.min(d.size, range.offset + range.limit);
    const whole = range.offset === 0 && end === d.size;
    const hasher = whole ? await newHasher(d.fn) : undefined;
    let closed = false;
    const release = async () => {
      if (closed) return;
      closed = true;
      await fh.close().catch(() => {});
      unpin();
    };
    const files = this.files;
    async function* chunks(): AsyncGenerator<Uint8Array> {
      try {
        let at = range.offset;
        while (at < end) {
          const want = Math.min(range.chunkBytes, end - at);
          const { bytesRead, buffer } = await fh.read(Buffer.allocUnsafe(want), 0, want, at);
          if (bytesRead === 0) break;
          const chunk = bytesRead === want ? buffer : buffer.subarray(0, bytesRead);
          hasher?.update(chunk);
          at += bytesRead;
          yield chunk;
        }
        // A whole read is checked at its end; damage is DATA_LOSS, not silence.
        if (at < end || (hasher && hasher.digestHex() !== d.hash)) {
          files.discardDamaged(key);
          throw new StatusError(Code.DATA_LOSS, `blob ${formatDigest(d)} was damaged on disk and has been removed; upload it again`);
        }
      } finally {
        await release();
      }
    }
    const iterator = chunks();
    return {
      [Symbol.asyncIterator]: () => iterator,
      async close() {
        await iterator.return(undefined);
        await release();
      },
    };
  }

  /**
   * Small blobs (batch uploads) dominate by count, so this path is one hash and one synchronous
   * create-write, then a link into place: no streaming.
   */
  async put(d: BlobDigest, data: Uint8Array): Promise<boolean> {
    const key = storeKey("cas", d);
    if (this.files.space.use(key)) return false;
    const actual = await hashBytes(d.fn, data);
    if (actual !== d.hash) {
      throw new StatusError(Code.INVALID_ARGUMENT, `digest mismatch: content hashes to ${actual} (${d.fn}), not ${d.hash}`);
    }
    this.files.space.reserve(d.size, `blob ${formatDigest(d)}`);
    const tmp = this.files.tempPath();
    try {
      writeFileSync(tmp, data, { mode: 0o444, flag: "wx" });
      await this.files.place(tmp, key, d.size);
      return true;
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    } finally {
      this.files.space.release(d.size);
    }
  }

  async beginWrite(d: BlobDigest): Promise<BlobWriter> {
    // Room is reserved as the bytes come (see DiskBlobWriter); one that can never fit is refused now.
    this.files.space.checkFits(d.size, `blob ${formatDigest(d)}`);
    const tmp = this.files.tempPath();
    const fh = await open(tmp, "wx", 0o600);
    return new DiskBlobWriter(this.files, d, tmp, fh, await newHasher(d.fn));
  }

  pin(digests: readonly BlobDigest[]): () => void {
    return this.files.space.pin(digests.map((d) => storeKey("cas", d)));
  }

  linkTo(d: BlobDigest, dst: string, executable: boolean): Promise<void> {
    return linkBlob(this.files, d, dst, executable);
  }

  adopt(d: BlobDigest, path: string, links: number): Promise<void> {
    return adoptFile(this.files, d, path, links);
  }
}
