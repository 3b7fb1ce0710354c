// End to end: a real Bazel builds test/e2e/workspace against a real `actiond serve`, cleans, rebuilds,
// and every action must come back as a remote cache hit with byte-identical outputs.
//
// Skipped when `bazel` is not on PATH, unless ACTIOND_REQUIRE_E2E=1 (then it fails instead).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { startServer, tempDir, type ServerProcess } from "../support/server";

const BAZEL = Bun.which("bazel");
const REQUIRED = process.env.ACTIOND_REQUIRE_E2E === "1";
const SKIP = !BAZEL && !REQUIRED;
if (SKIP) console.warn("SKIP bazel-cache e2e: `bazel` is not on PATH (set ACTIOND_REQUIRE_E2E=1 to make this a failure)");

let server: ServerProcess | undefined;
let tmp = "";

beforeAll(async () => {
  if (SKIP) return;
  tmp = tempDir("actiond-e2e-");
  server = await startServer({ root: join(tmp, "cas"), args: ["--log-level", "debug"] });
});

afterAll(async () => {
  await server?.stop();
  if (tmp) {
    makeDirsWritable(tmp);
    rmSync(tmp, { recursive: true, force: true });
  }
});

/** Bazel leaves read-only directories behind, whose entries cannot be removed until they are writable. */
function makeDirsWritable(dir: string): void {
  chmodSync(dir, lstatSync(dir).mode | 0o700);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) makeDirsWritable(join(dir, entry.name));
  }
}

/** Runs one Bazel command in --batch mode (no server left behind) and returns its combined output. */
async function bazel(ws: string, ...args: string[]): Promise<string> {
  const cmd = [
    BAZEL!,
    `--output_user_root=${join(tmp, "bazel-root")}`,
    // Keep the system rc: Debian's bazel-bootstrap needs its --install_base from /etc/bazel/bazelrc.
    "--nohome_rc",
    "--batch",
    ...args,
  ];
  const proc = Bun.spawn(cmd, {
    cwd: ws,
    stdout: "pipe",
    stderr: "pipe",
    // A private HOME so nothing from the machine's ~/.bazelrc or ~/.cache leaks in.
    env: { ...process.env, HOME: join(tmp, "home") },
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const text = out + err;
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited with ${code}:\n${text}\n--- server log ---\n${server?.log()}`);
  return text;
}

function build(ws: string, ...extra: string[]): Promise<string> {
  return bazel(
    ws,
    "build",
    "//...",
    ...extra,
    `--remote_cache=grpc://${server!.address}`,
    "--remote_accept_cached",
    "--remote_upload_local_results",
    "--remote_timeout=20",
    // Cache only: actions run locally, no sandbox needed.
    "--spawn_strategy=local",
    // Action keys should not depend on the test runner's PATH.
    "--incompatible_strict_action_env",
    "--noshow_progress",
    "--color=no",
    "--curses=no",
  );
}

/** Parses `INFO: 7 processes: 6 remote cache hit, 1 internal.` into {total, kinds}. */
function processSummary(output: string): { line: string; total: number; kinds: Record<string, number> } {
  const m = /^INFO: (\d+) process(?:es)?(?:: (.*?))?\.?$/m.exec(output);
  if (!m) throw new Error(`no process summary in Bazel output:\n${output}`);
  const kinds: Record<string, number> = {};
  for (const part of (m[2] ?? "").split(",")) {
    const k = /^\s*(\d+) (.+?)\s*$/.exec(part);
    if (k) kinds[k[2]!] = Number(k[1]);
  }
  return { line: m[0], total: Number(m[1]), kinds };
}

interface FileSnapshot {
  sha256: string;
  mode: string;
}

/** Every regular file under bazel-bin, by relative path: content hash and permission bits. */
function snapshot(dir: string, prefix = ""): Record<string, FileSnapshot> {
  const files: Record<string, FileSnapshot> = {};
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix + entry.name;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) Object.assign(files, snapshot(path, rel + "/"));
    else {
      const st = lstatSync(path);
      if (!st.isFile()) throw new Error(`unexpected non-regular output ${rel}`);
      files[rel] = {
        sha256: createHash("sha256").update(readFileSync(path)).digest("hex"),
        mode: (st.mode & 0o777).toString(8),
      };
    }
  }
  return files;
}

test.skipIf(SKIP)(
  "a clean rebuild is served entirely from the actiond cache, byte for byte",
  async () => {
    if (!BAZEL) throw new Error("ACTIOND_REQUIRE_E2E=1 but `bazel` is not on PATH");
    // Build a copy, so the checkout gets no bazel-* symlinks.
    const ws = join(tmp, "ws");
    cpSync(join(import.meta.dir, "workspace"), ws, { recursive: true });
    mkdirSync(join(tmp, "home"));

    // Instance names do not split the store: the rebuild names another one and still hits.
    const first = await build(ws, "--remote_instance_name=team/one");
    const firstSummary = processSummary(first);
    const before = snapshot(realpathSync(join(ws, "bazel-bin")));

    await bazel(ws, "clean");
    const second = await build(ws, "--remote_instance_name=team/two");
    const secondSummary = processSummary(second);
    const after = snapshot(realpathSync(join(ws, "bazel-bin")));

    console.log(`first build:  ${firstSummary.line}\nsecond build: ${secondSummary.line}`);

    // The workspace really produced what it is meant to exercise.
    expect(Object.keys(before).sort()).toEqual([
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
    ]);
    expect(readFileSync(join(ws, "bazel-bin/c.txt"), "utf8")).toBe("ALPHA\nBETA\nGAMMA\n");
    expect(Number.parseInt(after["tree/tool.sh"]!.mode, 8) & 0o111).not.toBe(0);

    // A fresh cache: nothing can hit on the first build.
    expect(firstSummary.kinds["remote cache hit"] ?? 0).toBe(0);
    // Every action process (all but Bazel's internal ones) was a remote cache hit.
    const actions = secondSummary.total - (secondSummary.kinds["internal"] ?? 0);
    expect(actions).toBeGreaterThan(0);
    expect(secondSummary.kinds["remote cache hit"]).toBe(actions);
    expect(actions).toBe(firstSummary.total - (firstSummary.kinds["internal"] ?? 0));

    expect(after).toEqual(before);

    // Building without the bytes trusts the cache's results to be complete: all hits again.
    await bazel(ws, "clean");
    const minimal = processSummary(await build(ws, "--remote_download_minimal"));
    console.log(`minimal build: ${minimal.line}`);
    expect(minimal.kinds["remote cache hit"]).toBe(actions);

    // Bazel only warns (and carries on) when the remote cache misbehaves; the server should not complain.
    for (const out of [first, second]) expect(out).not.toMatch(/^WARNING:.*remote/im);
    expect(server!.log()).not.toMatch(/ (WARN|ERROR) /);
  },
  180_000,
);
