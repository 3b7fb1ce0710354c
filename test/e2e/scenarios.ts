// The end-to-end scenarios every way of running actiond must pass (from source, the compiled
// executable): Bazel builds and tests test/e2e/workspace with all actions on the server.
import { expect } from "bun:test";
import { readFileSync, realpathSync } from "node:fs";
import { join } from "node:path";
import type { ServerProcess } from "../support/server";
import { BazelWorkspace, COMMON_FLAGS, EXPECTED_OUTPUTS, processSummary, snapshot } from "./bazel";

function remote(w: BazelWorkspace, server: ServerProcess, args: string[]): Promise<string> {
  return w.run(
    [
      ...args,
      `--remote_executor=grpc://${server.address}`,
      "--spawn_strategy=remote",
      "--genrule_strategy=remote",
      "--remote_local_fallback=false",
      "--remote_timeout=60",
      "--test_output=errors",
      ...COMMON_FLAGS,
    ],
    () => `--- server log ---\n${server.log()}`,
  );
}

/** Genrules, a tree artifact, a generated tool, a cc_binary and an sh_test, all remote; outputs equal a local build's. */
export async function expectRemoteEqualsLocal(tmp: string, server: ServerProcess, expectedWarning?: RegExp): Promise<void> {
  const w = new BazelWorkspace(tmp);
  const local = processSummary(await w.run(["build", "//...", "--spawn_strategy=standalone", ...COMMON_FLAGS]));
  const localFiles = snapshot(realpathSync(join(w.ws, "bazel-bin")));
  await w.run(["clean"]);

  const built = processSummary(await remote(w, server, ["build", "//..."]));
  console.log(`local build:  ${local.line}\nremote build: ${built.line}`);
  const actions = built.total - (built.kinds["internal"] ?? 0);
  expect(actions).toBeGreaterThanOrEqual(10);
  expect(built.kinds["remote"]).toBe(actions);
  const remoteFiles = snapshot(realpathSync(join(w.ws, "bazel-bin")));
  expect(Object.keys(remoteFiles)).toEqual(expect.arrayContaining(EXPECTED_OUTPUTS));
  expect(remoteFiles).toEqual(localFiles);
  expect(readFileSync(join(w.ws, "bazel-bin/tool/shout.txt"), "utf8")).toBe("HELLO FROM A TOOL\n");

  // The sh_test runs remotely too: it runs the C binary from its runfiles and checks the tool's output.
  const tested = await remote(w, server, ["test", "//..."]);
  const summary = processSummary(tested);
  console.log(`remote test:  ${summary.line}`);
  expect(tested).toMatch(/\/\/shtest:check\s+PASSED/);
  expect(summary.kinds["remote"]).toBe(summary.total - (summary.kinds["internal"] ?? 0) - (summary.kinds["remote cache hit"] ?? 0));
  expect(readFileSync(join(w.ws, "bazel-testlogs/shtest/check/test.log"), "utf8")).toContain("PASS");
  const unexpected = server.log().split("\n").filter((l) => / (WARN|ERROR) /.test(l) && !(expectedWarning && expectedWarning.test(l)));
  expect(unexpected).toEqual([]);
}

/**
 * A platform as RBE configurations write it (container-image, OSFamily): every action still runs
 * remotely, in actiond's runtime, and the server says once what it made of the image (in the log,
 * and in that action's ExecuteResponse.message, which Bazel 4.2.3 shows only for failed actions;
 * newer Bazel prints it with --remote_print_execution_messages=all).
 */
export async function expectRbePlatformBuild(tmp: string, server: ServerProcess): Promise<void> {
  const w = new BazelWorkspace(tmp, "ws-rbe");
  const out = await remote(w, server, [
    "build",
    "//...",
    "--remote_default_exec_properties=container-image=docker://gcr.io/some/image@sha256:0123",
    "--remote_default_exec_properties=OSFamily=Linux",
  ]);
  const summary = processSummary(out);
  console.log(`rbe platform: ${summary.line}`);
  expect(summary.kinds["remote"]).toBe(summary.total - (summary.kinds["internal"] ?? 0));
  const notices = server.log().split("\n").filter((l) => l.includes('container-image="docker://gcr.io/some/image@sha256:0123" is not used: actiond runs actions in its own runtime images'));
  expect(notices).toHaveLength(1);
  expect(readFileSync(join(w.ws, "bazel-bin/tool/shout.txt"), "utf8")).toBe("HELLO FROM A TOOL\n");
}

/** With the server running as a plain user: the genrules and the generated tool still all run remotely. */
export async function expectRootlessBuild(tmp: string, server: ServerProcess): Promise<void> {
  const w = new BazelWorkspace(tmp, "ws-rootless");
  const out = await remote(w, server, ["build", "//:all", "//tool:all"]);
  const summary = processSummary(out);
  expect(summary.kinds["remote"]).toBe(summary.total - (summary.kinds["internal"] ?? 0));
  expect(server.log()).toContain("sandbox namespaces (rootless)");
  expect(readFileSync(join(w.ws, "bazel-bin/c.txt"), "utf8")).toBe("ALPHA\nBETA\nGAMMA\n");
  expect(readFileSync(join(w.ws, "bazel-bin/tool/shout.txt"), "utf8")).toBe("HELLO FROM A TOOL\n");
}
