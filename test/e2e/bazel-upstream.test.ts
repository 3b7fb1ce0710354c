// End to end: actiond in front of a team's cache. A real Bazel (4.2.3) builds test/e2e/workspace
// through actiond A with a real bazel-remote or bb_storage as --upstream; a second actiond B on an
// empty root, same upstream, must then serve a clean build entirely from cache, byte for byte.
// Then the faults: the upstream killed mid-build, actiond killed with pushes queued, and an
// upstream that returns damaged bytes.
//
// Skipped when bazel or the peers are missing, unless ACTIOND_REQUIRE_E2E=1 (then it fails instead).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync, realpathSync } from "node:fs";
import { join } from "node:path";
import { checkoutAssetPath } from "../../src/assets";
import { startCorruptingProxy } from "../support/corrupting-proxy";
import { bazelRemote, remotetoolDownloadResult, skipWithoutPeers, startBazelRemote, startBbStorage, type Peer } from "../support/peers";
import { startServer, tempDir, type ServerProcess } from "../support/server";
import { BazelWorkspace, COMMON_FLAGS, EXPECTED_OUTPUTS, removeBazelTree, processSummary, skipWithoutBazel, snapshot, type FileSnapshot } from "./bazel";

const SKIP = skipWithoutBazel("bazel-upstream e2e") || skipWithoutPeers("bazel-upstream e2e");
const CC_RUNTIME = checkoutAssetPath("runtime", { profile: "cc" });
/** Warnings the fault tests cause on purpose; anything else in a server log fails the test. */
const UPSTREAM_FAULT = /upstream \S+ (is not answering|sent .* whose bytes do not match)/;

let tmp = "";
const cleanups: (() => Promise<unknown>)[] = [];
/** What a local-only build through actiond produced: every upstream build must equal it. */
let reference: Record<string, FileSnapshot> = {};

beforeAll(async () => {
  if (SKIP) return;
  if (!existsSync(CC_RUNTIME)) throw new Error(`${CC_RUNTIME} is missing: run \`bun runtimes/build.ts --profile cc\``);
  tmp = tempDir("actiond-e2e-upstream-");
  const alone = await actiond("alone");
  const w = new BazelWorkspace(tmp, "ws-reference");
  await build(w, alone);
  reference = outputs(w);
  expect(Object.keys(reference)).toEqual(expect.arrayContaining(EXPECTED_OUTPUTS));
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  removeBazelTree(tmp);
});

async function actiond(name: string, ...args: string[]): Promise<ServerProcess> {
  const root = join(tmp, name);
  const server = await startServer({ root, args: ["--runtime-image", CC_RUNTIME, "--log-level", "debug", ...args] });
  cleanups.push(() => server.stop());
  return server;
}

async function peer(start: () => Promise<Peer>): Promise<Peer> {
  const p = await start();
  cleanups.push(() => p.stop());
  return p;
}

/** Every action remote (on `server`), or served from its cache; returns Bazel's process summary. */
async function build(w: BazelWorkspace, server: ServerProcess, ...extra: string[]) {
  const out = await w.run(
    [
      "build",
      "//...",
      `--remote_executor=grpc://${server.address}`,
      "--spawn_strategy=remote",
      "--genrule_strategy=remote",
      "--remote_local_fallback=false",
      "--remote_timeout=60",
      ...extra,
      ...COMMON_FLAGS,
    ],
    () => `--- server log ---\n${server.log().slice(-8000)}`,
  );
  return processSummary(out);
}

const actions = (s: ReturnType<typeof processSummary>) => s.total - (s.kinds["internal"] ?? 0);

/** bazel-bin's files, less those Bazel writes itself that name the workspace's own path (runfiles). */
function outputs(w: BazelWorkspace): Record<string, FileSnapshot> {
  const all = snapshot(realpathSync(join(w.ws, "bazel-bin")));
  return Object.fromEntries(Object.entries(all).filter(([path, f]) => !f.symlink && !path.endsWith("runfiles_manifest")));
}

/** Resolves once the server's push queue has emptied (after log offset `from`) with at least n results pushed. */
async function pushed(server: ServerProcess, n: number, from = 0, timeoutMs = 120_000): Promise<void> {
  const started = Date.now();
  for (;;) {
    const m = await server.waitForLog(/upstream push queue is empty: (\d+) results/, timeoutMs - (Date.now() - started), from);
    if (Number(m[1]) >= n) return;
    from += m.index + m[0].length;
  }
}

/** The action digests a server holds results for (its ROOT/ac). */
function storedActions(server: ServerProcess): { hash: string; size: number }[] {
  const ac = join(server.root, "ac/sha256");
  return readdirSync(ac).flatMap((d) =>
    readdirSync(join(ac, d)).map((f) => {
      const [hash, size] = f.split("-");
      return { hash: hash!, size: Number(size) };
    }),
  );
}

function expectQuietLog(server: ServerProcess, allowed?: RegExp): void {
  const unexpected = server.log().split("\n").filter((l) => / (WARN|ERROR) /.test(l) && !(allowed && allowed.test(l)));
  expect(unexpected).toEqual([]);
}

