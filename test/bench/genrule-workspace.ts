// The Bazel side the build benchmarks share: a workspace under a temporary folder, a Bazel of its
// own there (output root, HOME), and a clean build timed as the client sees it. genruleWorkspace
// fills it with genrules; cc-workspace.ts with real C projects.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { tempDir } from "../support/server";

export interface BazelWorkspace {
  /** Everything lives below it (the workspace, Bazel's output root and HOME). */
  tmp: string;
  /** The workspace itself (empty until filled). */
  ws: string;
  /** One Bazel command; throws with its output when it fails. */
  bazel(args: string[]): Promise<string>;
  /** `bazel clean`, then a timed `bazel build` of the targets with the common flags and these: wall ms and Bazel's process summary. */
  timedBuild(flags: string[]): Promise<{ ms: number; summary: string }>;
}

/** A workspace folder and a Bazel for it; `common` are the flags every timed build takes. */
export function bazelWorkspace(prefix: string, common: string[], targets: string[]): BazelWorkspace {
  const bazelPath = Bun.which("bazel");
  if (!bazelPath) throw new Error("bazel is not on PATH (apt-get install bazel-bootstrap)");
  const tmp = tempDir(prefix);
  const ws = join(tmp, "ws");
  mkdirSync(ws);
  const startupFlags = [`--output_user_root=${join(tmp, "bazel-root")}`, "--nohome_rc"];
  const env = { ...process.env, HOME: join(tmp, "home") };
  const bazel = async (args: string[]): Promise<string> => {
    const proc = Bun.spawn([bazelPath, ...startupFlags, ...args], { cwd: ws, env, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) throw new Error(`bazel ${args.join(" ")} failed (${code}):\n${out}${err}`);
    return out + err;
  };
  return {
    tmp,
    ws,
    bazel,
    async timedBuild(flags) {
      await bazel(["clean"]);
      const t0 = performance.now();
      const out = await bazel(["build", ...targets, ...common, ...flags]);
      return { ms: performance.now() - t0, summary: /^INFO: \d+ process.*$/m.exec(out)?.[0] ?? "?" };
    },
  };
}

/** `rules` are the BUILD file's lines; `common` the flags every timed build takes; `files` more files of the workspace, by path. */
export function genruleWorkspace(prefix: string, rules: string[], common: string[], files: Record<string, string> = {}): BazelWorkspace {
  const w = bazelWorkspace(prefix, common, ["//:all"]);
  writeFileSync(join(w.ws, "WORKSPACE"), 'workspace(name = "bench")\n');
  writeFileSync(join(w.ws, "BUILD"), rules.join("\n") + "\n");
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(w.ws, path)), { recursive: true });
    writeFileSync(join(w.ws, path), content);
  }
  return w;
}
