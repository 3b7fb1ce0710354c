// What every service needs, built once by the command that serves and passed down (no singletons).
import type { Clock, Logger } from "../core";
import type { ActionCache, BlobStore } from "../cas";
import type { Executor } from "../exec";
import type { Fetcher } from "../fetch";
import type { CallTracker } from "./grpc-service";
import type { Stats } from "./stats";

export interface ServerContext {
  blobs: BlobStore;
  /** The action cache as clients see it (completeness checked). */
  results: ActionCache;
  executor: Executor;
  /** The Remote Asset API's work (FetchBlob, PushBlob). */
  fetcher: Fetcher;
  log: Logger;
  /** Calls in progress, for a graceful shutdown. */
  calls: CallTracker;
  /** Traffic counters for the periodic log summary. */
  stats: Stats;
  /** For the server's own waits: keepalives, the expiry of interrupted uploads. */
  clock: Clock;
  /** Advertised max_batch_total_size_bytes: the sum of blob sizes one batch call may carry. */
  maxBatchBytes: number;
  /** Advertised max_cas_blob_size_bytes: the biggest blob the store can hold (0: no limit). */
  maxBlobBytes: number;
}

/** 4 MiB minus 1 KiB: keeps a full batch below gRPC's default 4 MiB receive limit on the client. */
export const DEFAULT_MAX_BATCH_BYTES = 4 * 1024 * 1024 - 1024;
/** ByteStream Read chunk size: well below every client's 4 MiB receive limit. */
export const READ_CHUNK_BYTES = 1024 * 1024;
