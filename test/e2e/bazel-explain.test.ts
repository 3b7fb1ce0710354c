// End to end: "why did it miss" with the real Bazel (4.2.3). Between two builds one input file of a
// target changes, then an --action_env variable; `actiond explain //:gen` must name exactly that
// file with both digests, then exactly that variable, and still know both after a restart.
//
// Skipped when bazel is missing, unless ACTIOND_REQUIRE_E2E=1 (then it fails instead).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { MAIN, startServer, tempDir, type ServerProcess } from "../support/server";
import { BazelWorkspace, COMMON_FLAGS, removeBazelTree, processSummary, skipWithoutBazel } from "./bazel";

const SKIP = skipWithoutBazel("explain e2e");

let server: ServerProcess;
let tmp = "";

beforeAll(async () => {
  if (SKIP) return;
  tmp = tempDir("actiond-e2e-explain-");
  server = await startServer({ root: join(tmp, "cas") });
});

afterAll(async () => {
  await server?.stop();
  removeBazelTree(tmp);
});

const digestOf = (text: string) => `${createHash("sha256").update(text).digest("hex")}/${Buffer.byteLength(text)}`;

interface Explained {
  target: string;
  mnemonic: string;
  output: string;
  action: string;
  why?: { summary: string; inputs: { name: string; before?: string; after?: string }[]; inputsChanged: number; env: { name: string; before?: string; after?: string }[]; args: unknown[]; platform: unknown[]; other: unknown[] };
}

function explain(...args: string[]): { code: number; out: string } {
  const r = Bun.spawnSync([process.execPath, MAIN, "explain", "--address", server.address, ...args]);
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
}

function explainJson(target: string): Explained[] {
  const r = explain("--json", target);
  expect(r.code).toBe(0);
  return JSON.parse(r.out) as Explained[];
}

test.skipIf(SKIP)(
  "`actiond explain` names the one input file that changed between two Bazel builds, with both digests; then the one env var; and still after a restart",
  async () => {
    const w = new BazelWorkspace(tmp, "ws", {
      WORKSPACE: 'workspace(name = "explain")\n',
      BUILD: 'genrule(name = "gen", srcs = ["in.txt", "same.txt"], outs = ["out.txt"], cmd = "cat $(SRCS) > $@; echo $$GREETING >> $@")\n',
      "in.txt": "first\n",
      "same.txt": "unchanged\n",
    });
    const build = (greeting: string) =>
      w.run(
        ["build", "//:gen", `--remote_executor=grpc://${server.address}`, "--spawn_strategy=remote", "--genrule_strategy=remote", "--remote_local_fallback=false", `--action_env=GREETING=${greeting}`, ...COMMON_FLAGS],
        () => `--- server log ---\n${server.log()}`,
      );

    expect(processSummary(await build("hello")).kinds["remote"]).toBe(1);
    const first = explainJson("//:gen");
    expect(first).toHaveLength(1);
    expect(first[0]!.mnemonic).toBe("Genrule");
    expect(first[0]!.output).toMatch(/out\.txt$/);
    expect(first[0]!.why?.summary).toContain("first run here");

    // One input changes: that file, and only it, with its old and new digest.
    writeFileSync(join(w.ws, "in.txt"), "second\n");
    expect(processSummary(await build("hello")).kinds["remote"]).toBe(1);
    const second = explainJson("//:gen")[0]!;
    expect(second.action).not.toBe(first[0]!.action);
    expect(second.why?.inputs).toEqual([{ name: "in.txt", before: digestOf("first\n"), after: digestOf("second\n") }]);
    expect(second.why?.inputsChanged).toBe(1);
    expect(second.why?.env).toEqual([]);
    expect(second.why?.args).toEqual([]);
    const text = explain("//:gen");
    expect(text.code).toBe(0);
    expect(text.out).toContain(`input changed  in.txt  ${digestOf("first\n")} -> ${digestOf("second\n")}`);
    expect(text.out).not.toContain("same.txt");

    // One environment variable changes: that one, and no input.
    expect(processSummary(await build("bye")).kinds["remote"]).toBe(1);
    const third = explainJson("//:gen")[0]!;
    expect(third.why?.env).toEqual([{ name: "GREETING", before: "hello", after: "bye" }]);
    expect(third.why?.inputs).toEqual([]);
    expect(explain("//:gen").out).toContain('env changed  GREETING  "hello" -> "bye"');

    // The records are on disk: a restarted server still explains the last miss.
    await server.stop();
    server = await startServer({ root: join(tmp, "cas") });
    const after = explainJson("//:gen");
    expect(after.map((a) => a.action)).toEqual([third.action]);
    expect(after[0]!.why?.env).toEqual(third.why!.env);

    const none = explain("//no:such");
    expect(none.code).toBe(1);
    expect(none.out).toContain("no executed action of //no:such");
  },
  300_000,
);
