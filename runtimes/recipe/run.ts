// Running the Debian tools the recipe needs, with errors that say what to install.
import { which } from "bun";

/** Each tool the recipe runs, and the Debian package that ships it. */
export const TOOLS = { "apt-get": "apt", "dpkg-deb": "dpkg", mksquashfs: "squashfs-tools" } as const;

/** Fails with one line naming the package to install, for the first tool not on PATH. */
export function requireTools(): void {
  const missing = Object.entries(TOOLS).filter(([tool]) => !which(tool));
  if (missing.length > 0) {
    const list = missing.map(([tool, pkg]) => `${tool} (apt-get install ${pkg})`).join(", ");
    throw new Error(`the runtime recipe needs Debian tools that are not on PATH: ${list}`);
  }
}

/**
 * Runs a command (in the C locale, for parseable output); returns its stdout, or throws with its
 * stderr when it exits non-zero. `env`, when given, is the whole environment.
 */
export async function run(cmd: string[], opts: { cwd?: string; env?: Record<string, string | undefined> } = {}): Promise<string> {
  const proc = Bun.spawn(cmd, {
    cwd: opts.cwd,
    env: { ...(opts.env ?? process.env), LC_ALL: "C" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`${cmd.slice(0, 3).join(" ")} … exited ${code}:\n${err.trim() || out.trim()}`);
  return out;
}

/** Runs `fn` over `items` with at most `limit` at once (extraction is CPU-bound: one per core). */
export async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
