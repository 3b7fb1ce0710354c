// Running the real Bazel (Debian's 4.2.3) against test/e2e/workspace, shared by the e2e suites.
import { chmodSync, cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";

export const BAZEL = Bun.which("bazel");
const REQUIRED = process.env.ACTIOND_REQUIRE_E2E === "1";

/** True when the suite must skip (no Bazel, and not required); warns once with the reason. */
export function skipWithoutBazel(suite: string): boolean {
  const skip = !BAZEL && !REQUIRED;
  if (skip) console.warn(`SKIP ${suite}: \`bazel\` is not on PATH (set ACTIOND_REQUIRE_E2E=1 to make this a failure)`);
  return skip;
}

export interface BazelRun {
  code: number;
  output: string;
}

export class BazelWorkspace {
  readonly ws: string;

  /** Copies test/e2e/workspace (or the files given) under tmp, so the checkout gets no bazel-* symlinks. */
  constructor(
    readonly tmp: string,
    name = "ws",
    files?: Record<string, string>,
  ) {
    if (!BAZEL) throw new Error("ACTIOND_REQUIRE_E2E=1 but `bazel` is not on PATH");
    this.ws = join(tmp, name);
    if (files) {
      mkdirSync(this.ws, { recursive: true });
      for (const [path, text] of Object.entries(files)) writeFileSync(join(this.ws, path), text);
    } else cpSync(join(import.meta.dir, "workspace"), this.ws, { recursive: true });
    mkdirSync(join(tmp, "home"), { recursive: true });
  }

  /** One Bazel command in --batch mode (no server left behind); throws with context on failure. */
  async run(args: string[], context: () => string = () => ""): Promise<string> {
    const r = await this.tryRun(args);
    if (r.code !== 0) throw new Error(`bazel ${args.join(" ")} exited with ${r.code}:\n${r.output}\n${context()}`);
    return r.output;
  }

  async tryRun(args: string[], outputBase?: string): Promise<BazelRun> {
    const cmd = [
      BAZEL!,
      `--output_user_root=${join(this.tmp, "bazel-root")}`,
      ...(outputBase ? [`--output_base=${outputBase}`] : []),
      // Keep the system rc: Debian's bazel-bootstrap needs its --install_base from /etc/bazel/bazelrc.
      "--nohome_rc",
      "--batch",
      ...args,
    ];
    const proc = Bun.spawn(cmd, {
      cwd: this.ws,
      stdout: "pipe",
      stderr: "pipe",
      // A private HOME so nothing from the machine's ~/.bazelrc or ~/.cache leaks in.
      env: { ...process.env, HOME: join(this.tmp, "home") },
    });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { code, output: out + err };
  }
}

/** Flags every e2e build shares: quiet output, and action keys that do not depend on the runner's PATH. */
export const COMMON_FLAGS = ["--incompatible_strict_action_env", "--nobuild_runfile_links", "--noshow_progress", "--color=no", "--curses=no", "--nosandbox_debug"];

/** Parses `INFO: 7 processes: 6 remote cache hit, 1 internal.` into {total, kinds}. */
export function processSummary(output: string): { line: string; total: number; kinds: Record<string, number> } {
  const m = /^INFO: (\d+) process(?:es)?(?:: (.*?))?\.?$/m.exec(output);
  if (!m) throw new Error(`no process summary in Bazel output:\n${output}`);
  const kinds: Record<string, number> = {};
  for (const part of (m[2] ?? "").split(",")) {
    const k = /^\s*(\d+) (.+?)\s*$/.exec(part);
    if (k) kinds[k[2]!] = Number(k[1]);
  }
  return { line: m[0], total: Number(m[1]), kinds };
}

export interface FileSnapshot {
  sha256?: string;
  mode?: string;
  symlink?: string;
}

/** Every file under a directory (bazel-bin), by relative path: content hash and mode, or symlink target. */
export function snapshot(dir: string, prefix = ""): Record<string, FileSnapshot> {
  const files: Record<string, FileSnapshot> = {};
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix + entry.name;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) Object.assign(files, snapshot(path, rel + "/"));
    else if (entry.isSymbolicLink()) files[rel] = { symlink: readlinkSync(path) };
    else {
      files[rel] = {
        sha256: createHash("sha256").update(readFileSync(path)).digest("hex"),
        mode: (lstatSync(path).mode & 0o777).toString(8),
      };
    }
  }
  return files;
}

/** Bazel leaves read-only directories behind, whose entries cannot be removed until they are writable. */
function makeDirsWritable(dir: string): void {
  chmodSync(dir, lstatSync(dir).mode | 0o700);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) makeDirsWritable(join(dir, entry.name));
  }
}

/** Removes a suite's temporary folder, Bazel's read-only trees in it included; nothing when dir is "" (a skipped suite). */
export function removeBazelTree(dir: string): void {
  if (!dir) return;
  makeDirsWritable(dir);
  rmSync(dir, { recursive: true, force: true });
}

/** Outputs the workspace is meant to produce (a subset of bazel-bin: the interesting ones). */
export const EXPECTED_OUTPUTS = [
  "a.txt",
  "b.txt",
  "big.bin",
  "c.txt",
  "manifest.txt",
  "multi/empty.txt",
  "multi/one.txt",
  "multi/two.txt",
  "tree/copy.txt",
  "tree/nested/deeper/numbers.txt",
  "tree/nested/hello.txt",
  "tree/tool.sh",
  "tool/upper.sh",
  "tool/shout.txt",
  "cc/hello",
  "cc/libgreet.a",
];
