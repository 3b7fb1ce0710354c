// Supervising one sandboxed process: its stdio and environment, the timeout and cancellation, and
// the exit status (the helper reports it as JSON lines on fd 3: {"ready":true}, then the final one).
import { closeSync, openSync } from "node:fs";
import { constants as osConstants } from "node:os";
import type { SandboxResult, SandboxRun } from "./sandbox";

/** Exit status of the helper when it could not set the sandbox up. */
const SETUP_FAILED = 125;
/** How long the helper gets to take an action down after SIGTERM before it is killed itself. */
const HELPER_KILL_GRACE_MS = 5000;

type Status = { exit_code?: number; signal?: number; error?: string };

export interface SuperviseOptions {
  /** argv is the sandbox helper, which reports on fd 3; otherwise a plain command, whose process group is killed when it ends. */
  helper: boolean;
  cwd?: string;
  /** What the process sees as its argv[0] (the file run is still argv's first entry). */
  argv0?: string;
  /** A file the process gets open for reading as fd 4 (the helper's --args-fd). */
  fd4Path?: string;
}

/** Starts a process with the action's stdio and environment, enforcing the timeout and cancellation. */
export async function supervise(argv: string[], r: SandboxRun, opts: SuperviseOptions): Promise<SandboxResult> {
  const { helper, cwd } = opts;
  const stdout = openSync(r.stdoutPath, "w", 0o600);
  const stderr = openSync(r.stderrPath, "w", 0o600);
  let fd4: number | undefined;
  const startedAt = performance.now();
  let readyAt = startedAt;
  let timedOut = false;
  let cancelled = false;
  let proc;
  try {
    if (opts.fd4Path !== undefined) fd4 = openSync(opts.fd4Path, "r");
    const extra = fd4 === undefined ? [] : [fd4];
    proc = Bun.spawn(argv, { cwd, env: r.env, argv0: opts.argv0, stdio: ["ignore", stdout, stderr, helper ? "pipe" : "ignore", ...extra] });
  } catch (err) {
    const endedAt = performance.now();
    return { exitCode: 127, timedOut, cancelled, startedAt, readyAt, endedAt, setupError: `cannot start ${argv[0]}: ${(err as Error).message}` };
  } finally {
    closeSync(stdout);
    closeSync(stderr);
    if (fd4 !== undefined) closeSync(fd4);
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