/** A builds and pushes; B, on an empty root, serves a clean build all from the upstream. */
async function expectSharedThroughUpstream(name: string, team: Peer): Promise<void> {
  const a = await actiond(`${name}-a`, "--upstream", team.url);
  const w = new BazelWorkspace(tmp, `ws-${name}`);
  const first = await build(w, a);
  expect(first.kinds["remote"]).toBe(actions(first));
  await pushed(a, actions(first));

  const b = await actiond(`${name}-b`, "--upstream", team.url);
  await w.run(["clean"]);
  const second = await build(w, b);
  console.log(`${name}: first build ${first.line}\n${name}: through an empty actiond ${second.line}`);
  expect(second.kinds["remote cache hit"]).toBe(actions(first));
  expect(outputs(w)).toEqual(reference);
  // B fetched what Bazel downloaded from the upstream, and keeps it: its store is not empty.
  expect(b.log()).toMatch(/fetched [0-9a-f]{64}\/\d+ from the upstream/);
  expectQuietLog(a);
  expectQuietLog(b);
}

let bazelRemotePeer: Peer | undefined;

test.skipIf(SKIP)(
  "bazel-remote upstream: a second actiond on an empty root serves a clean build entirely from it, byte for byte",
  async () => {
    bazelRemotePeer = await peer(() => startBazelRemote());
    await expectSharedThroughUpstream("bazel-remote", bazelRemotePeer);
  },
  300_000,
);

test.skipIf(SKIP)(
  "bb_storage upstream: the same with Buildbarn's storage",
  async () => {
    await expectSharedThroughUpstream("bb-storage", await peer(startBbStorage));
  },
  300_000,
);

test.skipIf(SKIP)(
  "upstream killed mid-build: the build completes locally, and the results reach the upstream once it is back (checked with remotetool)",
  async () => {
    const team = await peer(() => startBazelRemote());
    const c = await actiond("killed-upstream", "--upstream", team.url);
    const w = new BazelWorkspace(tmp, "ws-killed-upstream");
    let finished = false;
    const building = build(w, c).finally(() => (finished = true));
    // Killed as soon as the first result has reached it: the rest of the build has no upstream.
    await c.waitForLog(/pushed the result of \S+ upstream/, 120_000);
    await team.kill();
    expect(finished).toBe(false);
    const summary = await building;
    expect(summary.kinds["remote"]).toBe(actions(summary));
    expect(outputs(w)).toEqual(reference);
    expect(c.log()).toMatch(/upstream \S+ is not answering .*serving from the local cache only/);

    const mark = c.log().length;
    await team.start();
    await pushed(c, 1, mark);
    expect(c.log().slice(mark)).toMatch(/upstream \S+ answers again/);
    const results = storedActions(c);
    expect(results.length).toBe(actions(summary));
    for (const action of results) await remotetoolDownloadResult(team.address, action, join(tmp, "killed-upstream-check", action.hash));
    expectQuietLog(c, UPSTREAM_FAULT);
  },
  300_000,
);

test.skipIf(SKIP)(
  "actiond killed with -9 while pushes are queued: restarted, its queue drains and nothing is lost",
  async () => {
    // The upstream is not running yet: every push waits in the journal.
    const team = await bazelRemote();
    cleanups.push(() => team.stop());
    const d = await actiond("killed-actiond", "--upstream", team.url);
    const w = new BazelWorkspace(tmp, "ws-killed-actiond");
    const summary = await build(w, d);
    expect(summary.kinds["remote"]).toBe(actions(summary));
    await d.kill();

    await team.start();
    const again = await startServer({ root: d.root, args: ["--runtime-image", CC_RUNTIME, "--log-level", "debug", "--upstream", team.url] });
    cleanups.push(() => again.stop());
    const left = await again.waitForLog(/upstream push queue: (\d+) pushes left from the last run/);
    expect(Number(left[1])).toBeGreaterThanOrEqual(actions(summary));
    await pushed(again, actions(summary));
    const results = storedActions(again);
    expect(results.length).toBe(actions(summary));
    for (const action of results) await remotetoolDownloadResult(team.address, action, join(tmp, "killed-actiond-check", action.hash));
    expectQuietLog(d, UPSTREAM_FAULT);
    expectQuietLog(again);
  },
  300_000,
);

test.skipIf(SKIP)(
  "an upstream that sends damaged bytes: every one is caught, and the outputs are built again instead",
  async () => {
    // bazel-remote holds the workspace's results (the first test); the proxy flips a byte of each blob.
    if (!bazelRemotePeer) throw new Error("this test uses the bazel-remote the first test filled");
    const proxy = await startCorruptingProxy(bazelRemotePeer!.address);
    cleanups.push(() => proxy.close());
    const e = await actiond("corrupt", "--upstream", proxy.url, "--upstream-write", "none");
    const w = new BazelWorkspace(tmp, "ws-corrupt");
    const summary = await build(w, e);
    console.log(`through a lying upstream: ${summary.line} (${proxy.flipped} blobs damaged on the way)`);
    expect(proxy.flipped).toBeGreaterThan(0);
    expect(summary.kinds["remote"]).toBeGreaterThan(0);
    expect(outputs(w)).toEqual(reference);
    expect(e.log()).toMatch(/whose bytes do not match its digest/);
    expectQuietLog(e, UPSTREAM_FAULT);
  },
  300_000,
);
