// Brings blobs from the upstream into the local store, checked: every byte goes through the local
// store's own verification (put, or a streamed write whose commit checks size and hash), so bytes
// that do not match their digest are never stored or served. Small blobs travel in batches within
// the upstream's limit, big ones as streams; a blob already on its way is not asked for twice.
import { Code, StatusError, type Logger } from "../core";
import { digestKey, formatDigest, type BlobDigest, type LocalBlobFiles } from "../cas";
import type { Remote } from "./remote";
import type { UpstreamHealth } from "./health";

/** Blobs at most this big travel in batches (both ways); bigger ones as streams. */
export const BATCH_BLOB_BYTES = 256 * 1024;
/** Upstream calls one pull makes at once. */
const PARALLEL_CALLS = 4;
/** How many blobs the upstream failed to deliver are remembered. */
const UNDELIVERED_KEPT = 100_000;

export class BlobPuller {
  private readonly inFlight = new Map<string, Promise<void>>();
  /**
   * Blobs the upstream said it had but did not deliver whole and matching (damaged, or gone): no
   * longer counted as there, so a client that was told not to upload one is told to now.
   */
  private readonly undelivered = new Set<string>();

  constructor(
    private readonly local: LocalBlobFiles,
    private readonly remote: Remote,
    private readonly health: UpstreamHealth,
    private readonly maxBatchBytes: () => number,
    private readonly log: Logger,
  ) {}

  /** Whether the upstream failed to deliver d before (it is then not to be counted on for it). */
  failedBefore(d: BlobDigest): boolean {
    return this.undelivered.has(digestKey(d));
  }

  /** Fetches those of `digests` not here that the upstream has; resolves when all are done or given up. */
  async pull(digests: readonly BlobDigest[]): Promise<void> {
    if (!this.health.usable) {
      this.health.count("skippedCalls");
      return;
    }
    const waits = new Set<Promise<void>>();
    const fresh = new Map<string, BlobDigest>();
    for (const d of await this.local.findMissing(digests)) {
      if (d.size > this.local.capacityBytes) continue;
      const key = digestKey(d);
      const pending = this.inFlight.get(key);
      if (pending) waits.add(pending);
      else fresh.set(key, d);
    }
    const work = this.fetch([...fresh.values()]);
    const keys = [...fresh.keys()];
    for (const key of keys) this.inFlight.set(key, work);
    try {
      await Promise.all([work, ...waits]);
    } finally {
      for (const key of keys) this.inFlight.delete(key);
    }
  }

  private async fetch(digests: BlobDigest[]): Promise<void> {
    const small = digests.filter((d) => d.size <= BATCH_BLOB_BYTES);
    const big = digests.filter((d) => d.size > BATCH_BLOB_BYTES);
    const jobs: (() => Promise<void>)[] = [];
    for (const batch of batches(small, this.maxBatchBytes())) jobs.push(() => this.fetchBatch(batch));
    for (const d of big) jobs.push(() => this.fetchStream(d));
    let next = 0;
    const worker = async () => {
      while (next < jobs.length && this.health.usable) await jobs[next++]!();
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_CALLS, jobs.length) }, worker));
  }

  private async fetchBatch(batch: BlobDigest[]): Promise<void> {
    const got = await this.health.ask("BatchReadBlobs", () => this.remote.batchRead(batch), new Map<BlobDigest, Uint8Array>());
    for (const [d, data] of got) {
      try {
        await this.local.put(d, data);
        this.counted(d);
      } catch (err) {
        if (!(err instanceof StatusError) || err.code !== Code.INVALID_ARGUMENT) throw err;
        // A batch that lied may be a proxy's fault: ask for that blob once more, as a stream.
        this.health.corrupt(`blob ${formatDigest(d)} in a batch`, err.message);
        await this.fetchStream(d);
      }
    }
  }

  private async fetchStream(d: BlobDigest): Promise<void> {
    const writer = await this.local.beginWrite(d);
    try {
      for await (const chunk of this.remote.read(d)) {
        if (writer.superseded) break;
        await writer.write(chunk);
      }
      if (!writer.superseded) await writer.commit();
      this.counted(d);
    } catch (err) {
      await writer.abort();
      const code = err instanceof StatusError ? err.code : Code.UNKNOWN;
      if (code === Code.NOT_FOUND || code === Code.INVALID_ARGUMENT) this.remember(d);
      if (code === Code.INVALID_ARGUMENT) this.health.corrupt(`blob ${formatDigest(d)}`, (err as Error).message);
      else if (code !== Code.NOT_FOUND) this.health.failed("ByteStream.Read", err);
    }
  }

  private remember(d: BlobDigest): void {
    if (this.undelivered.size >= UNDELIVERED_KEPT) this.undelivered.delete(this.undelivered.values().next().value!);
    this.undelivered.add(digestKey(d));
  }

  private counted(d: BlobDigest): void {
    this.health.count("blobsFetched");
    this.health.count("bytesFetched", d.size);
    this.log.debug(`fetched ${formatDigest(d)} from the upstream`);
  }
}

/** Groups digests so that each group's sizes sum to at most maxBytes (less a little for framing). */
export function batches(digests: readonly BlobDigest[], maxBytes: number): BlobDigest[][] {
  const out: BlobDigest[][] = [];
  let current: BlobDigest[] = [];
  let bytes = 0;
  for (const d of digests) {
    const cost = d.size + 100;
    if (current.length > 0 && bytes + cost > maxBytes) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(d);
    bytes += cost;
  }
  if (current.length > 0) out.push(current);
  return out;
}
