// ActionCache: GetActionResult (a miss, or a result with evicted blobs, is NOT_FOUND) and
// UpdateActionResult (refused with FAILED_PRECONDITION when it references blobs not in the CAS).
import {
  ActionCache as ActionCacheService,
  type ActionResult,
  type GetActionResultRequest,
  type UpdateActionResultRequest,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { formatDigest, resolveFunction, toBlobDigest, type BlobDigest } from "../cas/digest";
import type { ServerContext } from "./context";
import { unary } from "./grpc-service";
import { Code, StatusError } from "./status";

/** Inline stdout, stderr or output files only up to this many bytes in total (1 MiB). */
const MAX_INLINE_BYTES = 1024 * 1024;

export function actionCacheService(ctx: ServerContext) {
  const { ac, cas } = ctx;

  function actionDigest(fnField: number, d: { hash: string; sizeBytes: bigint } | undefined): BlobDigest {
    if (!d) throw new StatusError(Code.INVALID_ARGUMENT, "action_digest is missing");
    return toBlobDigest(resolveFunction(fnField), d.hash, d.sizeBytes, "action_digest");
  }

  async function getActionResult(req: GetActionResultRequest): Promise<ActionResult> {
    const action = actionDigest(req.digestFunction, req.actionDigest);
    const result = await ac.get(action);
    ctx.stats.count(result ? "acHits" : "acMisses");
    if (!result) throw new StatusError(Code.NOT_FOUND, `no cached result for action ${formatDigest(action)}`);
    await inlineRequested(result, action, req);
    return result;
  }

  /** Fills stdout_raw, stderr_raw and OutputFile.contents as asked, within MAX_INLINE_BYTES. */
  async function inlineRequested(result: ActionResult, action: BlobDigest, req: GetActionResultRequest) {
    let budget = MAX_INLINE_BYTES;
    const load = async (d: { hash: string; sizeBytes: bigint } | undefined) => {
      if (!d || d.sizeBytes > BigInt(budget)) return undefined;
      const data = await cas.read(toBlobDigest(action.fn, d.hash, d.sizeBytes));
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
    const action = actionDigest(req.digestFunction, req.actionDigest);
    if (!req.actionResult) throw new StatusError(Code.INVALID_ARGUMENT, "action_result is missing");
    await ac.put(action, req.actionResult);
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
