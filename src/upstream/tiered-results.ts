// The local action cache with the upstream's behind it. A local miss asks the upstream; an entry
// it has is kept here as it came (CompleteResults above checks, on every hit, that each blob it
// names is here or upstream). Results stored here are queued for the upstream when this view pushes.
import type { ActionResult } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { checkOutputPaths, digestKey, fromWire, type ActionCache, type BlobDigest } from "../cas";
import type { UpstreamHealth } from "./health";
import type { Remote } from "./remote";

export interface ResultPushes {
  result(action: BlobDigest): void;
}

/**
 * How long an upstream miss is believed without asking again: Bazel asks GetActionResult, then
 * Execute looks the action up once more a moment later, and one round trip to the upstream is enough.
 */
const MISS_TTL_MS = 5_000;
const MISSES_KEPT = 10_000;
/** An upstream hit's outputs up to this much in all are fetched with it, before the client asks. */
const PREFETCH_BYTES = 4 * 1024 * 1024;

export interface TieredResultsParts {
  local: ActionCache;
  remote: Remote;
  health: UpstreamHealth;
  /** Whether the upstream takes digests of this function. */
  serves(fn: BlobDigest["fn"]): boolean;
  /** Actions the upstream had no result for, and until when that is believed (shared by the views). */
  recentMisses: Map<string, number>;
  /** Where results stored through this view are queued for the upstream (none: not pushed). */
  pushes?: ResultPushes;
  /** Fetches blobs a client is about to ask for (a hit's outputs); the clients' view only. */
  prefetch?: (digests: BlobDigest[]) => Promise<void>;
}

export class TieredResults implements ActionCache {
  constructor(private readonly t: TieredResultsParts) {}

  async get(action: BlobDigest): Promise<ActionResult | undefined> {
    const { local, remote, health, recentMisses } = this.t;
    const here = await local.get(action);
    if (here || !this.t.serves(action.fn)) return here;
    const key = digestKey(action);
    if ((recentMisses.get(key) ?? 0) > Date.now()) return undefined;
    let there = await health.ask("GetActionResult", () => remote.getActionResult(action), undefined);
    if (there) {
      try {
        // The same rule as for a client's UpdateActionResult: no output path may leave the working directory.
        checkOutputPaths(there);
      } catch (err) {
        health.refusedResult(action, (err as Error).message);
        there = undefined;
      }
    }
    health.count(there ? "resultHits" : "resultMisses");
    if (there) {
      await local.put(action, there);
      await this.prefetchOutputs(action, there);
    } else {
      if (recentMisses.size >= MISSES_KEPT) recentMisses.clear();
      recentMisses.set(key, Date.now() + MISS_TTL_MS);
    }
    return there;
  }

  /**
   * A client that takes a hit downloads its outputs next (Bazel does, by default): the small ones
   * come with the hit, in batches, and are then here both for the completeness check (no upstream
   * FindMissingBlobs for them) and for the downloads (no round trip each).
   */
  private async prefetchOutputs(action: BlobDigest, r: ActionResult): Promise<void> {
    const prefetch = this.t.prefetch;
    if (!prefetch) return;
    const wanted: BlobDigest[] = [];
    let bytes = 0;
    for (const d of [...r.outputFiles.map((f) => f.digest), r.stdoutDigest, r.stderrDigest]) {
      if (!d || d.sizeBytes === 0n) continue;
      let digest: BlobDigest;
      try {
        digest = fromWire(action.fn, d, "output");
      } catch {
        continue; // a malformed entry: CompleteResults turns it into a miss
      }
      if (bytes + digest.size > PREFETCH_BYTES) continue;
      bytes += digest.size;
      wanted.push(digest);
    }
    if (wanted.length > 0) await prefetch(wanted);
  }

  async put(action: BlobDigest, result: ActionResult): Promise<void> {
    await this.t.local.put(action, result);
    this.t.pushes?.result(action);
  }
}
