// Sets up local execution for `serve`: the runtimes, the sandbox (checked by running a real command
// in it), cgroup limits, job slots, and the executor over the given store. A sandbox that cannot
// be built stops start-up with the reason and what to do, unless the user chose --sandbox=none.
import { mkdirSync, readdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { SetupError, errnoCode, type Clock, type Logger } from "../core";
import type { CompleteResults, LocalBlobFiles } from "../cas";
import { openRuntimes, type RuntimeSet } from "../runtime";
import { CgroupLimiter, HostProcess, NamespaceSandbox, TreeRemover, describeActionLimits, logActionLimits, probeSandbox, probeSharedDirs, type ActionBounds } from "../sandbox";
import { ActionRecords } from "./action-records";
import { Executions } from "./executions";
import { LocalExecutor, type WorkerDescription } from "./executor";
import { JobSlots } from "./job-slots";
import { MessageCache } from "./message-cache";
import { ActionRunner } from "./run-action";
import { SharedInputDirs } from "./shared-dirs";
import { ExecTimings } from "./timings";

/** Entries (files, directories, symlinks) the shared input directories hold at most, all together. */
const SHARED_MAX_NODES = 1_000_000;
/** The share of the CAS's budget their pinned blobs may take. */
const SHARED_MAX_SHARE = 0.25;

export interface ExecutorOptions {
  root: string;
  jobs: number;
  defaultTimeoutMs: number;
  sandbox: "namespaces" | "none";
  keepFailed: boolean;
  /** Lay out input directories that come back once, and mount them into later actions (--shared-input-dirs). */
  sharedInputDirs: boolean;
  runtimeImages: string[];
  runtimeRoots: string[];
  /** Refuse platform properties actiond does not know. */
  strictPlatform: boolean;
  /** The most one action's outputs may come to, in bytes (--max-output-size). */
  maxOutputBytes: number;
  /** What every action may use at most (--action-memory, --action-pids, --action-tmp-size). */
  actionBounds: ActionBounds;
}

/** What this actiond brings along: its sandbox helper, and the runtime images actions get by default. */
export interface BuiltInAssets {
  helper?: string;
  runtimeImages: string[];
  /** sha256 of those images, already checked this start. */
  digests?: ReadonlyMap<string, string>;
  /** Where they come from, for messages: the executable itself, or a source checkout's build/. */
  origin: "embedded" | "checkout";
}

export interface ExecutorDeps {
  files: LocalBlobFiles;
  /** The action cache as clients see it (cas's CompleteResults over the stored entries). */
  results: CompleteResults;
  builtIn: BuiltInAssets;
  privileged: boolean;
  log: Logger;
  clock?: Clock;
}

export async function startLocalExecutor(opts: ExecutorOptions, deps: ExecutorDeps): Promise<LocalExecutor> {
  const { builtIn, log, privileged } = deps;
  const images = [...opts.runtimeImages];
  if (images.length === 0 && opts.runtimeRoots.length === 0) {
    if (builtIn.runtimeImages.length === 0) {
      throw new SetupError(
        builtIn.origin === "checkout"
          ? "no runtime image for actions: build one with `bun runtimes/build.ts` (needs a Debian-family host), or pass --runtime-image FILE or --runtime-root DIR"
          : "this executable carries no runtime image for actions: pass --runtime-image FILE or --runtime-root DIR",
      );
    }
    images.push(...builtIn.runtimeImages);
  }
  let runtimes: RuntimeSet;
  try {
    runtimes = await openRuntimes({ images, roots: opts.runtimeRoots, stateDir: join(opts.root, "runtimes"), privileged, log, digests: builtIn.digests });
  } catch (err) {
    throw new SetupError((err as Error).message);
  }
  try {
    const workRoot = join(opts.root, "exec");
    // The helper removes work folders (the NamespaceSandbox's; ACTIOND_SANDBOX_HELPER's too).
    const remover = new TreeRemover(builtIn.helper, log);
    clearOldWorkFolders(opts.root, workRoot, remover, log);

    const sandbox = opts.sandbox === "none" ? new HostProcess() : namespaceSandbox(builtIn, privileged, opts.actionBounds);
    let sharedDirs: SharedInputDirs | undefined;
    if (sandbox instanceof NamespaceSandbox) {
      const probe = { runtimeRoot: runtimes.default.root, workRoot, privileged, log };
      await probeSandbox(sandbox, probe);
      if (opts.sharedInputDirs) {
        const unshared = await probeSharedDirs(sandbox, probe);
        if (unshared === undefined) {
          sharedDirs = new SharedInputDirs(deps.files, join(workRoot, "shared"), remover, { maxNodes: SHARED_MAX_NODES, maxBytes: Math.floor(deps.files.capacityBytes * SHARED_MAX_SHARE) });
        } else log.info(`input directories are not shared between actions (each execroot links every input file): an overlay of one failed here: ${unshared}`);
      }
    } else log.warn("--sandbox=none: actions run directly on this machine, as this user, with no isolation (they could even change the CAS files they get as inputs)");

    const cgroups = CgroupLimiter.setUp(log, opts.actionBounds);
    const limits = sandbox instanceof NamespaceSandbox ? describeActionLimits(opts.actionBounds, { cgroupsUnavailable: cgroups.unavailableReason, privileged }) : undefined;
    if (limits) logActionLimits(log, limits);
    const timings = new ExecTimings();
    const runner = new ActionRunner({
      files: deps.files,
      log,
      sandbox,
      slots: new JobSlots(opts.jobs),
      cgroups,
      timings,
      workRoot,
      keepFailed: opts.keepFailed,
      privileged,
      maxOutputBytes: opts.maxOutputBytes,
      remover,
      sharedDirs,
    });
    const worker: WorkerDescription = {
      sandbox: `${sandbox.kind}${sandbox.needsOverlay ? " (rootless)" : ""}`,
      jobs: opts.jobs,
      runtimes: runtimes.runtimes.map((r) => `${r.name} (${r.libc})`),
      cgroups: cgroups.unavailableReason === undefined ? "available" : `not available: ${cgroups.unavailableReason}`,
      limits: limits?.applies ?? ["none: --sandbox=none"],
      unbounded: limits?.unbounded ?? [],
    };
    log.info(`executing up to ${opts.jobs} actions at once, sandbox ${worker.sandbox}, runtimes: ${worker.runtimes.join(", ")}`);
    return new LocalExecutor({
      worker,
      blobs: deps.files,
      messages: new MessageCache(deps.files),
      runtimes,
      defaultTimeoutMs: opts.defaultTimeoutMs,
      strictPlatform: opts.strictPlatform,
      results: deps.results,
      runner,
      executions: new Executions(deps.clock),
      timings,
      log,
      records: new ActionRecords(join(opts.root, "explain"), log),
      sharedDirs,
      // Runtimes are unmounted only once no action uses them any more.
      onClose: async () => {
        await runtimes.close();
        await remover.close();
      },
    });
  } catch (err) {
    await runtimes.close();
    throw err;
  }
}

/** The namespace sandbox with this actiond's helper (or the one --sandbox-helper names). */
export function namespaceSandbox(builtIn: BuiltInAssets, privileged: boolean, bounds: ActionBounds): NamespaceSandbox {
  if (!builtIn.helper) {
    throw new SetupError(
      builtIn.origin === "checkout"
        ? "the sandbox helper is not built: run `bash shim/build.sh` (or pass --sandbox=none to run actions unsandboxed)"
        : "this executable carries no sandbox helper (pass --sandbox=none to run actions unsandboxed)",
    );
  }
  return new NamespaceSandbox(builtIn.helper, privileged, bounds);
}

/**
 * Work folders of a previous run (a crash, or --keep-failed) are not ours to keep forever, but
 * removing them must not hold up the start (an action may have left a chain thousands of
 * directories deep): the old folder is renamed aside and removed in the background, with any
 * such leftover an earlier start did not finish.
 */
function clearOldWorkFolders(root: string, workRoot: string, remover: TreeRemover, log: Logger): void {
  try {
    renameSync(workRoot, `${workRoot}.old-${Date.now()}-${process.pid}`);
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") throw err;
  }
  mkdirSync(workRoot, { recursive: true, mode: 0o700 });
  for (const name of readdirSync(root)) {
    if (!name.startsWith("exec.old-")) continue;
    const path = join(root, name);
    const started = performance.now();
    void remover.remove(path).then(() => log.debug(`removed ${path} (work folders of an earlier run) in ${(performance.now() - started).toFixed(0)} ms`));
  }
}

