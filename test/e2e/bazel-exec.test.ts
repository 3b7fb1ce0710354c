// End to end: a real Bazel (4.2.3) runs every action of test/e2e/workspace on `actiond serve`
// (--remote_executor): genrules, a tree artifact consumed by another action, a generated tool, a
// cc_binary built by the cc runtime's gcc, and an sh_test. The outputs must equal a local build's.
//
// Skipped when `bazel` is not on PATH, unless ACTIOND_REQUIRE_E2E=1 (then it fails instead).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { join } from "node:path";
import { startServer, tempDir, type ServerProcess } from "../support/server";
import { sourceRuntimeImage } from "../../src/exec/runtime";
import { BazelWorkspace, COMMON_FLAGS, EXPECTED_OUTPUTS, makeDirsWritable, processSummary, skipWithoutBazel, snapshot } from "./bazel";

const SKIP = skipWithoutBazel("bazel-exec e2e");
/** The C toolchain reaches the sandbox through the cc runtime image (bun runtimes/build.ts --profile cc). */
const CC_RUNTIME = sourceRuntimeImage("cc");

let server: ServerProcess | undefined;
let tmp = "";

beforeAll(async () => {
  if (SKIP) return;
  if (!existsSync(CC_RUNTIME)) throw new Error(`${CC_RUNTIME} is missing: run \`bun runtimes/build.ts --profile cc\``);
  tmp = tempDir("actiond-e2e-exec-");
  server = await startServer({ root: join(tmp, "cas"), args: ["--runtime-image", CC_RUNTIME, "--log-level", "debug"] });
});

afterAll(async () => {
  await server?.stop();
  if (tmp) {
    makeDirsWritable(tmp);
    rmSync(tmp, { recursive: true, force: true });
  }
});

function remote(w: BazelWorkspace, command: "build" | "test"): Promise<string> {
  return w.run(
    [
      command,
      "//...",
      `--remote_executor=grpc://${server!.address}`,
      "--spawn_strategy=remote",
      "--genrule_strategy=remote",
      "--remote_local_fallback=false",
      "--remote_timeout=60",
      "--test_output=errors",
      ...COMMON_FLAGS,
    ],
    () => `--- server log ---\n${server?.log()}`,
  );
}

test.skipIf(SKIP)(
  "every action runs remotely in actiond's sandbox, and the outputs equal a local build's",
  async () => {
    const w = new BazelWorkspace(tmp);
    const local = processSummary(await w.run(["build", "//...", "--spawn_strategy=standalone", ...COMMON_FLAGS]));
    const localFiles = snapshot(realpathSync(join(w.ws, "bazel-bin")));
    await w.run(["clean"]);

    const built = processSummary(await remote(w, "build"));
    console.log(`local build:  ${local.line}\nremote build: ${built.line}`);
    const actions = built.total - (built.kinds["internal"] ?? 0);
    expect(actions).toBeGreaterThanOrEqual(10);
    expect(built.kinds["remote"]).toBe(actions);
    const remoteFiles = snapshot(realpathSync(join(w.ws, "bazel-bin")));
    expect(Object.keys(remoteFiles)).toEqual(expect.arrayContaining(EXPECTED_OUTPUTS));
    expect(remoteFiles).toEqual(localFiles);
    expect(readFileSync(join(w.ws, "bazel-bin/tool/shout.txt"), "utf8")).toBe("HELLO FROM A TOOL\n");

    // The sh_test runs remotely too: it runs the C binary from its runfiles and checks the tool's output.
    const tested = await remote(w, "test");
    const summary = processSummary(tested);
    console.log(`remote test:  ${summary.line}`);
    expect(tested).toMatch(/\/\/shtest:check\s+PASSED/);
    expect(summary.kinds["remote"]).toBe(summary.total - (summary.kinds["internal"] ?? 0) - (summary.kinds["remote cache hit"] ?? 0));
    expect(readFileSync(join(w.ws, "bazel-testlogs/shtest/check/test.log"), "utf8")).toContain("PASS");
    expect(server!.log()).not.toMatch(/ (WARN|ERROR) /);
  },
  300_000,
);

test.skipIf(SKIP)(
  "rootless: with the server running as an unprivileged user, Bazel's actions still all run remotely",
  async () => {
    const own = await startServer({ root: tempDir("actiond-e2e-rootless-"), user: "tester" });
    try {
      const w = new BazelWorkspace(tmp, "ws-rootless");
      const out = await w.run(
        ["build", "//:all", "//tool:all", `--remote_executor=grpc://${own.address}`, "--spawn_strategy=remote", "--genrule_strategy=remote", "--remote_local_fallback=false", ...COMMON_FLAGS],
        () => `--- server log ---\n${own.log()}`,
      );
      const summary = processSummary(out);
      expect(summary.kinds["remote"]).toBe(summary.total - (summary.kinds["internal"] ?? 0));
      expect(own.log()).toContain("sandbox namespaces (rootless)");
      expect(readFileSync(join(w.ws, "bazel-bin/c.txt"), "utf8")).toBe("ALPHA\nBETA\nGAMMA\n");
      expect(readFileSync(join(w.ws, "bazel-bin/tool/shout.txt"), "utf8")).toBe("HELLO FROM A TOOL\n");
    } finally {
      await own.stop();
    }
  },
  300_000,
);
