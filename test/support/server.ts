// Starts a real `actiond serve` process for a test and stops it afterwards.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";

export const REPO = resolve(import.meta.dir, "../..");
export const MAIN = join(REPO, "src/main.ts");

/** The actions' work folders a server has under ROOT/exec (its shared input directories' folder aside). */
export function workFolders(root: string): string[] {
  return readdirSync(join(root, "exec")).filter((name) => name !== "shared");
}

export interface ServerProcess {
  port: number;
  address: string;
  root: string;
  proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Everything the server printed to stderr so far. */
  log(): string;
  /** SIGTERM, then wait for exit; returns the exit code. */
  stop(): Promise<number>;
  /** SIGKILL, no chance to clean up. */
  kill(): Promise<void>;
  /**
   * Resolves with the first match of pattern in the log past offset `from` (a length of log()
   * taken earlier), as soon as the server prints it; rejects after timeoutMs or when it exits.
   */
  waitForLog(pattern: RegExp, timeoutMs?: number, from?: number): Promise<RegExpExecArray>;
}

/** Every temporary directory the tests made: removed once all tests have run (see preload.ts). */
const madeDirs: string[] = [];

/** Removes the directories tempDir() made (ACTIOND_KEEP_TEST_DIRS=1 keeps them, to look at). */
export function removeTempDirs(): void {
  if (process.env.ACTIOND_KEEP_TEST_DIRS === "1") return;
  for (const dir of madeDirs.splice(0)) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Something an action left unremovable (a rootless run): left for the system's /tmp cleaning.
    }
  }
}

export function tempDir(prefix = "actiond-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  madeDirs.push(dir);
  return dir;
}

export interface StartOptions {
  root?: string;
  args?: string[];
  env?: Record<string, string>;
  /** Run the server as this (unprivileged) user, e.g. "tester"; the root folder is given to it. */
  user?: string;
  /** The actiond to run (default: this checkout's src/main.ts under Bun), e.g. a compiled executable. */
  command?: string[];
  /** Its command (default "serve"; "serve-vm" takes the same --listen and --root). */
  subcommand?: string;
  /** When false, the server gets only `env` (default: this process's environment plus `env`). */
  inheritEnv?: boolean;
  cwd?: string;
  /** How long start-up may take (default 15 s; a first start may unpack a runtime image). */
  startTimeoutMs?: number;
  /** The log line that says the server is up, its port in the first group (default: "serving REAPI on HOST:PORT"). */
  readyPattern?: RegExp;
}

export async function startServer(opts: StartOptions = {}): Promise<ServerProcess> {
  const root = opts.root ?? tempDir();
  // setpriv execs in place (no extra process), so signals reach the server itself.
  const asUser = opts.user ? ["setpriv", `--reuid=${opts.user}`, `--regid=${opts.user}`, "--init-groups", "--"] : [];
  if (opts.user) {
    Bun.spawnSync(["chown", "-R", `${opts.user}:`, root]);
    // The server runs from this checkout: say so plainly when the user cannot reach it.
    const exe = opts.command?.[0] ?? process.execPath;
    const reach = Bun.spawnSync(["setpriv", `--reuid=${opts.user}`, `--regid=${opts.user}`, "--init-groups", "--", "test", "-r", opts.command ? exe : MAIN, "-a", "-x", exe]);
    if (reach.exitCode !== 0) {
      throw new Error(`user ${opts.user} cannot read ${MAIN} or run ${exe}: make the checkout's parent directories searchable (chmod o+x), as .ci/run does`);
    }
  }
  const command = opts.command ?? [process.execPath, MAIN];
  const proc = Bun.spawn([...asUser, ...command, opts.subcommand ?? "serve", "--listen", "127.0.0.1:0", "--root", root, ...(opts.args ?? [])], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    cwd: opts.cwd,
    env: opts.inheritEnv === false ? { ...opts.env } : { ...process.env, ...opts.env },
  });
  let text = "";
  const decoder = new TextDecoder();
  let onLine: (() => void) | undefined;
  const watchers = new Set<() => void>();
  (async () => {
    for await (const chunk of proc.stderr) {
      text += decoder.decode(chunk);
      onLine?.();
      for (const w of watchers) w();
    }
  })();
  const port = await new Promise<number>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`server did not start:\n${text}`)), opts.startTimeoutMs ?? 15_000);
    onLine = () => {
      const m = (opts.readyPattern ?? /serving REAPI on [^\s]+:(\d+)/).exec(text);
      if (m) {
        clearTimeout(timer);
        res(Number(m[1]));
      }
    };
    proc.exited.then((code) => rej(new Error(`server exited with ${code}:\n${text}`)));
  });
  return {
    port,
    address: `127.0.0.1:${port}`,
    root,
    proc,
    log: () => text,
    async stop() {
      proc.kill("SIGTERM");
      return await proc.exited;
    },
    async kill() {
      proc.kill("SIGKILL");
      await proc.exited;
      unmountUnder(root);
    },
    waitForLog(pattern, timeoutMs = 60_000, from = 0) {
      return new Promise((resolve, reject) => {
        const done = () => {
          watchers.delete(check);
          clearTimeout(timer);
        };
        const check = () => {
          const m = pattern.exec(text.slice(from));
          if (m) {
            done();
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`the server did not log ${pattern} within ${timeoutMs} ms:\n${text.slice(-4000)}`));
        }, timeoutMs);
        proc.exited.then(() => {
          check();
          if (watchers.has(check)) {
            done();
            reject(new Error(`the server exited before logging ${pattern}:\n${text.slice(-4000)}`));
          }
        });
        watchers.add(check);
        check();
      });
    },
  };
}

/** A server killed without a chance to clean up leaves its runtime mounted; tests tidy that up. */
function unmountUnder(root: string): void {
  const mounts = readFileSync("/proc/mounts", "utf8").split("\n").map((l) => l.split(" ")[1] ?? "");
  for (const m of mounts) if (m.startsWith(`${root}/`)) Bun.spawnSync(["umount", "-l", m]);
}
