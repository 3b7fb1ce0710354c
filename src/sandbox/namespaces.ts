// The namespace sandbox: the shim/ helper (actiond-sandbox), spawned per action with its mount
// steps on the command line. As root the action runs as uid 65534 in new mount, PID, network, IPC
// and UTS namespaces; rootless, in a user namespace too, with the execroot under an overlay.
import { lstatSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import type { ActionBounds } from "./limits";
import { SANDBOX_EXECROOT, SANDBOX_UID, type Sandbox, type SandboxResult, type SandboxRun } from "./sandbox";
import { supervise } from "./supervise";

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
  private helperArgs(r: SandboxRun): string[] {
    const args: string[] = [];
    // Without root, the namespaces need a user namespace of their own.
    if (!this.privileged) args.push("--userns");
    args.push("--uid", String(SANDBOX_UID), "--gid", String(SANDBOX_UID), "--hostname", "localhost");
    args.push(...this.runtimeMounts(r.runtimeRoot));
    args.push("--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp");
    if (r.overlay) args.push("--overlay", r.execroot, r.overlay.upper, r.overlay.work, SANDBOX_EXECROOT);
    else args.push("--bind", r.execroot, SANDBOX_EXECROOT);
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
    return supervise([this.helper, ...this.helperArgs(r)], r, { helper: true });
  }
}
