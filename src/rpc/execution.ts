// Execution: Execute and WaitExecution stream google.longrunning.Operation messages (metadata on
// every one; the final one done, with the ExecuteResponse in `response`, never in `error`). The
// executor decides everything about an action; this translates its Execution into Operations.
import type { ServerWritableStream } from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import {
  Execution as ExecutionService,
  ExecuteOperationMetadataSchema,
  ExecuteResponseSchema,
  ExecutionStage_Value as Stage,
  type ExecuteRequest,
  type ExecuteResponse,
  type WaitExecutionRequest,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { OperationSchema, type Operation } from "../gen/google/longrunning/operations_pb";
import { Code, StatusError, type Clock } from "../core";
import { fromWire, functionValue, resolveFunction, toWire, type BlobDigest } from "../cas";
import type { Execution } from "../exec";
import type { ServerContext } from "./context";
import { send, serverStreaming } from "./grpc-service";

/** While an action runs, the current stage is re-sent this often, so idle connections stay alive. */
const KEEPALIVE_MS = 30_000;

function operation(name: string, action: BlobDigest, stage: Stage, response?: ExecuteResponse): Operation {
  const op = create(OperationSchema, {
    name,
    metadata: anyPack(
      ExecuteOperationMetadataSchema,
      create(ExecuteOperationMetadataSchema, { stage, actionDigest: toWire(action), digestFunction: functionValue(action.fn) }),
    ),
    done: response !== undefined,
  });
  if (response) op.result = { case: "response", value: anyPack(ExecuteResponseSchema, response) };
  return op;
}

/**
 * Streams an execution's progress to one caller, every stage in turn, until it completes or the
 * caller leaves: from its first stage for the caller of Execute (the execution may have moved on
 * before the stream began), from where it is now for one who comes back with WaitExecution.
 */
async function follow(e: Execution, call: ServerWritableStream<unknown, Operation>, from: "start" | "now", clock: Clock): Promise<void> {
  let wake: () => void = () => {};
  const stages: Stage[] = from === "start" ? [...e.history] : [e.stage];
  const unwatch = e.watch(() => {
    stages.push(e.stage);
    wake();
  });
  call.on("cancelled", () => wake());
  let sent: Stage | undefined;
  try {
    while (!call.cancelled) {
      for (let stage = stages.shift(); stage !== undefined; stage = stages.shift()) {
        if (stage !== sent && stage !== Stage.COMPLETED) await send(call, operation(e.name, e.action, (sent = stage)));
      }
      if (e.response) {
        await send(call, operation(e.name, e.action, Stage.COMPLETED, e.response));
        return;
      }
      const keepalive = await new Promise<boolean>((resolve) => {
        const cancel = clock.after(KEEPALIVE_MS, () => resolve(true));
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
  }
}

export function executionService(ctx: ServerContext) {
  const { executor } = ctx;

  async function execute(req: ExecuteRequest, call: ServerWritableStream<ExecuteRequest, Operation>): Promise<void> {
    const action = fromWire(resolveFunction(req.digestFunction), req.actionDigest, "action_digest");
    const e = await executor.execute({ action, skipCacheLookup: req.skipCacheLookup, priority: req.executionPolicy?.priority ?? 0 });
    if (!req.skipCacheLookup) ctx.stats.count(e.response?.cachedResult ? "acHits" : "acMisses");
    await follow(e, call, "start", ctx.clock);
  }

  async function waitExecution(req: WaitExecutionRequest, call: ServerWritableStream<WaitExecutionRequest, Operation>): Promise<void> {
    const e = executor.find(req.name);
    if (!e) throw new StatusError(Code.NOT_FOUND, `no operation named "${req.name}" (finished long ago, or from before a restart)`);
    await follow(e, call, "now", ctx.clock);
  }

  return {
    service: ExecutionService,
    handlers: {
      execute: serverStreaming(ctx, "Execute", execute),
      waitExecution: serverStreaming(ctx, "WaitExecution", waitExecution),
    },
  };
}
