// Runs one command in a sandbox: the shim/ helper (namespaces, a root built from the runtime and
// the execroot, uid 65534), or with --sandbox=none straight on the host. One seam, two kinds.
import { closeSync, existsSync, lstatSync, openSync, readdirSync, readlinkSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { join } from "node:path";
import { PRIVILEGED } from "../identity";
import type { Runtime } from "./runtime";

/** Where the execroot appears inside the sandbox: fixed, so paths baked into outputs repeat. */
export const SANDBOX_EXECROOT = "/execroot";
/** The identity actions run as (nobody/nogroup). */
export const SANDBOX_UID = 65534;

export interface SandboxRun {
  argv: string[];
  env: Record<string, string>;
  /** Host directory with the inputs; it becomes SANDBOX_EXECROOT. */
  execroot: string;
  /**
   * When set, the execroot is the lower layer of an overlay and writes land here: used when the
   * action's uid maps to ours (rootless), so hardlinked CAS files cannot be changed in place.
   */
  overlay?: { upper: string; work: string };
  /** Working directory relative to the execroot ("" for the root). */
  workingDirectory: string;
  runtime: Runtime;
  stdoutPath: string;
  stderrPath: string;
  /** A prepared cgroup v2 directory the action runs in, if limits apply. */
  cgroupDir?: string;
  timeoutMs: number;
  signal: AbortSignal;
}

export interface SandboxResult {
  /** The command's exit code, or 128+N when signal N killed it. */
  exitCode: number;
  timedOut: boolean;
  cancelled: boolean;
  /** Set when the sandbox itself could not be set up (a server-side failure, not the action's). */
  setupError?: string;
  /** performance.now() when the command was about to start, and when it ended. */
  startedAt: number;
  readyAt: number;
  endedAt: number;
}

export interface Sandbox {
  readonly kind: "namespaces" | "none";
  /** True when writes must go to an overlay (the action's uid is ours, see SandboxRun.overlay). */
  readonly needsOverlay: boolean;
  run(r: SandboxRun): Promise<SandboxResult>;
}

/** Exit status of the helper when it could not set the sandbox up. */
const SETUP_FAILED = 125;
/** How long the helper gets to take an action down after SIGTERM before it is killed itself. */
const HELPER_KILL_GRACE_MS = 5000;
/** Top-level names of a runtime that the sandbox provides itself. */
const PROVIDED = new Set(["dev", "proc", "tmp", "sys", SANDBOX_EXECROOT.slice(1)]);

export class NamespaceSandbox implements Sandbox {
  readonly kind = "namespaces";
  /** Rootless, the action's uid maps to ours: see SandboxRun.overlay. */
  readonly needsOverlay = !PRIVILEGED;
  /** The mount steps that put each runtime's top level into the sandbox root, by runtime root. */
  private readonly runtimeSteps = new Map<string, string[]>();

  constructor(private readonly helper: string) {}

  /** The helper's command line for one run. */
  private helperArgs(r: SandboxRun): string[] {
    const args: string[] = [];
    // Without root, the namespaces need a user namespace of their own.
    if (!PRIVILEGED) args.push("--userns");
    args.push("--uid", String(SANDBOX_UID), "--gid", String(SANDBOX_UID), "--hostname", "localhost");
    args.push(...this.runtimeMounts(r.runtime.root));
    args.push("--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp");
    if (r.overlay) args.push("--overlay", r.execroot, r.overlay.upper, r.overlay.work, SANDBOX_EXECROOT);
    else args.push("--bind", r.execroot, SANDBOX_EXECROOT);
    args.push("--chdir", r.workingDirectory === "" ? SANDBOX_EXECROOT : `${SANDBOX_EXECROOT}/${r.workingDirectory}`);
    if (r.cgroupDir) args.push("--cgroup", r.cgroupDir);
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
    return supervise([this.helper, ...this.helperArgs(r)], r, undefined, true);
  }
}

/** --sandbox=none: the command runs on the host, in the execroot, as the server's user. */
export class HostProcess implements Sandbox {
  readonly kind = "none";
  readonly needsOverlay = false;

  run(r: SandboxRun): Promise<SandboxResult> {
    // setsid makes the command a process group leader, so the whole tree can be killed at once.
    return supervise(["setsid", ...r.argv], r, join(r.execroot, r.workingDirectory), false);
  }
}

type Status = { exit_code?: number; signal?: number; error?: string };

/** Starts a process with the action's stdio and environment, enforcing the timeout and cancellation. */
async function supervise(argv: string[], r: SandboxRun, cwd: string | undefined, helper: boolean): Promise<SandboxResult> {
  const stdout = openSync(r.stdoutPath, "w", 0o600);
  const stderr = openSync(r.stderrPath, "w", 0o600);
  const startedAt = performance.now();
  let readyAt = startedAt;
  let timedOut = false;
  let cancelled = false;
  let proc;
  try {
    proc = Bun.spawn(argv, { cwd, env: r.env, stdio: ["ignore", stdout, stderr, helper ? "pipe" : "ignore"] });
  } catch (err) {
    const endedAt = performance.now();
    return { exitCode: 127, timedOut, cancelled, startedAt, readyAt, endedAt, setupError: `cannot start ${argv[0]}: ${(err as Error).message}` };
  } finally {
    closeSync(stdout);
    closeSync(stderr);
  }
  let exited = false;
  // The helper turns SIGTERM into SIGKILL for the namespace's PID 1 and exits only once every process
  // in it is gone, so outputs are final when it returns; SIGKILL follows if it does not. Without a
  // helper, the command's process group is killed.
  const stop = () => {
    if (exited) return;
    if (helper) {
      proc.kill("SIGTERM");
      setTimeout(() => exited || proc.kill("SIGKILL"), HELPER_KILL_GRACE_MS).unref();
    } else killGroup(proc.pid);
  };
  const timer = setTimeout(() => {
    timedOut = true;
    stop();
  }, r.timeoutMs);
  const onAbort = () => {
    cancelled = true;
    stop();
  };
  r.signal.addEventListener("abort", onAbort);
  if (r.signal.aborted) onAbort();

  const status = helper ? readStatus(proc.stdio[3] as number, () => (readyAt = performance.now())) : Promise.resolve<Status>({});
  const [code, st] = await Promise.all([proc.exited, status]);
  exited = true;
  clearTimeout(timer);
  r.signal.removeEventListener("abort", onAbort);
  // Without a sandbox nothing else reaps what the command left running in the background.
  if (!helper) killGroup(proc.pid);
  const base = { timedOut, cancelled, startedAt, readyAt, endedAt: performance.now() };
  if (helper) {
    if (st.error !== undefined && code === SETUP_FAILED) return { ...base, exitCode: SETUP_FAILED, setupError: st.error };
    if (st.signal !== undefined) return { ...base, exitCode: 128 + st.signal };
    if (st.exit_code !== undefined) return { ...base, exitCode: st.exit_code };
  }
  const signo = proc.signalCode ? (osConstants.signals as Record<string, number>)[proc.signalCode] : undefined;
  return { ...base, exitCode: signo !== undefined ? 128 + signo : code };
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {}
}

/** Reads the helper's JSON status lines: {"ready":true}, then the final one; closes fd at the end. */
async function readStatus(fd: number, onReady: () => void): Promise<Status> {
  try {
    return await parseStatus(fd, onReady);
  } finally {
    closeSync(fd);
  }
}

async function parseStatus(fd: number, onReady: () => void): Promise<Status> {
  let status: Status = {};
  let buffered = "";
  const decoder = new TextDecoder();
  for await (const chunk of Bun.file(fd).stream()) {
    buffered += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        const msg = JSON.parse(line);
        if (msg.ready) onReady();
        else status = msg;
      } catch {
        status = { error: `unreadable status from the sandbox helper: ${line}` };
      }
    }
  }
  return status;
}

/** The sandbox helper of a source checkout (built by `bash shim/build.sh`). */
export function sourceHelperPath(): string | undefined {
  const path = join(import.meta.dir, "../../build/shim/actiond-sandbox");
  return existsSync(path) ? path : undefined;
}
