// The execution seam: from an action digest to an Execution that a caller can watch. The executor
// owns every decision about an action: the action cache lookup, checking the action, joining an
// identical one in flight, the queue, running it, and caching its result. rpc/ only translates.
import { create } from "@bufbuild/protobuf";
import { ExecuteResponseSchema, type ExecuteResponse } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, asStatusError, okStatus, type Logger } from "../core";
import { formatDigest, fromWire, type BlobDigest, type CompleteResults } from "../cas";
import type { ActionRecords } from "./action-records";
import type { Execution, Executions, Requester } from "./executions";
import { ignoredPropertiesNotice } from "./platform";
import { prepareAction, type PrepareContext, type PreparedAction } from "./prepare";
import type { ActionRunner } from "./run-action";
import type { SharedDirsUsage, SharedInputDirs } from "./shared-dirs";
import type { ExecTimings } from "./timings";
import { explainMiss, recordKey, recordOf, type ActionRecord } from "./why-missed";

/** How much of a failed action's stderr the status page shows. */
const STDERR_TAIL_BYTES = 2048;

export interface ExecuteOptions {
  action: BlobDigest;
  /** Run again even when a result is cached (and replace it). */
  skipCacheLookup: boolean;
  /** ExecutionPolicy.priority: lower runs sooner. */
  priority: number;
  /** Who asks (Bazel's RequestMetadata), when known: shown, and the key of "why did it miss". */
  requester?: Requester;
}

export interface Executor {
  /**
   * The execution for this action: a finished one for a cached result or an action refused while
   * being checked (its response's status says why), else one queued or joined.
   */
  execute(opts: ExecuteOptions): Promise<Execution>;
  /** An execution by operation name, while it runs and for a while after. */
  find(name: string): Execution | undefined;
  /** Every execution known by name (running, queued, recently finished), oldest first. */
  list(): Execution[];
  /** Forgets an operation name (the execution goes on); false when it was not known. */
  forget(name: string): boolean;
  /** The last executed action of each of a target's (mnemonic, output), with why it missed, newest first. */
  records(target: string): Promise<ActionRecord[]>;
  /** Where executed actions' time went. */
  readonly timings: ExecTimings;
  /** How actions run here, for the status page. */
  readonly worker: WorkerDescription;
  /** Executed actions that did not end with a result, by gRPC code (INTERNAL: the sandbox failed). */
  readonly failures: Readonly<Record<string, number>>;
  /** The input directories shared between actions, when they are (see --shared-input-dirs). */
  sharedDirs(): SharedDirsUsage | undefined;
  /** Cancels what runs and releases what the executor holds. */
  close(): Promise<void>;
}

export interface WorkerDescription {
  /** The sandbox kind ("namespaces", "namespaces (rootless)", "none"). */
  sandbox: string;
  jobs: number;
  /** Each runtime as "name (libc)". */
  runtimes: string[];
  /** Whether cgroup limits can be applied to actions ("available", or why not). */
  cgroups: string;
  /** What bounds every action, and what cannot be bounded here (as the log says at start). */
  limits: string[];
  unbounded: string[];
}

export interface LocalExecutorContext extends PrepareContext {
  worker: WorkerDescription;
  results: CompleteResults;
  runner: ActionRunner;
  executions: Executions;
  timings: ExecTimings;
  log: Logger;
  /** The last executed action per target, to say why the next one missed (absent: not kept). */
  records?: ActionRecords;
  sharedDirs?: SharedInputDirs;
  /** Called at close, after every execution has ended. */
  onClose?: () => Promise<void>;
}

export class LocalExecutor implements Executor {
  /** Ignored platform properties already named to the user (once each). */
  private readonly mentionedProperties = new Set<string>();
  readonly failures: Record<string, number> = {};

  constructor(private readonly ctx: LocalExecutorContext) {}

  get timings(): ExecTimings {
    return this.ctx.timings;
  }

  get worker(): WorkerDescription {
    return this.ctx.worker;
  }

  sharedDirs(): SharedDirsUsage | undefined {
    return this.ctx.sharedDirs?.usage();
  }

