// Sets up execution for `serve`: the runtimes, the sandbox (checked by running a real command in
// it), cgroup limits, job slots, and the runner. A sandbox that cannot be built stops start-up with
// the reason and what to do, unless the user chose --sandbox=none.
import { existsSync, mkdtempSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ActionCache } from "../cas/action-cache";
import type { DiskCas } from "../cas/disk-cas";
import type { Logger } from "../log";
import { PRIVILEGED } from "../identity";
import { CgroupLimiter } from "./cgroups";
import { Executions } from "./executions";
import { JobSlots } from "./job-slots";
import { createWorkFolder } from "./execroot";
import { ActionRunner, removeTree } from "./runner";
import { openRuntimes, type RuntimeSet } from "./runtime";
import { HostProcess, NamespaceSandbox, type Sandbox } from "./sandbox";
import { ExecTimings } from "./timings";

export interface WorkerOptions {
  root: string;
  jobs: number;
  defaultTimeoutMs: number;
  sandbox: "namespaces" | "none";
  keepFailed: boolean;
  runtimeImages: string[];
  runtimeRoots: string[];
}

export interface Worker {
  runner: ActionRunner;
  executions: Executions;
  timings: ExecTimings;
  close(): Promise<void>;
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

/** A setup problem the user must fix; serve prints it as one line and exits 1. */
export class WorkerSetupError extends Error {}

export async function startWorker(opts: WorkerOptions, builtIn: BuiltInAssets, cas: DiskCas, ac: ActionCache, log: Logger): Promise<Worker> {
  const images = [...opts.runtimeImages];
  if (images.length === 0 && opts.runtimeRoots.length === 0) {
    if (builtIn.runtimeImages.length === 0) {
      throw new WorkerSetupError(
        builtIn.origin === "checkout"
          ? "no runtime image for actions: build one with `bun runtimes/build.ts` (needs a Debian-family host), or pass --runtime-image FILE or --runtime-root DIR"
          : "this executable carries no runtime image for actions: pass --runtime-image FILE or --runtime-root DIR",
      );
    }
    images.push(...builtIn.runtimeImages);
  }
  let runtimes: RuntimeSet;
  try {
    runtimes = await openRuntimes({ images, roots: opts.runtimeRoots, stateDir: join(opts.root, "runtimes"), log, digests: builtIn.digests });
  } catch (err) {
    throw new WorkerSetupError((err as Error).message);
  }
  const workRoot = join(opts.root, "exec");
  // Work folders of a previous run (a crash, or --keep-failed) are not ours to keep forever.
  removeTree(workRoot, log);
  mkdirSync(workRoot, { recursive: true, mode: 0o700 });

  const sandbox = opts.sandbox === "none" ? new HostProcess() : namespaceSandbox(builtIn);
  if (sandbox instanceof NamespaceSandbox) await probeSandbox(sandbox, runtimes, workRoot, log);
  else log.warn("--sandbox=none: actions run directly on this machine, as this user, with no isolation (they could even change the CAS files they get as inputs)");

  const timings = new ExecTimings();
  const runner = new ActionRunner({
    cas,
    ac,
    log,
    sandbox,
    runtimes,
    slots: new JobSlots(opts.jobs),
    cgroups: CgroupLimiter.setUp(log),
    timings,
    workRoot,
    defaultTimeoutMs: opts.defaultTimeoutMs,
    keepFailed: opts.keepFailed,
  });
  const names = runtimes.runtimes.map((r) => `${r.name} (${r.libc})`).join(", ");
  log.info(`executing up to ${opts.jobs} actions at once, sandbox ${sandbox.kind}${sandbox.needsOverlay ? " (rootless)" : ""}, runtimes: ${names}`);
  const executions = new Executions();
  return {
    runner,
    executions,
    timings,
    async close() {
      // Runtimes are unmounted only once no action uses them any more.
      await executions.cancelAll();
      await runtimes.close();
    },
  };
}

export function namespaceSandbox(builtIn: BuiltInAssets): NamespaceSandbox {
  // ACTIOND_SANDBOX_HELPER: a helper built some other way (tests of zig builds, debugging).
  const helper = process.env.ACTIOND_SANDBOX_HELPER || builtIn.helper;
  if (!helper) {
    throw new WorkerSetupError(
      builtIn.origin === "checkout"
        ? "the sandbox helper is not built: run `bash shim/build.sh` (or pass --sandbox=none to run actions unsandboxed)"
        : "this executable carries no sandbox helper (pass --sandbox=none to run actions unsandboxed)",
    );
  }
  return new NamespaceSandbox(helper);
}

/** What usually stops a sandbox in the rootless way, and what to do about it. */
function sandboxHint(workRoot: string): string {
  if (PRIVILEGED) return "";
  const hints: string[] = [];
  if (existsSync("/.dockerenv") || existsSync("/run/.containerenv")) {
    hints.push("In a container the sandbox needs user namespaces and its own /proc: start the container with --security-opt seccomp=unconfined --security-opt systempaths=unconfined (on AppArmor hosts also apparmor=unconfined), or --privileged.");
  } else {
    hints.push("Running without root needs unprivileged user namespaces (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0).");
  }
  if (fileSystemType(workRoot) === "overlay") {
    hints.push(`Rootless sandboxes lay an overlay over the work folders, which cannot be on an overlay filesystem as ${workRoot} is (a container's own filesystem): put --root on a volume or another filesystem.`);
  }
  return `${hints.join(" ")} `;
}

/** The type of the filesystem holding `path` (the longest mount point above it), e.g. "ext4", "overlay". */
export function fileSystemType(path: string): string | undefined {
  let best: { point: string; type: string } | undefined;
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const f = line.split(" ");
    const point = f[4]?.replace(/\\040/g, " ");
    const type = f[f.indexOf("-") + 1];
    if (!point || !type) continue;
    const under = point === "/" || path === point || path.startsWith(`${point}/`);
    if (under && (!best || point.length >= best.point.length)) best = { point, type };
  }
  return best?.type;
}

/** Runs `true` in a real sandbox, so a host that cannot build one is found at start, not per action. */
export async function probeSandbox(sandbox: Sandbox, runtimes: RuntimeSet, workRoot: string, log: Logger): Promise<void> {
  const dir = mkdtempSync(join(workRoot, "probe-"));
  const folder = createWorkFolder(dir, sandbox.needsOverlay);
  try {
    const r = await sandbox.run({
      ...folder,
      argv: ["true"],
      env: { PATH: "/usr/bin:/bin" },
      workingDirectory: "",
      runtime: runtimes.default,
      timeoutMs: 30_000,
      signal: new AbortController().signal,
    });
    if (r.setupError !== undefined || r.exitCode !== 0) {
      const why = r.setupError ?? `exit code ${r.exitCode}: ${await Bun.file(folder.stderrPath).text()}`.trim();
      throw new WorkerSetupError(`cannot build the action sandbox here: ${why}. ${sandboxHint(workRoot)}Or pass --sandbox=none to run actions without isolation.`);
    }
  } finally {
    removeTree(dir, log);
  }
}
