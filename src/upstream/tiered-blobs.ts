// The local store with the upstream behind it. What is here is served from here; what is not is
// asked of the upstream and, once checked, kept here. Two views share one store: the clients'
// (FindMissingBlobs answers from local ∪ upstream, without moving bytes: a blob the upstream has
// need not be uploaded) and the executor's (its inputs must be files here, so what is missing here
// is fetched before it answers).
import { Code, StatusError } from "../core";
import type { BlobDigest, BlobReader, BlobWriter, LocalBlobFiles, ReadRange } from "../cas";
import type { UpstreamHealth } from "./health";
import type { BlobPuller } from "./puller";
import type { Remote } from "./remote";

/** Where blobs that should go upstream are queued (the write-back queue). */
export interface BlobPushes {
  blob(d: BlobDigest): void;
}

export interface TierParts {
  local: LocalBlobFiles;
  remote: Remote;
  health: UpstreamHealth;
  puller: BlobPuller;
  /** Whether the upstream takes digests of this function (from its capabilities). */
  serves(fn: BlobDigest["fn"]): boolean;
}

export class TieredBlobs implements LocalBlobFiles {
  readonly capacityBytes: number;

  constructor(
    private readonly t: TierParts,
    private readonly opts: { fetchWhenAsked: boolean; pushes?: BlobPushes },
  ) {
    this.capacityBytes = t.local.capacityBytes;
  }

  async findMissing(digests: readonly BlobDigest[]): Promise<BlobDigest[]> {
    const here = await this.t.local.findMissing(digests);
    const askable = here.filter((d) => this.t.serves(d.fn) && !this.t.puller.failedBefore(d));
    if (askable.length === 0) return here;
    if (this.opts.fetchWhenAsked) {
      await this.t.puller.pull(askable);
      return this.t.local.findMissing(here);
    }
    const upstreamMissing = await this.t.health.ask("FindMissingBlobs", () => this.t.remote.findMissing(askable), askable);
    const there = new Set(askable).difference(new Set(upstreamMissing));
    return here.filter((d) => !there.has(d));
  }

  async get(d: BlobDigest): Promise<Uint8Array | undefined> {
    return (await this.t.local.get(d)) ?? ((await this.pulled(d)) ? this.t.local.get(d) : undefined);
  }

  async read(d: BlobDigest, range: ReadRange): Promise<BlobReader | undefined> {
    return (await this.t.local.read(d, range)) ?? ((await this.pulled(d)) ? this.t.local.read(d, range) : undefined);
  }

  async put(d: BlobDigest, data: Uint8Array): Promise<boolean> {
    const fresh = await this.t.local.put(d, data);
    if (fresh) this.opts.pushes?.blob(d);
    return fresh;
  }

  async beginWrite(d: BlobDigest): Promise<BlobWriter> {
    const writer = await this.t.local.beginWrite(d);
    const pushes = this.opts.pushes;
    if (!pushes) return writer;
    return {
      get committedSize() {
        return writer.committedSize;
      },
      get superseded() {
        return writer.superseded;
      },
      write: (chunk) => writer.write(chunk),
      commit: async () => {
        await writer.commit();
        pushes.blob(d);
      },
      abort: () => writer.abort(),
    };
  }

  pin(digests: readonly BlobDigest[]): () => void {
    return this.t.local.pin(digests);
  }

  async linkTo(d: BlobDigest, dst: string, executable: boolean): Promise<void> {
    try {
      await this.t.local.linkTo(d, dst, executable);
    } catch (err) {
      if (!(err instanceof StatusError) || err.code !== Code.FAILED_PRECONDITION || !(await this.pulled(d))) throw err;
      await this.t.local.linkTo(d, dst, executable);
    }
  }

  adopt(d: BlobDigest, path: string, links: number): Promise<void> {
    return this.t.local.adopt(d, path, links);
  }

  /** Fetches one blob from the upstream; true when it is here now. */
  private async pulled(d: BlobDigest): Promise<boolean> {
    if (!this.t.serves(d.fn)) return false;
    await this.t.puller.pull([d]);
    return (await this.t.local.findMissing([d])).length === 0;
  }
}
