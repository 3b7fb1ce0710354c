// serve-vm with the arm64 guest on this x86_64 machine: `serve-vm --arch aarch64` boots the aarch64
// kernel, initramfs and runtime the darwin-arm64 executable carries (the same files VZ boots) in
// qemu-system-aarch64's software emulation, and Bazel 4.2.3, started the moment serve-vm listens,
// builds the e2e workspace with every action in the arm64 guest: `uname -m` says aarch64 there, and
// the outputs equal a local build's.
//
// Not //cc nor //shtest: Bazel configures its C++ toolchain from this machine's x86_64 gcc (its
// built-in include directories), and the guest's aarch64 gcc includes others, so Bazel refuses
// those compiles; an arm64 guest needs an aarch64 toolchain configuration.
//
// Needs build/vm/{kernel,initramfs}-aarch64 and build/runtimes/cc-aarch64.sqfs (npm run build --
// --all --vm) and qemu-system-aarch64; skipped without them unless ACTIOND_REQUIRE_VM=1.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { join } from "node:path";
import { REPO, startServer, tempDir, type ServerProcess } from "../support/server";
import type { VmState } from "../../src/core";
import { BazelWorkspace, COMMON_FLAGS, removeBazelTree, processSummary, skipWithoutBazel, snapshot } from "./bazel";

const FILES = [join(REPO, "build/vm/kernel-aarch64"), join(REPO, "build/vm/initramfs-aarch64"), join(REPO, "build/runtimes/cc-aarch64.sqfs")];
const haveGuest = FILES.every(existsSync) && !!Bun.which("qemu-system-aarch64");
if (!haveGuest && process.env.ACTIOND_REQUIRE_VM !== "1") console.warn("SKIP arm64 guest e2e: the aarch64 guest files or qemu-system-aarch64 are missing (npm run build -- --all --vm; apt-get install qemu-system-arm)");
const SKIP = skipWithoutBazel("arm64 guest e2e") || (!haveGuest && process.env.ACTIOND_REQUIRE_VM !== "1") || process.arch !== "x64";
const TARGETS = ["--", "//...", "-//cc/...", "-//shtest/...", "//where:machine", "//where:kernel"];

let tmp = "";
let server: ServerProcess | undefined;

beforeAll(async () => {
  if (SKIP) return;
  tmp = tempDir("actiond-e2e-vm-arm64-");
  server = await startServer({
    root: join(tmp, "root"),
    subcommand: "serve-vm",
    args: ["--hypervisor", "qemu", "--arch", "aarch64", "--cas-image-size-mib", "2048"],
    startTimeoutMs: 300_000,
    readyPattern: /listening on [^\s]+:(\d+); connections wait/,
  });
}, 300_000);

afterAll(async () => {
  await server?.stop();
  removeBazelTree(tmp);
});

test.skipIf(SKIP)("a build started as serve-vm --arch aarch64 starts runs every action in the arm64 guest, with a local build's outputs", async () => {
  expect(server!.log()).not.toContain("guest ready in");
  const w = new BazelWorkspace(tmp);
  const local = processSummary(await w.run(["build", "--spawn_strategy=standalone", ...COMMON_FLAGS, ...TARGETS.filter((t) => !t.startsWith("//where"))]));
  const localFiles = snapshot(realpathSync(join(w.ws, "bazel-bin")));
  await w.run(["clean"]);

  const out = await w.run(
    ["build", `--remote_executor=grpc://${server!.address}`, "--spawn_strategy=remote", "--genrule_strategy=remote", "--remote_local_fallback=false", "--remote_timeout=120", ...COMMON_FLAGS, ...TARGETS],
    () => `--- server log ---\n${server!.log()}`,
  );
  const built = processSummary(out);
  console.log(`local build:  ${local.line}\narm64 guest:  ${built.line}`);
  const actions = built.total - (built.kinds["internal"] ?? 0);
  expect(actions).toBeGreaterThanOrEqual(8);
  expect(built.kinds["remote"]).toBe(actions);
  const bin = realpathSync(join(w.ws, "bazel-bin"));
  expect(readFileSync(join(bin, "where/machine.txt"), "utf8")).toBe("aarch64\n");
  expect(readFileSync(join(bin, "where/kernel.txt"), "utf8").trim()).toBe(readFileSync(join(REPO, "build/vm/kernel-aarch64.release"), "utf8").trim());
  const { "where/machine.txt": _m, "where/kernel.txt": _k, ...remoteFiles } = snapshot(bin);
  expect(remoteFiles).toEqual(localFiles);
  expect(readFileSync(join(bin, "tool/shout.txt"), "utf8")).toBe("HELLO FROM A TOOL\n");

  const vm = (await (await fetch(`http://${server!.address}/api/vm`)).json()) as VmState;
  expect(vm).toMatchObject({ state: "ready", how: "QEMU, software emulation, aarch64" });
  // The arm64 guest has no real-time clock: it takes the host's at boot, so its log is dated today.
  const guestLog = readFileSync(join(tmp, "root/vm/console.log"), "utf8");
  expect(guestLog).toContain("actiond guest: no real-time clock: the clock is set from the host's");
  const stamps = [...guestLog.matchAll(/^(\d{4})-\d\d-\d\dT\S+ INFO /gm)].map((m) => Number(m[1]));
  expect(stamps.length).toBeGreaterThan(0);
  expect(stamps.every((year) => year === new Date().getUTCFullYear())).toBe(true);
  const unexpected = server!.log().split("\n").filter((l) => / (WARN|ERROR) /.test(l));
  expect(unexpected).toEqual([]);
}, 900_000);
