// One prepared action, from a job slot to its ExecuteResponse: build the execroot, run the command
// in the sandbox, collect the outputs. Whether to cache the result is the executor's decision.
import { lstatSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampNow, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  ActionResultSchema,
  ExecuteResponseSchema,
  ExecutedActionMetadataSchema,
  ExecutionStage_Value as Stage,
  type ExecuteResponse,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError, okStatus, type Logger } from "../core";
import { formatDigest, toWire, type LocalBlobFiles } from "../cas";
import { createWorkFolder, type CgroupLimiter, type Sandbox, type TreeRemover } from "../sandbox";
import { buildExecroot, makeWantedDirs, writesInto, type WantedDir } from "./execroot";
import type { JobSlots } from "./job-slots";
import { OutputCollector } from "./outputs";
import type { PreparedAction } from "./prepare";
import type { SharedInputDirs, TakenDirs } from "./shared-dirs";
import type { ActionTiming, ExecTimings } from "./timings";

const WORKER_NAME = `actiond@${hostname()}`;

export interface RunnerContext {
  files: LocalBlobFiles;
  log: Logger;
  sandbox: Sandbox;
  slots: JobSlots;
  cgroups: CgroupLimiter;
  timings: ExecTimings;
  /** Per-action work folders live here (on the same filesystem as the CAS, for hardlinks). */
  workRoot: string;
  /** Keep the work folder of a failed action for debugging. */
  keepFailed: boolean;
  privileged: boolean;
  /** The most one action's outputs may come to, in bytes. */
  maxOutputBytes: number;
  /** Removes work folders (however deep an action made them), off the event loop. */
  remover: TreeRemover;
  /** Input directories shared between actions, when the sandbox can mount them. */
  sharedDirs?: SharedInputDirs;
}

export interface RunRequest {
  prepared: PreparedAction;
  priority: number;
  signal: AbortSignal;
  onStage: (stage: Stage) => void;
  /** Called with where its time went, once it ran. */
  onTiming?: (t: ActionTiming) => void;
  /** Called with the finished response while its outputs are still pinned: where the executor caches it. */
  onResult: (response: ExecuteResponse) => Promise<void>;
  /** Called with the files the action's stdout and stderr go to while it runs (live logs). */
  onOutputFiles?: (files: LiveOutput) => void;
}

/** Where a running action's stdout and stderr are being written (gone once it has finished). */
export interface LiveOutput {
  stdout: string;
  stderr: string;
}

export class ActionRunner {
  constructor(private readonly ctx: RunnerContext) {}

  /** Waits for a slot and runs the action; what goes wrong with the action itself comes back in the response's status. */
  async run(req: RunRequest): Promise<ExecuteResponse> {
    const queuedAt = timestampNow();
    const t0 = performance.now();
    req.onStage(Stage.QUEUED);
    const release = await this.ctx.slots.acquire(req.priority, req.signal);
    try {
      const queueMs = performance.now() - t0;
      req.onStage(Stage.EXECUTING);
      return await this.execute(req, req.prepared, queuedAt, queueMs);
    } finally {
      release();
    }
  }

