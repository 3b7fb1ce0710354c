// The upstream tier put together: one Remote, its health, a puller and the push queue, and the
// views the server and the executor use in place of the local store.
import { join } from "node:path";
import type { Clock, Logger } from "../core";
import type { ActionCache, BlobDigest, LocalBlobFiles } from "../cas";
import { UpstreamHealth } from "./health";
import { BlobPuller } from "./puller";
import type { Remote, RemoteLimits } from "./remote";
import { TieredBlobs } from "./tiered-blobs";
import { TieredResults } from "./tiered-results";
import { WriteBack } from "./write-back";

/** What is pushed: everything clients upload too, only the results of actions run here, or nothing. */
export type UpstreamWrites = "all" | "results" | "none";

export interface UpstreamTierOptions {
  remote: Remote;
  writes: UpstreamWrites;
  /** ROOT: the push queue's journal goes under ROOT/upstream. */
  root: string;
  local: { blobs: LocalBlobFiles; results: ActionCache };
  log: Logger;
  clock: Clock;
  /** The longest the push queue may grow (--upstream-queue). */
  maxQueuedPushes: number;
}

export interface UpstreamTier {
  /** For the CAS and action cache services. */
  clientBlobs: LocalBlobFiles;
  clientResults: ActionCache;
  /** For the executor: blobs it asks about are brought here. */
  executorBlobs: LocalBlobFiles;
  executorResults: ActionCache;
  health: UpstreamHealth;
  pushes: WriteBack;
  /** One line on what the tier did, for the periodic report. */
  summary(): string;
  close(waitMs: number): Promise<void>;
}

const DEFAULT_LIMITS: RemoteLimits = { maxBatchBytes: 4 * 1024 * 1024 - 1024, digestFunctions: ["sha256"], acceptsResults: true, compressed: false };

export function startUpstreamTier(o: UpstreamTierOptions): UpstreamTier {
  const health = new UpstreamHealth(o.remote.address, o.log, o.clock);
  let limits = DEFAULT_LIMITS;
  let closed = false;
  // Asked in the background: an upstream that is down must not hold up start-up. Until it answers,
  // the defaults hold (SHA-256, 4 MiB batches, no compression), and it is asked again when it is up.
  const learnLimits = (): Promise<void> =>
    o.remote.capabilities().then(
      (l) => {
        limits = l;
        health.answered();
        o.log.info(`upstream ${o.remote.address}: ${l.digestFunctions.join(", ")}, batches up to ${l.maxBatchBytes} bytes, streams ${l.compressed ? "zstd-compressed" : "uncompressed"}, ${l.acceptsResults ? "takes" : "does not take"} action results`);
      },
      (err) => {
        health.failed("GetCapabilities", err);
        // Asked again once it is up, if it did not answer at all (a refusal would only be repeated).
        if (!closed && !health.usable) void health.untilUsable().then(() => (closed ? undefined : learnLimits()));
      },
    );
  void learnLimits();
  const serves = (fn: BlobDigest["fn"]) => limits.digestFunctions.includes(fn);
  const maxBatchBytes = () => limits.maxBatchBytes;
  const puller = new BlobPuller(o.local.blobs, o.remote, health, maxBatchBytes, o.log);
  const pushes = new WriteBack({
    dir: join(o.root, "upstream"),
    maxItems: o.maxQueuedPushes,
    remote: o.remote,
    health,
    blobs: o.local.blobs,
    results: o.local.results,
    maxBatchBytes,
    acceptsResults: () => limits.acceptsResults,
    log: o.log,
  });
  const parts = { local: o.local.blobs, remote: o.remote, health, puller, serves };
  const pushResults = o.writes !== "none" ? pushes : undefined;
  const pushAll = o.writes === "all" ? pushes : undefined;
  // A failure is the puller's to record; the completeness check and the client's read ask again.
  const prefetch = (ds: BlobDigest[]) => puller.pull(ds).catch(() => {});
  const results = { local: o.local.results, remote: o.remote, health, serves, recentMisses: new Map<string, number>() };
  return {
    clientBlobs: new TieredBlobs(parts, { fetchWhenAsked: false, pushes: pushAll }),
    clientResults: new TieredResults({ ...results, pushes: pushAll, prefetch }),
    executorBlobs: new TieredBlobs(parts, { fetchWhenAsked: true }),
    executorResults: new TieredResults({ ...results, pushes: pushResults }),
    health,
    pushes,
    summary: () => health.summary(pushes.length),
    async close(waitMs) {
      closed = true;
      await pushes.close(waitMs);
      health.close();
      o.remote.close();
    },
  };
}
