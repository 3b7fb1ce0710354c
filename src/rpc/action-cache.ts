// ActionCache: GetActionResult (a miss, or a result with evicted blobs, is NOT_FOUND) and
// UpdateActionResult (refused with FAILED_PRECONDITION when it references blobs not in the CAS).
import {
  ActionCache as ActionCacheService,
  type ActionResult,
  type Digest,
  type GetActionResultRequest,
  type UpdateActionResultRequest,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError } from "../core";
import { formatDigest, fromWire, resolveFunction, type BlobDigest } from "../cas";
import type { ServerContext } from "./context";
import { unary } from "./grpc-service";

/** Inline stdout, stderr or output files only up to this many bytes in total (1 MiB). */
const MAX_INLINE_BYTES = 1024 * 1024;

export function actionCacheService(ctx: ServerContext) {
  const { results, blobs } = ctx;

  async function getActionResult(req: GetActionResultRequest): Promise<ActionResult> {
    const action = fromWire(resolveFunction(req.digestFunction), req.actionDigest, "action_digest");
    const result = await results.get(action);
    ctx.stats.count(result ? "acHits" : "acMisses");
    if (!result) throw new StatusError(Code.NOT_FOUND, `no cached result for action ${formatDigest(action)}`);
    await inlineRequested(result, action, req);
    return result;
  }

  /** Fills stdout_raw, stderr_raw and OutputFile.contents as asked, within MAX_INLINE_BYTES. */
  async function inlineRequested(result: ActionResult, action: BlobDigest, req: GetActionResultRequest) {
    let budget = MAX_INLINE_BYTES;
    const load = async (d: Digest | undefined) => {
      if (!d || d.sizeBytes > BigInt(budget)) return undefined;
      const data = await blobs.get(fromWire(action.fn, d, "inlined blob"));
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

  async function updateActionResult(req: UpdateActionResultRequest): Promise<ActionResult> {
    const action = fromWire(resolveFunction(req.digestFunction), req.actionDigest, "action_digest");
    if (!req.actionResult) throw new StatusError(Code.INVALID_ARGUMENT, "action_result is missing");
    await results.put(action, req.actionResult);
    ctx.stats.count("acUpdates");
    return req.actionResult;
  }

  return {
    service: ActionCacheService,
    handlers: {
      getActionResult: unary(ctx, "GetActionResult", getActionResult),
      updateActionResult: unary(ctx, "UpdateActionResult", updateActionResult),
    },
  };
}
