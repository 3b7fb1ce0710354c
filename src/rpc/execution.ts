// Execution: Execute and WaitExecution stream google.longrunning.Operation messages (metadata on
// every one; the final one done, with the ExecuteResponse in `response`, never in `error`).
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
import { formatDigest, functionValue, resolveFunction, toBlobDigest, type BlobDigest } from "../cas/digest";
import type { Execution, Executions } from "../exec/executions";
import type { ActionRunner } from "../exec/runner";
import { wire } from "../exec/outputs";
import type { ServerContext } from "./context";
import { send, serverStreaming } from "./grpc-service";
import { Code, StatusError, asStatusError, okStatus } from "./status";
import { randomUUID } from "node:crypto";

/** While an action runs, the current stage is re-sent this often, so idle connections stay alive. */
const KEEPALIVE_MS = 30_000;

export interface ExecutionDeps {
  executions: Executions;
  runner: ActionRunner;
}

export function executionService(ctx: ServerContext, deps: ExecutionDeps) {
  const { executions, runner } = deps;

  function operation(name: string, action: BlobDigest, stage: Stage, response?: ExecuteResponse): Operation {
    const op = create(OperationSchema, {
      name,
      metadata: anyPack(
        ExecuteOperationMetadataSchema,
        create(ExecuteOperationMetadataSchema, { stage, actionDigest: wire(action), digestFunction: functionValue(action.fn) }),
      ),
      done: response !== undefined,
    });
    if (response) op.result = { case: "response", value: anyPack(ExecuteResponseSchema, response) };
    return op;
  }

  /** Streams an execution's progress to one caller, every stage in turn, until it completes or the caller leaves. */
  async function follow(e: Execution, call: ServerWritableStream<unknown, Operation>): Promise<void> {
    let wake: () => void = () => {};
    const stages: Stage[] = [e.stage];
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
          const timer = setTimeout(() => resolve(true), KEEPALIVE_MS);
          wake = () => {
            clearTimeout(timer);
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

  async function execute(req: ExecuteRequest, call: ServerWritableStream<ExecuteRequest, Operation>): Promise<void> {
    if (!req.actionDigest) throw new StatusError(Code.INVALID_ARGUMENT, "action_digest is missing");
    const action = toBlobDigest(resolveFunction(req.digestFunction), req.actionDigest.hash, req.actionDigest.sizeBytes, "action_digest");
    if (!req.skipCacheLookup) {
      const cached = await ctx.ac.get(action);
      ctx.stats.count(cached ? "acHits" : "acMisses");
      if (cached) {
        const response = create(ExecuteResponseSchema, { result: cached, cachedResult: true, status: okStatus() });
        await send(call, operation(`operations/cached-${action.hash}`, action, Stage.COMPLETED, response));
        return;
      }
    }
    let prepared;
    try {
      prepared = await runner.prepare(action);
    } catch (err) {
      // Errors belong in ExecuteResponse.status (Bazel re-uploads on MISSING), never in Operation.error.
      const status = asStatusError(err);
      const response = create(ExecuteResponseSchema, { status: status.toStatus(), message: status.message });
      ctx.log.debug(`Execute ${formatDigest(action)}: ${status.message}`);
      await send(call, operation(`operations/failed-${randomUUID()}`, action, Stage.COMPLETED, response));
      return;
    }
    // Identical actions in flight run once, unless the action must not be cached (REAPI: nor merged).
    const e = executions.start(action, !prepared.action.doNotCache, (exec) =>
      runner
        .run({ prepared, priority: req.executionPolicy?.priority ?? 0, signal: exec.signal, onStage: (stage) => exec.setStage(stage) })
        .catch((err) => {
          // The caller gets it in ExecuteResponse.status; a server-side failure also belongs in the log.
          const status = asStatusError(err);
          if (status.code === Code.INTERNAL || status.code === Code.RESOURCE_EXHAUSTED) ctx.log.warn(`action ${formatDigest(action)}: ${status.message}`);
          throw err;
        }),
    );
    ctx.log.debug(`Execute ${formatDigest(action)}: ${e.name}`);
    await follow(e, call);
  }

  async function waitExecution(req: WaitExecutionRequest, call: ServerWritableStream<WaitExecutionRequest, Operation>): Promise<void> {
    const e = executions.get(req.name);
    if (!e) throw new StatusError(Code.NOT_FOUND, `no operation named "${req.name}" (finished long ago, or from before a restart)`);
    await follow(e, call);
  }

  return {
    service: ExecutionService,
    handlers: {
      execute: serverStreaming(ctx, "Execute", execute),
      waitExecution: serverStreaming(ctx, "WaitExecution", waitExecution),
    },
  };
}