  private async execute(req: RunRequest, p: PreparedAction, queuedAt: Timestamp, queueMs: number): Promise<ExecuteResponse> {
    const { ctx } = this;
    const meta = create(ExecutedActionMetadataSchema, { worker: WORKER_NAME, queuedTimestamp: queuedAt, workerStartTimestamp: timestampNow() });
    const work = join(ctx.workRoot, randomUUID());
    let failed = true;
    let cgroup: string | undefined;
    let collector: OutputCollector | undefined;
    let shared: TakenDirs | undefined;
    try {
      // Input fetch: the execroot, from hardlinks.
      meta.inputFetchStartTimestamp = timestampNow();
      const t1 = performance.now();
      const { execroot, overlay, stdoutPath, stderrPath } = createWorkFolder(work, ctx.sandbox.needsOverlay);
      req.onOutputFiles?.({ stdout: stdoutPath, stderr: stderrPath });
      const outputs = [...p.outputs.paths, ...p.outputs.files, ...p.outputs.directories];
      const wanted: WantedDir[] = [{ path: p.workingDirectory, self: true, what: "working_directory" }, ...outputs.map((o) => ({ path: o.execPath, self: false, what: "output path" }))];
      shared = await ctx.sharedDirs?.take(p.tree, writesInto(wanted));
      await buildExecroot(ctx.files, p.tree, execroot, { leaveEmpty: shared?.indices });
      makeWantedDirs(execroot, p.tree, wanted);
      meta.inputFetchCompletedTimestamp = timestampNow();
      const execrootMs = performance.now() - t1;

      cgroup = ctx.cgroups.create(p.limits);
      meta.executionStartTimestamp = timestampNow();
      const run = await ctx.sandbox.run({
        argv: p.command.arguments,
        env: Object.fromEntries(p.command.environmentVariables.map((e) => [e.name, e.value])),
        execroot,
        overlay,
        sharedDirs: shared?.mounts,
        workingDirectory: p.workingDirectory,
        runtimeRoot: p.runtime.root,
        stdoutPath,
        stderrPath,
        cgroupDir: cgroup,
        timeoutMs: p.timeoutMs,
        signal: req.signal,
      });
      meta.executionCompletedTimestamp = timestampNow();
      // Cancelled by whoever aborted the signal, who says why (nobody waits any more, CancelOperation, shutdown).
      if (run.cancelled) throw req.signal.reason instanceof StatusError ? req.signal.reason : new StatusError(Code.CANCELLED, "the action was cancelled");
      if (run.setupError !== undefined) throw new StatusError(Code.INTERNAL, `the sandbox could not run the action: ${run.setupError}`);

      meta.outputUploadStartTimestamp = timestampNow();
      const t2 = performance.now();
      const result = create(ActionResultSchema, { exitCode: run.exitCode, executionMetadata: meta });
      collector = new OutputCollector(ctx.files, p.digest.fn, execroot, overlay?.upper, ctx.privileged, ctx.maxOutputBytes);
      result.stdoutDigest = toWire(await collector.store(stdoutPath, lstatSync(stdoutPath)));
      result.stderrDigest = toWire(await collector.store(stderrPath, lstatSync(stderrPath)));
      // A timed-out action's outputs are incomplete by definition: only its stdout and stderr come back.
      if (!run.timedOut) await collector.collect(p.outputs, result);
      meta.outputUploadCompletedTimestamp = timestampNow();
      const outputMs = performance.now() - t2;
      const timing = { queueMs, execrootMs, sandboxStartMs: run.readyAt - run.startedAt, runMs: run.endedAt - run.readyAt, outputMs };
      ctx.timings.add(timing);
      req.onTiming?.(timing);

      meta.workerCompletedTimestamp = timestampNow();
      const response = create(ExecuteResponseSchema, { result, cachedResult: false, status: okStatus() });
      if (run.timedOut) {
        response.status = new StatusError(Code.DEADLINE_EXCEEDED, `the action timed out after ${p.timeoutMs / 1000}s and was killed`).toStatus();
        response.message = `action ${formatDigest(p.digest)} timed out after ${p.timeoutMs / 1000}s`;
      }
      failed = run.exitCode !== 0 || run.timedOut;
      await req.onResult(response);
      return response;
    } finally {
      // The sandbox is gone: nothing has the shared directories mounted for this action any more.
      shared?.release();
      collector?.release();
      if (cgroup) ctx.cgroups.remove(cgroup);
      if (failed && ctx.keepFailed) ctx.log.info(`kept the work folder of failed action ${formatDigest(p.digest)}: ${work}`);
      // Off the response's path and off the event loop: the client need not wait for the clean-up.
      else void ctx.remover.remove(work);
    }
  }
}
