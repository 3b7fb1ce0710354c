// End to end: the status page in a real browser (headless Chromium, Debian's package) against a
// server that is running a real Bazel (4.2.3) build. The page must show the running action by its
// target label (from Bazel's RequestMetadata) while it runs, and its counters must move; a
// screenshot is saved (build/artifacts/status-page.png).
//
// Skipped when bazel or chromium is missing, unless ACTIOND_REQUIRE_E2E=1 (then it fails instead).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { REPO, startServer, tempDir, type ServerProcess } from "../support/server";
import { BazelWorkspace, COMMON_FLAGS, removeBazelTree, processSummary, skipWithoutBazel } from "./bazel";

const CHROMIUM = Bun.which("chromium");
const SKIP = skipWithoutBazel("status-page e2e") || (!CHROMIUM && process.env.ACTIOND_REQUIRE_E2E !== "1" && (console.warn("SKIP status-page e2e: chromium is not on PATH (apt-get install chromium)"), true));
const ARTIFACTS = join(REPO, "build/artifacts");

let server: ServerProcess;
let tmp = "";

beforeAll(async () => {
  if (SKIP) return;
  if (!CHROMIUM) throw new Error("ACTIOND_REQUIRE_E2E=1 but chromium is not on PATH (apt-get install chromium)");
  tmp = tempDir("actiond-e2e-page-");
  server = await startServer({ root: join(tmp, "cas") });
});

afterAll(async () => {
  await server?.stop();
  removeBazelTree(tmp);
});

/** The page as Chromium has drawn it after running its script for a few (virtual) seconds. */
async function pageDom(): Promise<string> {
  const proc = Bun.spawn([CHROMIUM!, "--headless", "--no-sandbox", "--disable-gpu", `--user-data-dir=${join(tmp, "chromium")}`, "--virtual-time-budget=2500", "--dump-dom", `http://${server.address}/`], { stdout: "pipe", stderr: "ignore" });
  const [dom, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  expect(code).toBe(0);
  return dom;
}

async function screenshot(name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const proc = Bun.spawn([CHROMIUM!, "--headless", "--no-sandbox", "--disable-gpu", `--user-data-dir=${join(tmp, "chromium")}`, "--virtual-time-budget=2500", "--window-size=1200,1100", `--screenshot=${join(ARTIFACTS, name)}`, `http://${server.address}/`], { stdout: "ignore", stderr: "ignore" });
  expect(await proc.exited).toBe(0);
}

const number = (dom: string, id: string) => Number(new RegExp(`id="${id}">(\\d+)<`).exec(dom)?.[1] ?? NaN);

test.skipIf(SKIP)(
  "the page shows a running action by its target while Bazel builds, and its counters move",
  async () => {
    // One slow action (a line a second), and a few quick ones.
    const quick = Array.from({ length: 5 }, (_, i) => `genrule(name = "quick${i}", outs = ["quick${i}.txt"], cmd = "echo ${i} > $@")`);
    const w = new BazelWorkspace(tmp, "ws", {
      WORKSPACE: 'workspace(name = "page")\n',
      BUILD: [`genrule(name = "slow", outs = ["slow.txt"], cmd = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line $$i; echo progress $$i >&2; sleep 1; done > $@")`, ...quick].join("\n") + "\n",
    });
    const flags = ["build", "//...", `--remote_executor=grpc://${server.address}`, "--spawn_strategy=remote", "--genrule_strategy=remote", "--remote_local_fallback=false", ...COMMON_FLAGS];
    const building = w.run(flags, () => `--- server log ---\n${server.log()}`);

    let dom = "";
    const deadline = Date.now() + 120_000;
    // Running, with what it runs and the last lines it wrote to stderr.
    while (!/<tr data-target="\/\/:slow">.*?<td class="tail">[^<]*progress \d+/s.test(dom)) {
      if (Date.now() > deadline) throw new Error(`the page never showed //:slow running:\n${dom}`);
      dom = await pageDom();
    }
    expect(dom).toMatch(/<tr data-target="\/\/:slow"><td>\/\/:slow<\/td><td>Genrule<\/td><td class="muted">\/bin\/bash<\/td><td>\w+/);
    expect(number(dom, "running-count")).toBeGreaterThanOrEqual(1);
    await screenshot("status-page.png");

    const first = processSummary(await building);
    const actions = first.total - (first.kinds["internal"] ?? 0);
    dom = await pageDom();
    expect(number(dom, "executed")).toBe(actions);
    expect(number(dom, "misses")).toBeGreaterThanOrEqual(actions);
    expect(dom).toMatch(/<tr data-outcome="executed"><td>[^<]*<\/td><td>\/\/:slow<\/td><td>Genrule<\/td>/);

    // A clean rebuild is all hits: the hit counter moves, and the latest build's rate is 100%.
    await w.run(["clean"]);
    const second = processSummary(await w.run(flags));
    expect(second.kinds["remote cache hit"]).toBe(actions);
    dom = await pageDom();
    expect(number(dom, "hits")).toBeGreaterThanOrEqual(actions);
    expect(dom).toContain('id="hit-rate-build">100%<');
  },
  300_000,
);
