// One streamed upload: a temporary file under tmp/ and the running hash. The room it needs was
// reserved when it began; commit() verifies and publishes, abort() discards, and either gives the
// reservation back.
import { unlink, type FileHandle } from "node:fs/promises";
import { Code, StatusError, type Hasher } from "../../core";
import type { BlobWriter } from "../blob-store";
import { formatDigest, type BlobDigest } from "../digest";
import type { BlobFiles } from "./blob-files";
import { storeKey } from "./layout";

/** Uploads reach the disk in writes of about this size. */
const WRITE_BATCH_BYTES = 1024 * 1024;

export class DiskBlobWriter implements BlobWriter {
  private written = 0;
  private done = false;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
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
      this.files.space.release(this.digest.size);
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.fh.close().catch(() => {});
    await unlink(this.tmp).catch(() => {});
    this.files.space.release(this.digest.size);
  }
}
