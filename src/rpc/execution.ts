// Execution: Execute and WaitExecution stream google.longrunning.Operation messages (see
// operation.ts). The executor decides everything about an action; this translates its Execution
// into Operations, and inlines outputs into the last one as the Execute request asks.
import { clone } from "@bufbuild/protobuf";
import {
  Execution as ExecutionService,
  ExecuteResponseSchema,
  ExecutionStage_Value as Stage,
  type ExecuteRequest,
  type ExecuteResponse,
  type WaitExecutionRequest,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import type { Operation } from "../gen/google/longrunning/operations_pb";
import { Code, StatusError, type Clock } from "../core";
import { formatDigest, fromWire, inlineBlobs, resolveFunction, type BlobStore } from "../cas";
import type { Execution } from "../exec";
import type { ServerContext } from "./context";
import { serverStreaming, type ResponseStream } from "./grpc-service";
import { operationAt } from "./operation";
import { requesterOf } from "./request-metadata";

/** While an action runs, the current stage is re-sent this often, so idle connections stay alive. */
const KEEPALIVE_MS = 30_000;

interface Follow {
  /** From the execution's first stage (the caller of Execute: it may have moved on before the stream
   * began), or from where it is now (one who comes back with WaitExecution). */
  from: "start" | "now";
  clock: Clock;
  /** The response as this caller gets it (its own copy, with what it asked inlined). */
  final: (response: ExecuteResponse) => Promise<ExecuteResponse>;
}

/** Streams an execution's progress to one caller, every stage in turn, until it completes or the caller leaves. */
async function follow(e: Execution, out: ResponseStream<Operation>, opts: Follow): Promise<void> {
  let wake: () => void = () => {};
  const stages: Stage[] = opts.from === "start" ? [...e.history] : [e.stage];
  const unwatch = e.watch(() => {
    stages.push(e.stage);
    wake();
  });
  const unlisten = out.call.onCancel(() => wake());
  let sent: Stage | undefined;
  try {
    while (!out.cancelled) {
      for (let stage = stages.shift(); stage !== undefined; stage = stages.shift()) {
        if (stage !== sent && stage !== Stage.COMPLETED) await out.send(operationAt(e, (sent = stage)));
      }
      if (e.response) {
        await out.send(operationAt(e, Stage.COMPLETED, await opts.final(e.response)));
        return;
      }
      const keepalive = await new Promise<boolean>((resolve) => {
        const cancel = opts.clock.after(KEEPALIVE_MS, () => resolve(true));
        wake = () => {
          cancel();
          resolve(false);
        };
      });
      if (keepalive) {
        sent = undefined;
        stages.push(e.stage);
      }
    }
  } finally {
    unwatch();
    unlisten();
  }
}

/** The response with the outputs this Execute request asked for inlined (REAPI 2.9), in a copy: others share the execution. */
async function inlined(blobs: BlobStore, e: Execution, req: ExecuteRequest, response: ExecuteResponse): Promise<ExecuteResponse> {
  const wants = req.inlineStdout || req.inlineStderr || req.inlineOutputFiles.length > 0;
  if (!wants || !response.result) return response;
  const copy = clone(ExecuteResponseSchema, response);
  await inlineBlobs(blobs, e.action.fn, copy.result!, req);
  return copy;
}

export function executionService(ctx: ServerContext) {
  const { executor } = ctx;

  async function execute(req: ExecuteRequest, out: ResponseStream<Operation>): Promise<void> {
    const action = fromWire(resolveFunction(req.digestFunction), req.actionDigest, "action_digest");
    const requester = requesterOf(out.call);
    const e = await executor.execute({ action, skipCacheLookup: req.skipCacheLookup, priority: req.executionPolicy?.priority ?? 0, requester });
    e.requester ??= requester;
    if (!req.skipCacheLookup) {
      const hit = e.response?.cachedResult === true;
      ctx.stats.count(hit ? "acHits" : "acMisses");
      // A miss here mostly repeats the client's GetActionResult a moment ago; the execution shows instead.
      if (hit) ctx.stats.lookup({ atMs: ctx.clock.now(), action: formatDigest(action), hit, requester });
    }
    await follow(e, out, { from: "start", clock: ctx.clock, final: (r) => inlined(ctx.blobs, e, req, r) });
  }

  async function waitExecution(req: WaitExecutionRequest, out: ResponseStream<Operation>): Promise<void> {
    const e = executor.find(req.name);
    if (!e) throw new StatusError(Code.NOT_FOUND, `no operation named "${req.name}" (finished long ago, or from before a restart)`);
    await follow(e, out, { from: "now", clock: ctx.clock, final: async (r) => r });
  }

  return {
    service: ExecutionService,
    handlers: {
      execute: serverStreaming(ctx, "Execute", execute),
      waitExecution: serverStreaming(ctx, "WaitExecution", waitExecution),
    },
  };
}
