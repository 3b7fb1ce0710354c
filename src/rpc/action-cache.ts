// ActionCache: GetActionResult (a miss, or a result with evicted blobs, is NOT_FOUND) and
// UpdateActionResult (refused with FAILED_PRECONDITION when it references blobs not in the CAS).
import {
  ActionCache as ActionCacheService,
  type ActionResult,
  type GetActionResultRequest,
  type UpdateActionResultRequest,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError } from "../core";
import { formatDigest, fromWire, inlineBlobs, resolveFunction } from "../cas";
import type { ServerContext } from "./context";
import { unary } from "./grpc-service";
import { requesterOf } from "./request-metadata";
import type { GrpcCall } from "../transport";

export function actionCacheService(ctx: ServerContext) {
  const { results, blobs } = ctx;

  async function getActionResult(req: GetActionResultRequest, call: GrpcCall): Promise<ActionResult> {
    const action = fromWire(resolveFunction(req.digestFunction), req.actionDigest, "action_digest");
    const result = await results.get(action);
    ctx.stats.count(result ? "acHits" : "acMisses");
    ctx.stats.lookup({ atMs: ctx.clock.now(), action: formatDigest(action), hit: result !== undefined, requester: requesterOf(call) });
    if (!result) throw new StatusError(Code.NOT_FOUND, `no cached result for action ${formatDigest(action)}`);
    await inlineBlobs(blobs, action.fn, result, req);
    return result;
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