  async execute({ action, skipCacheLookup, priority, requester }: ExecuteOptions): Promise<Execution> {
    const { ctx } = this;
    if (!skipCacheLookup) {
      const cached = await ctx.results.get(action);
      if (cached) return ctx.executions.finished("cached", action, create(ExecuteResponseSchema, { result: cached, cachedResult: true, status: okStatus() }));
    }
    let prepared;
    try {
      prepared = await prepareAction(ctx, action);
    } catch (err) {
      // Errors belong in ExecuteResponse.status (Bazel re-uploads on MISSING), never in Operation.error.
      const status = asStatusError(err);
      ctx.log.debug(`Execute ${formatDigest(action)}: ${status.message}`);
      return ctx.executions.finished("failed", action, create(ExecuteResponseSchema, { status: status.toStatus(), message: status.message }));
    }
    const doNotCache = prepared.action.doNotCache;
    const notice = ignoredPropertiesNotice(prepared.ignoredProperties, prepared.runtime, this.mentionedProperties);
    if (notice) ctx.log.warn(`action ${formatDigest(action)}: ${notice}`);
    // Identical actions in flight run once, unless the action must not be cached (REAPI: nor merged).
    const e = ctx.executions.start(action, !doNotCache, (exec) => {
      exec.requester ??= requester;
      exec.command = { argv0: prepared.command.arguments[0]!, runtime: prepared.runtime.name };
      const recorded = this.record(exec, prepared, skipCacheLookup);
      return ctx.runner
        .run({
          prepared,
          priority,
          signal: exec.signal,
          onStage: (stage) => exec.setStage(stage),
          onOutputFiles: (files) => (exec.liveOutput = files),
          onTiming: (t) => (exec.timing = t),
          onResult: (response) => (doNotCache ? Promise.resolve() : this.cache(action, response)),
        })
        .then((response) => {
          // Bazel prints ExecuteResponse.message: where the user learns what was ignored.
          if (notice) response.message = response.message ? `${response.message}; ${notice}` : notice;
          return response;
        })
        .catch((err) => {
          // The caller gets it in ExecuteResponse.status; a server-side failure also belongs in the log.
          const status = asStatusError(err);
          if (status.code === Code.INTERNAL || status.code === Code.RESOURCE_EXHAUSTED) ctx.log.warn(`action ${formatDigest(action)}: ${status.message}`);
          throw err;
        })
        .then(
          async (response) => {
            if (response.status?.code) this.countFailure(response.status.code);
            recorded?.(response.result?.exitCode, response.status?.code ? response.status.message : undefined);
            if (response.result && response.result.exitCode !== 0) exec.stderrTail = await this.stderrTail(action, response);
            return response;
          },
          (err) => {
            this.countFailure(asStatusError(err).code);
            recorded?.(undefined, asStatusError(err).message);
            throw err;
          },
        );
    });
    ctx.log.debug(`Execute ${formatDigest(action)}: ${e.name}`);
    return e;
  }

  find(name: string): Execution | undefined {
    return this.ctx.executions.get(name);
  }

  list(): Execution[] {
    return this.ctx.executions.list();
  }

  forget(name: string): boolean {
    return this.ctx.executions.forget(name);
  }

  async records(target: string): Promise<ActionRecord[]> {
    return (await this.ctx.records?.ofTarget(target)) ?? [];
  }

  async close(): Promise<void> {
    await this.ctx.executions.cancelAll();
    await this.ctx.onClose?.();
  }

  /**
   * Says why this execution missed (on exec.whyMissed, soon after it starts) against the record of
   * the last one for its target, and returns what keeps this one as the record once it has ended.
   */
  private record(exec: Execution, prepared: PreparedAction, skippedLookup: boolean): ((exitCode: number | undefined, failure: string | undefined) => void) | undefined {
    const { records, messages, log } = this.ctx;
    const key = records && recordKey(exec.requester, prepared);
    if (!records || !key) return undefined;
    const now = recordOf(key, prepared, exec.startedMs);
    const why = records
      .get(key)
      .then((previous) => explainMiss(messages, previous, now, skippedLookup))
      .then(
        (w) => {
          exec.whyMissed = w.summary;
          return w;
        },
        (err) => void log.debug(`why ${now.action} missed: ${(err as Error).message}`),
      );
    return (exitCode, failure) => void why.then((w) => records.put({ ...now, exitCode, failure, why: w || undefined }));
  }

  private countFailure(code: Code): void {
    const name = Code[code] ?? String(code);
    this.failures[name] = (this.failures[name] ?? 0) + 1;
  }

  /** The last bytes of a result's stderr, as text (empty when there is none, or it is gone). */
  private async stderrTail(action: BlobDigest, response: ExecuteResponse): Promise<string> {
    const r = response.result!;
    if (r.stderrRaw.length > 0) return Buffer.from(r.stderrRaw.subarray(-STDERR_TAIL_BYTES)).toString("utf8");
    const d = r.stderrDigest;
    if (!d || d.sizeBytes === 0n) return "";
    const size = Number(d.sizeBytes);
    const reader = await this.ctx.blobs.read(fromWire(action.fn, d, "stderr"), { offset: Math.max(0, size - STDERR_TAIL_BYTES), limit: 0, chunkBytes: STDERR_TAIL_BYTES }).catch(() => undefined);
    if (!reader) return "";
    const parts: Uint8Array[] = [];
    for await (const chunk of reader) parts.push(chunk);
    return Buffer.concat(parts).toString("utf8");
  }

  /** Exit code 0 results are cached; failures and timeouts never are. One that cannot be (a full disk) is still the caller's result. */
  private async cache(action: BlobDigest, response: ExecuteResponse): Promise<void> {
    if (response.status?.code !== Code.OK || response.result?.exitCode !== 0) return;
    await this.ctx.results.putStored(action, response.result).catch((err) => this.ctx.log.warn(`not caching the result of ${formatDigest(action)}: ${(err as Error).message}`));
  }
}
