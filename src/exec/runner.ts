// One action from digest to ExecuteResponse: load and check it, wait for a job slot, build the
// execroot, run the command in the sandbox, collect outputs, cache a successful result.
import { mkdirSync, rmSync, chmodSync, readdirSync, lstatSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampNow, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  ActionResultSchema,
  ActionSchema,
  CommandSchema,
  ExecuteResponseSchema,
  ExecutedActionMetadataSchema,
  ExecutionStage_Value as Stage,
  type Action,
  type Command,
  type ExecuteResponse,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import type { ActionCache } from "../cas/action-cache";
import { formatDigest, toBlobDigest, type BlobDigest } from "../cas/digest";
import type { DiskCas } from "../cas/disk-cas";
import type { Logger } from "../log";
import { Code, StatusError, missingBlobsError, okStatus } from "../rpc/status";
import type { CgroupLimiter } from "./cgroups";
import { ExecrootPaths, buildExecroot, createWorkFolder } from "./execroot";
import { normalizeInside, readInputTree, type InputTree } from "./input-tree";
import type { JobSlots } from "./job-slots";
import { MessageCache } from "./message-cache";
import { OutputCollector, wire, type OutputRequest } from "./outputs";
import { parsePlatform } from "./platform";
import type { RuntimeSet } from "./runtime";
import type { Sandbox } from "./sandbox";
import type { ExecTimings } from "./timings";

export interface RunnerContext {
  cas: DiskCas;
  ac: ActionCache;
  log: Logger;
  sandbox: Sandbox;
  runtimes: RuntimeSet;
  slots: JobSlots;
  cgroups: CgroupLimiter;
  timings: ExecTimings;
  /** Per-action work folders live here (on the same filesystem as the CAS, for renames). */
  workRoot: string;
  defaultTimeoutMs: number;
  /** Keep the work folder of a failed action for debugging. */
  keepFailed: boolean;
}

export interface RunRequest {
  prepared: PreparedAction;
  priority: number;
  signal: AbortSignal;
  onStage: (stage: Stage) => void;
}

/** An action checked before queueing: everything needed to run it. */
export interface PreparedAction {
  digest: BlobDigest;
  action: Action;
  command: Command;
  tree: InputTree;
  workingDirectory: string;
  outputs: OutputRequest;
  timeoutMs: number;
  runtime: RuntimeSet["default"];
  limits: ReturnType<typeof parsePlatform>["limits"];
}

export const WORKER_NAME = `actiond@${hostname()}`;
/** The longest Action.timeout (and --default-timeout) accepted: one day. */
export const MAX_TIMEOUT_MS = 24 * 60 * 60 * 1000;

export class ActionRunner {
  private readonly messages: MessageCache;

  constructor(private readonly ctx: RunnerContext) {
    mkdirSync(ctx.workRoot, { recursive: true, mode: 0o700 });
    this.messages = new MessageCache(ctx.cas);
  }

  /** Runs the action; errors that belong to the client come back as a non-OK ExecuteResponse.status. */
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

  /**
   * Reads and checks the action, its command and its whole input tree. Throws INVALID_ARGUMENT for
   * a malformed action and FAILED_PRECONDITION listing every missing blob.
   */
  async prepare(digest: BlobDigest): Promise<PreparedAction> {
    const action = await this.load(ActionSchema, digest, "action");
    const command = await this.load(CommandSchema, wireDigest(digest, action.commandDigest, "Action.command_digest"), "command");
    checkCommand(command);
    const platform = parsePlatform(action.platform, command.platform);
    const runtime = this.ctx.runtimes.pick(platform.libc);
    if (!runtime) {
      const known = this.ctx.runtimes.runtimes.map((r) => r.libc).join(", ");
      throw new StatusError(Code.INVALID_ARGUMENT, `platform property libc="${platform.libc}": no such runtime here (available: ${known})`);
    }
    const tree = await readInputTree(this.ctx.cas, this.messages, digest.fn, action.inputRootDigest);
    const workingDirectory = normalizeInside(command.workingDirectory, "working_directory");
    const outputPath = (p: string) => ({ name: p, execPath: normalizeInside(p, "output path", workingDirectory) });
    const outputs: OutputRequest = {
      paths: command.outputPaths.map(outputPath),
      files: command.outputFiles.map(outputPath),
      directories: command.outputDirectories.map(outputPath),
    };
    let timeoutMs = this.ctx.defaultTimeoutMs;
    if (action.timeout) {
      timeoutMs = Number(action.timeout.seconds) * 1000 + Math.floor(action.timeout.nanos / 1e6);
      if (timeoutMs <= 0) throw new StatusError(Code.INVALID_ARGUMENT, "Action.timeout must be positive");
      // REAPI: a timeout above the server's maximum MUST be rejected.
      if (timeoutMs > MAX_TIMEOUT_MS) {
        throw new StatusError(Code.INVALID_ARGUMENT, `Action.timeout ${timeoutMs / 1000}s is above this server's maximum of ${MAX_TIMEOUT_MS / 1000}s`);
      }
    }
    return { digest, action, command, tree, workingDirectory, outputs, timeoutMs, runtime, limits: platform.limits };
  }

  private async load<D extends DescMessage>(schema: D, d: BlobDigest, what: string): Promise<MessageShape<D>> {
    const message = await this.messages.get(schema, d);
    if (!message) throw missingBlobsError(`the ${what} ${formatDigest(d)} is not in the CAS`, [`blobs/${formatDigest(d)}`]);
    return message;
  }

  private async execute(req: RunRequest, p: PreparedAction, queuedAt: Timestamp, queueMs: number): Promise<ExecuteResponse> {
    const { ctx } = this;
    const meta = create(ExecutedActionMetadataSchema, { worker: WORKER_NAME, queuedTimestamp: queuedAt, workerStartTimestamp: timestampNow() });
    const work = join(ctx.workRoot, randomUUID());
    let failed = true;
    let cgroup: string | undefined;
    let collector: OutputCollector | undefined;
    try {
      // Input fetch: the execroot, from hardlinks.
      meta.inputFetchStartTimestamp = timestampNow();
      const t1 = performance.now();
      const { execroot, overlay, stdoutPath, stderrPath } = createWorkFolder(work, ctx.sandbox.needsOverlay);
      await buildExecroot(ctx.cas, p.tree, execroot);
      const paths = new ExecrootPaths(execroot, p.tree);
      paths.makeDirs(p.workingDirectory, true, "working_directory");
      for (const o of [...p.outputs.paths, ...p.outputs.files, ...p.outputs.directories]) {
        paths.makeDirs(o.execPath, false, "output path");
      }
      meta.inputFetchCompletedTimestamp = timestampNow();
      const execrootMs = performance.now() - t1;

      cgroup = ctx.cgroups.create(p.limits);
      meta.executionStartTimestamp = timestampNow();
      const run = await ctx.sandbox.run({
        argv: p.command.arguments,
        env: Object.fromEntries(p.command.environmentVariables.map((e) => [e.name, e.value])),
        execroot,
        overlay,
        workingDirectory: p.workingDirectory,
        runtime: p.runtime,
        stdoutPath,
        stderrPath,
        cgroupDir: cgroup,
        timeoutMs: p.timeoutMs,
        signal: req.signal,
      });
      meta.executionCompletedTimestamp = timestampNow();
      if (run.cancelled) throw new StatusError(Code.CANCELLED, "the action was cancelled: nobody waits for it any more");
      if (run.setupError !== undefined) throw new StatusError(Code.INTERNAL, `the sandbox could not run the action: ${run.setupError}`);

      meta.outputUploadStartTimestamp = timestampNow();
      const t2 = performance.now();
      const result = create(ActionResultSchema, { exitCode: run.exitCode, executionMetadata: meta });
      collector = new OutputCollector(ctx.cas, p.digest.fn, execroot, overlay?.upper);
      result.stdoutDigest = wire(await collector.store(stdoutPath, lstatSync(stdoutPath)));
      result.stderrDigest = wire(await collector.store(stderrPath, lstatSync(stderrPath)));
      // A timed-out action's outputs are incomplete by definition: only its stdout and stderr come back.
      if (!run.timedOut) await collector.collect(p.outputs, result);
      meta.outputUploadCompletedTimestamp = timestampNow();
      const outputMs = performance.now() - t2;
      ctx.timings.add({ queueMs, execrootMs, sandboxStartMs: run.readyAt - run.startedAt, runMs: run.endedAt - run.readyAt, outputMs });

      meta.workerCompletedTimestamp = timestampNow();
      const response = create(ExecuteResponseSchema, { result, cachedResult: false, status: okStatus() });
      if (run.timedOut) {
        response.status = new StatusError(Code.DEADLINE_EXCEEDED, `the action timed out after ${p.timeoutMs / 1000}s and was killed`).toStatus();
        response.message = `action ${formatDigest(p.digest)} timed out after ${p.timeoutMs / 1000}s`;
      } else if (run.exitCode === 0 && !p.action.doNotCache) {
        // A result that cannot be cached (a full disk, say) is still the caller's result.
        await ctx.ac.put(p.digest, result).catch((err) => ctx.log.warn(`not caching the result of ${formatDigest(p.digest)}: ${(err as Error).message}`));
      }
      failed = run.exitCode !== 0 || run.timedOut;
      return response;
    } finally {
      collector?.release();
      if (cgroup) ctx.cgroups.remove(cgroup);
      if (failed && ctx.keepFailed) ctx.log.info(`kept the work folder of failed action ${formatDigest(p.digest)}: ${work}`);
      // Off the response's path and off the event loop: the client need not wait for the clean-up.
      else setImmediate(() => void removeTreeAsync(work, ctx.log));
    }
  }
}

/** Arguments and environment reach execve: NUL cannot be in them, nor "=" in a variable's name. */
function checkCommand(command: Command): void {
  if (command.arguments.length === 0) throw new StatusError(Code.INVALID_ARGUMENT, "Command.arguments is empty");
  command.arguments.forEach((a, i) => {
    if (a.includes("\0")) throw new StatusError(Code.INVALID_ARGUMENT, `Command.arguments[${i}] contains a NUL byte`);
  });
  for (const { name, value } of command.environmentVariables) {
    if (name === "" || name.includes("=") || name.includes("\0") || value.includes("\0")) {
      throw new StatusError(Code.INVALID_ARGUMENT, `environment variable "${name}" is not valid (empty name, "=" in the name, or a NUL byte)`);
    }
  }
}

function wireDigest(action: BlobDigest, d: { hash: string; sizeBytes: bigint } | undefined, what: string): BlobDigest {
  if (!d) throw new StatusError(Code.INVALID_ARGUMENT, `${what} is missing`);
  return toBlobDigest(action.fn, d.hash, d.sizeBytes, what);
}

/** removeTree in the I/O thread pool; falls back to the synchronous one for read-only leftovers. */
async function removeTreeAsync(path: string, log: Logger): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch {
    removeTree(path, log);
  }
}

/** rm -rf that also gets through directories the action made read-only. */
export function removeTree(path: string, log: Logger): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    try {
      makeWritable(path);
      rmSync(path, { recursive: true, force: true });
    } catch (err) {
      log.warn(`cannot remove work folder ${path}: ${(err as Error).message}`);
    }
  }
}

function makeWritable(path: string): void {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (!st?.isDirectory()) return;
  chmodSync(path, 0o700);
  for (const name of readdirSync(path)) makeWritable(join(path, name));
}
