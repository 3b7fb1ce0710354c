// End to end: a real Bazel builds test/e2e/workspace against a real `actiond serve`, cleans, rebuilds,
// and every action must come back as a remote cache hit with byte-identical outputs.
//
// Skipped when `bazel` is not on PATH, unless ACTIOND_REQUIRE_E2E=1 (then it fails instead).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, realpathSync } from "node:fs";
import { join } from "node:path";
import { startServer, tempDir, type ServerProcess } from "../support/server";
import { BazelWorkspace, COMMON_FLAGS, EXPECTED_OUTPUTS, removeBazelTree, processSummary, skipWithoutBazel, snapshot } from "./bazel";

const SKIP = skipWithoutBazel("bazel-cache e2e");

let server: ServerProcess | undefined;
let tmp = "";

beforeAll(async () => {
  if (SKIP) return;
  tmp = tempDir("actiond-e2e-");
  server = await startServer({ root: join(tmp, "cas"), args: ["--log-level", "debug"] });
});

afterAll(async () => {
  await server?.stop();
  removeBazelTree(tmp);
});

function build(w: BazelWorkspace, ...extra: string[]): Promise<string> {
  return w.run(
    [
      "build",
      "//...",
      ...extra,
      `--remote_cache=grpc://${server!.address}`,
      "--remote_accept_cached",
      "--remote_upload_local_results",
      "--remote_timeout=20",
      // Cache only: actions run locally, no sandbox needed.
      "--spawn_strategy=local",
      ...COMMON_FLAGS,
    ],
    () => `--- server log ---\n${server?.log()}`,
  );
}

test.skipIf(SKIP)(
  "a clean rebuild is served entirely from the actiond cache, byte for byte",
  async () => {
    const w = new BazelWorkspace(tmp);
    const ws = w.ws;

    // Instance names do not split the store: the rebuild names another one and still hits.
    const first = await build(w, "--remote_instance_name=team/one");
    const firstSummary = processSummary(first);
    const before = snapshot(realpathSync(join(ws, "bazel-bin")));

    await w.run(["clean"]);
    const second = await build(w, "--remote_instance_name=team/two");
    const secondSummary = processSummary(second);
    const after = snapshot(realpathSync(join(ws, "bazel-bin")));

    console.log(`first build:  ${firstSummary.line}\nsecond build: ${secondSummary.line}`);

    // The workspace really produced what it is meant to exercise.
    expect(Object.keys(before)).toEqual(expect.arrayContaining(EXPECTED_OUTPUTS));
    expect(readFileSync(join(ws, "bazel-bin/c.txt"), "utf8")).toBe("ALPHA\nBETA\nGAMMA\n");
    expect(Number.parseInt(after["tree/tool.sh"]!.mode!, 8) & 0o111).not.toBe(0);

    // A fresh cache: nothing can hit on the first build.
    expect(firstSummary.kinds["remote cache hit"] ?? 0).toBe(0);
    // Every action process (all but Bazel's internal ones) was a remote cache hit.
    const actions = secondSummary.total - (secondSummary.kinds["internal"] ?? 0);
    expect(actions).toBeGreaterThan(0);
    expect(secondSummary.kinds["remote cache hit"]).toBe(actions);
    expect(actions).toBe(firstSummary.total - (firstSummary.kinds["internal"] ?? 0));

    expect(after).toEqual(before);

    // Building without the bytes trusts the cache's results to be complete: all hits again.
    await w.run(["clean"]);
    const minimal = processSummary(await build(w, "--remote_download_minimal"));
    console.log(`minimal build: ${minimal.line}`);
    expect(minimal.kinds["remote cache hit"]).toBe(actions);

    // Bazel only warns (and carries on) when the remote cache misbehaves; the server should not complain.
    for (const out of [first, second]) expect(out).not.toMatch(/^WARNING:.*remote/im);
    expect(server!.log()).not.toMatch(/ (WARN|ERROR) /);
  },
  180_000,
);
