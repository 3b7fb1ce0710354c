// One streamed upload: a temporary file under tmp/ and the running hash. Room is reserved as the
// bytes arrive (a little ahead, a megabyte at a time), never for the size a client only declares:
// a request naming a 20 GiB blob and sending one byte must not evict anything. commit() verifies
// and publishes, abort() discards, and either gives the reservation back.
import { unlink, type FileHandle } from "node:fs/promises";
import { Code, StatusError, type Hasher } from "../../core";
import type { BlobWriter } from "../blob-store";
import { formatDigest, type BlobDigest } from "../digest";
import type { BlobFiles } from "./blob-files";
import { storeKey } from "./layout";
import { charge } from "./space";

/** Uploads reach the disk in writes of about this size. */
const WRITE_BATCH_BYTES = 1024 * 1024;
/** Room is reserved at least this far ahead of the bytes received, so reservations stay few. */
const RESERVE_AHEAD_BYTES = 1024 * 1024;

export class DiskBlobWriter implements BlobWriter {
  private written = 0;
  private done = false;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  /** Bytes reserved in the disk budget so far (whole blocks). */
  private reserved = 0;
  private readonly key: string;

  constructor(
    private readonly files: BlobFiles,
    readonly digest: BlobDigest,
    private readonly tmp: string,
    private readonly fh: FileHandle,
    private readonly hasher: Hasher,
  ) {
    this.key = storeKey("cas", digest);
  }

  get committedSize(): number {
    return this.written;
  }

  get superseded(): boolean {
    return this.files.space.has(this.key);
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.written + chunk.length > this.digest.size) {
      throw new StatusError(Code.INVALID_ARGUMENT, `blob ${formatDigest(this.digest)}: received more than the ${this.digest.size} bytes its digest says`);
    }
    this.reserveFor(this.written + chunk.length);
    this.hasher.update(chunk);
    // Clients send small chunks (Bazel: 16 KiB); one write call per MiB costs far less than one per chunk.
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.written += chunk.length;
    if (this.pendingBytes >= WRITE_BATCH_BYTES) await this.flush();
  }

  /** Makes sure room is reserved for `bytes` in all; RESOURCE_EXHAUSTED when the store has none. */
  private reserveFor(bytes: number): void {
    if (charge(bytes) <= this.reserved) return;
    const target = charge(Math.min(this.digest.size, bytes + RESERVE_AHEAD_BYTES));
    this.files.space.reserve(target - this.reserved, `blob ${formatDigest(this.digest)}`);
    this.reserved = target;
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

  async commit(): Promise<void> {
    if (this.written !== this.digest.size) {
      throw new StatusError(Code.INVALID_ARGUMENT, `blob ${formatDigest(this.digest)}: received ${this.written} bytes, digest says ${this.digest.size}`);
    }
    await this.flush();
    const actual = this.hasher.digestHex();
    if (actual !== this.digest.hash) {
      throw new StatusError(Code.INVALID_ARGUMENT, `digest mismatch: content hashes to ${actual} (${this.digest.fn}), not ${this.digest.hash}`);
    }
    await this.fh.chmod(0o444);
    await this.fh.close();
    this.done = true;
    try {
      await this.files.place(this.tmp, this.key, this.digest.size);
    } finally {
      this.files.space.release(this.reserved);
      this.reserved = 0;
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.fh.close().catch(() => {});
    await unlink(this.tmp).catch(() => {});
    this.files.space.release(this.reserved);
    this.reserved = 0;
  }
}
