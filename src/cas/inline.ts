// Inlining blobs into an ActionResult, as GetActionResult and Execute requests may ask
// (inline_stdout, inline_stderr, inline_output_files): within a total budget, each blob whole or
// not at all; what does not fit is left to be fetched by digest.
import type { ActionResult, Digest } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import type { BlobStore } from "./blob-store";
import { fromWire, type DigestFunctionName } from "./digest";

export interface InlineRequest {
  inlineStdout: boolean;
  inlineStderr: boolean;
  inlineOutputFiles: readonly string[];
}

/** Inline at most this many bytes in total (1 MiB). */
export const MAX_INLINE_BYTES = 1024 * 1024;

/** Fills stdout_raw, stderr_raw and OutputFile.contents of `result` (in place) as asked. */
export async function inlineBlobs(blobs: BlobStore, fn: DigestFunctionName, result: ActionResult, req: InlineRequest): Promise<void> {
  let budget = MAX_INLINE_BYTES;
  const load = async (d: Digest | undefined) => {
    if (!d || d.sizeBytes > BigInt(budget)) return undefined;
    const data = await blobs.get(fromWire(fn, d, "inlined blob"));
    if (data) budget -= data.length;
    return data;
  };
  if (req.inlineStdout) result.stdoutRaw = (await load(result.stdoutDigest)) ?? result.stdoutRaw;
  if (req.inlineStderr) result.stderrRaw = (await load(result.stderrDigest)) ?? result.stderrRaw;
  const wanted = new Set(req.inlineOutputFiles);
  for (const f of result.outputFiles) {
    if (wanted.has(f.path)) f.contents = (await load(f.digest)) ?? f.contents;
  }
}
