// serve-vm in front of a team's cache: the guest has no network, so its worker reaches the upstream
// (a real bazel-remote on 127.0.0.1) through the host's relay, over a stream the guest opens. Both
// directions with Bazel 4.2.3: results another actiond pushed are clean-build cache hits through the
// guest; results the guest executed reach the upstream, and an actiond on an empty root serves a
// clean build of them entirely from it, byte for byte. The upstream's token travels as a worker flag
// from the host, never on the guest's kernel command line (which actions can read).
//
// Needs the x86_64 guest and QEMU, Bazel and the peers; skipped without them unless the REQUIRE
// variables are set.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { join } from "node:path";
import { checkoutAssetPath } from "../../src/assets";
import { skipWithoutPeers, startBazelRemote, type Peer } from "../support/peers";
import { REPO, startServer, tempDir, type ServerProcess } from "../support/server";
import { waitUntil } from "../support/helpers";
import { BazelWorkspace, COMMON_FLAGS, removeBazelTree, processSummary, skipWithoutBazel, snapshot } from "./bazel";

const GUEST = ["kernel-x86_64", "initramfs-x86_64"].map((f) => join(REPO, "build/vm", f));
const haveGuest = GUEST.every(existsSync) && !!Bun.which("qemu-system-x86_64");
if (!haveGuest && process.env.ACTIOND_REQUIRE_VM !== "1") console.warn("SKIP serve-vm upstream e2e: build/vm/ or qemu-system-x86_64 missing");
const SKIP = skipWithoutBazel("serve-vm upstream e2e") || (!haveGuest && process.env.ACTIOND_REQUIRE_VM !== "1") || process.arch !== "x64" || skipWithoutPeers("serve-vm upstream e2e");
const CC_RUNTIME = checkoutAssetPath("runtime", { profile: "cc" });
const TOKEN = "Bearer not-for-actions-to-read";

let tmp = "";
let team: Peer | undefined;
let vm: ServerProcess | undefined;
const servers: ServerProcess[] = [];

beforeAll(async () => {
  if (SKIP) return;
  tmp = tempDir("actiond-e2e-vm-upstream-");
  team = await startBazelRemote();
  vm = await startServer({
    root: join(tmp, "vm-root"),
    subcommand: "serve-vm",
    args: ["--hypervisor", "qemu", "--cas-image-size-mib", "2048", "--cpus", "2", "--upstream", team.url, "--upstream-header", `authorization=${TOKEN}`, "--log-level", "debug"],
    startTimeoutMs: 300_000,
  });
}, 300_000);

afterAll(async () => {
  await vm?.stop();
  for (const s of servers) await s.stop();
  await team?.stop();
  removeBazelTree(tmp);
});

const actiond = async (name: string) => {
  const s = await startServer({ root: join(tmp, name), args: ["--runtime-image", CC_RUNTIME, "--upstream", team!.url, "--log-level", "debug"] });
  servers.push(s);
  return s;
};

const build = async (w: BazelWorkspace, server: ServerProcess, targets = ["//..."]) =>
  processSummary(
    await w.run(
      ["build", ...targets, `--remote_executor=grpc://${server.address}`, "--spawn_strategy=remote", "--genrule_strategy=remote", "--remote_local_fallback=false", "--remote_timeout=120", ...COMMON_FLAGS],
      () => `--- server log ---\n${server.log().slice(-8000)}`,
    ),
  );
const actions = (s: ReturnType<typeof processSummary>) => s.total - (s.kinds["internal"] ?? 0);
const guestConsole = () => readFileSync(join(tmp, "vm-root/vm/console.log"), "utf8");
const outputs = (w: BazelWorkspace) => Object.fromEntries(Object.entries(snapshot(realpathSync(join(w.ws, "bazel-bin")))).filter(([path, f]) => !f.symlink && !path.endsWith("runfiles_manifest")));

test.skipIf(SKIP)("what another actiond pushed to the team's cache is a clean-build cache hit through the guest, which reaches it through the host", async () => {
  const pusher = await actiond("pusher");
  const w = new BazelWorkspace(tmp, "ws-team");
  const first = await build(w, pusher);
  expect(first.kinds["remote"]).toBe(actions(first));
  await pusher.waitForLog(new RegExp(`upstream push queue is empty: ${actions(first)} results`), 120_000);
  const expected = outputs(w);

  await w.run(["clean"]);
  const through = await build(w, vm!);
  console.log(`through the guest, from the team's cache: ${through.line}`);
  expect(through.kinds["remote cache hit"]).toBe(actions(first));
  expect(outputs(w)).toEqual(expected);
  expect(guestConsole()).toMatch(/fetched [0-9a-f]{64}\/\d+ from the upstream/);
}, 600_000);

test.skipIf(SKIP)("results the guest executed reach the team's cache: an actiond on an empty root serves a clean build of them entirely from it", async () => {
  // Actions nobody ran before: this run's own.
  const salt = crypto.randomUUID();
  const rules = Array.from({ length: 6 }, (_, i) => `genrule(name = "g${i}", outs = ["g${i}.txt"], cmd = "echo ${salt} ${i} > $@; uname -r >> $@")`);
  const spec = { WORKSPACE: 'workspace(name = "fresh")\n', BUILD: `${rules.join("\n")}\n` };
  const w = new BazelWorkspace(tmp, "ws-guest", spec);
  const inGuest = await build(w, vm!);
  expect(inGuest.kinds["remote"]).toBe(6);
  const expected = outputs(w);
  // Run in the guest: its kernel, not this machine's.
  expect(readFileSync(join(w.ws, "bazel-bin/g0.txt"), "utf8")).toContain(readFileSync(join(REPO, "build/vm/kernel-x86_64.release"), "utf8").trim());
  expect(await waitUntil(() => /upstream push queue is empty: ([6-9]|\d\d+) results/.test(guestConsole()), 120_000)).toBe(true);

  const empty = await actiond("empty");
  const other = new BazelWorkspace(tmp, "ws-guest-again", spec);
  const fromTeam = await build(other, empty);
  console.log(`an empty actiond, from what the guest pushed: ${fromTeam.line}`);
  expect(fromTeam.kinds["remote cache hit"]).toBe(6);
  expect(outputs(other)).toEqual(expected);

  // The token went to the worker as a flag from the host: not on the kernel command line, not in the console.
  const r = await build(new BazelWorkspace(tmp, "ws-cmdline", { WORKSPACE: 'workspace(name = "cmdline")\n', BUILD: `genrule(name = "c", outs = ["c.txt"], cmd = "cat /proc/cmdline > $@ # ${salt}")\n` }), vm!);
  expect(r.kinds["remote"]).toBe(1);
  const cmdline = readFileSync(join(tmp, "ws-cmdline/bazel-bin/c.txt"), "utf8");
  expect(cmdline).toContain("actiond.port=");
  expect(cmdline).not.toContain("not-for-actions-to-read");
  expect(guestConsole()).toContain("the host's flags for the worker: --upstream --upstream-header --upstream-timeout --upstream-write --upstream-queue --log-level");
  expect(guestConsole()).not.toContain("not-for-actions-to-read");
  expect(vm!.log().split("\n").filter((l) => / (WARN|ERROR) /.test(l) && !/QEMU could not use KVM/.test(l))).toEqual([]);
}, 600_000);
