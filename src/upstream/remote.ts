// What the upstream tier asks of a team's cache: the REAPI calls it makes, in the store's own types.
// The gRPC client that implements it lives at the edge (rpc/upstream-client.ts), so this folder
// knows no transport. Every method throws a StatusError when the call fails (UNAVAILABLE,
// DEADLINE_EXCEEDED, PERMISSION_DENIED...); the tier decides what a failure means.
import type { ActionResult } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import type { BlobDigest, DigestFunctionName } from "../cas";

/** What the upstream advertises in GetCapabilities. */
export interface RemoteLimits {
  /** max_batch_total_size_bytes (a default of 4 MiB when it says 0). */
  maxBatchBytes: number;
  digestFunctions: readonly DigestFunctionName[];
  /** Whether clients may write action results (action_cache_update_capabilities.update_enabled). */
  acceptsResults: boolean;
  /** Whether streams travel zstd-compressed (both sides take it). */
  compressed: boolean;
}

export interface Remote {
  /** grpc://host:port, for messages. */
  readonly address: string;
  capabilities(): Promise<RemoteLimits>;
  findMissing(digests: readonly BlobDigest[]): Promise<BlobDigest[]>;
  /** undefined when the upstream has no result for the action. */
  getActionResult(action: BlobDigest): Promise<ActionResult | undefined>;
  updateActionResult(action: BlobDigest, result: ActionResult): Promise<void>;
  /** Small blobs at once (their sizes summing to at most maxBatchBytes); those it lacks are left out. */
  batchRead(digests: readonly BlobDigest[]): Promise<Map<BlobDigest, Uint8Array>>;
  batchUpdate(blobs: readonly { digest: BlobDigest; data: Uint8Array }[]): Promise<void>;
  /** A blob's bytes in chunks; NOT_FOUND when the upstream lacks it. Unchecked: the caller verifies. */
  read(d: BlobDigest): AsyncIterable<Uint8Array>;
  /** Uploads a blob from its chunks (ByteStream Write). */
  write(d: BlobDigest, chunks: AsyncIterable<Uint8Array>): Promise<void>;
  close(): void;
}
