// The namespace sandbox: the shim/ helper (actiond-sandbox), spawned per action. As root the action
// runs as uid 65534 in new mount, PID, network, IPC and UTS namespaces; rootless, in a user
// namespace too, with the execroot under an overlay. The helper's command line (mount steps with
// host paths, the action's argv) goes to it in a file on fd 4 (--args-fd), not in its argv: its
// PID 1 is a fork of it, so the action would read its argv at /proc/1/cmdline.
import { chmodSync, lstatSync, mkdirSync, readdirSync, readlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ActionBounds } from "./limits";
import { SANDBOX_EXECROOT, SANDBOX_UID, type Sandbox, type SandboxResult, type SandboxRun } from "./sandbox";
import { supervise } from "./supervise";

/** The helper's whole argv, as the action sees it at /proc/1/cmdline. */
export const HELPER_ARGV = ["actiond-sandbox", "--args-fd", "4"];
/** Where the rest of its command line is written, in the run's work folder (kept with it by --keep-failed). */
const ARGS_FILE = "sandbox-args";
/** Where the layers of the overlays over shared directories go, in the run's work folder. */
const SHARED_LAYERS = "shared-layers";

/** Top-level names of a runtime that the sandbox provides itself. */
const PROVIDED = new Set(["dev", "proc", "tmp", "sys", SANDBOX_EXECROOT.slice(1)]);

export class NamespaceSandbox implements Sandbox {
  readonly kind = "namespaces";
  /** Rootless, the action's uid maps to ours: see SandboxRun.overlay. */
  readonly needsOverlay: boolean;
  /** The mount steps that put each runtime's top level into the sandbox root, by runtime root. */
  private readonly runtimeSteps = new Map<string, string[]>();

  constructor(
    private readonly helper: string,
    /** Whether the server is privileged; if not, the helper needs a user namespace. */
    private readonly privileged: boolean,
    /** What every action may use at most (the cgroup limits are CgroupLimiter's; these are the helper's). */
    private readonly bounds: ActionBounds,
  ) {
    this.needsOverlay = !privileged;
  }

  /** The helper's command line for one run. */
  private helperArgs(r: SandboxRun, layers: string): string[] {
    const args: string[] = [];
    // Without root, the namespaces need a user namespace of their own.
    if (!this.privileged) args.push("--userns");
    args.push("--uid", String(SANDBOX_UID), "--gid", String(SANDBOX_UID), "--hostname", "localhost");
    args.push(...this.runtimeMounts(r.runtimeRoot));
    args.push("--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp");
    if (r.overlay) args.push("--overlay", r.execroot, r.overlay.upper, r.overlay.work, SANDBOX_EXECROOT);
    else args.push("--bind", r.execroot, SANDBOX_EXECROOT);
    (r.sharedDirs ?? []).forEach((d, k) => {
      args.push("--overlay", d.source, join(layers, `${k}`, "upper"), join(layers, `${k}`, "work"), `${SANDBOX_EXECROOT}/${d.path}`);
    });
    args.push("--chdir", r.workingDirectory === "" ? SANDBOX_EXECROOT : `${SANDBOX_EXECROOT}/${r.workingDirectory}`);
    // Each of /tmp and /dev/shm is RAM: bounded, with or without cgroups.
    args.push("--tmpfs-size", String(this.bounds.tmpBytes));
    // Without a cgroup (and its pids.max) the helper's RLIMIT_NPROC is the only bound on processes.
    if (r.cgroupDir) args.push("--cgroup", r.cgroupDir);
    else args.push("--nproc", String(this.bounds.pids));
    // --die-with-parent: if the server dies, its actions die with it rather than run untimed.
    args.push("--status-fd", "3", "--die-with-parent", "--", ...r.argv);
    return args;
  }

  /** Read-only binds of a runtime's directories and copies of its top-level symlinks (read once). */
  private runtimeMounts(root: string): string[] {
    let steps = this.runtimeSteps.get(root);
    if (!steps) {
      steps = [];
      for (const name of readdirSync(root).sort()) {
        if (PROVIDED.has(name)) continue;
        const path = join(root, name);
        const st = lstatSync(path);
        if (st.isSymbolicLink()) steps.push("--symlink", readlinkSync(path), `/${name}`);
        else if (st.isDirectory()) steps.push("--ro-bind", path, `/${name}`);
      }
      this.runtimeSteps.set(root, steps);
    }
    return steps;
  }

  run(r: SandboxRun): Promise<SandboxResult> {
    const folder = dirname(r.stdoutPath);
    const layers = join(folder, SHARED_LAYERS);
    (r.sharedDirs ?? []).forEach((_, k) => {
      const upper = join(layers, `${k}`, "upper");
      mkdirSync(upper, { recursive: true });
      // The overlay's top directory shows its upper layer's mode: writable by the action, as the
      // execroot's directories are.
      chmodSync(upper, 0o777);
      mkdirSync(join(layers, `${k}`, "work"));
    });
    const file = join(folder, ARGS_FILE);
    writeFileSync(file, this.helperArgs(r, layers).map((a) => `${a}\0`).join(""), { mode: 0o600 });
    return supervise([this.helper, ...HELPER_ARGV.slice(1)], r, { helper: true, argv0: HELPER_ARGV[0], fd4Path: file });
  }
}
