// serve-vm end to end: `actiond serve-vm --hypervisor qemu` boots the x86_64 guest (software
// emulation here), and Bazel 4.2.3 builds and tests the e2e workspace with every action executed
// inside the guest (an action's `uname -r` is the guest kernel's). Then the guest is shut down
// cleanly, booted again, and its CAS disk still holds the earlier results. A guest killed under
// serve-vm is booted again, and clients get through once it is back. The guest's Remote Asset API
// downloads through the host.
//
// Needs the guest (npm run build -- --vm makes build/vm/) and QEMU; skipped without them unless
// ACTIOND_REQUIRE_VM=1.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MAIN, REPO, startServer, tempDir, type ServerProcess } from "../support/server";
import type { VmState } from "../../src/core";
import type { StatusSnapshot } from "../../src/web";
import { BazelWorkspace, COMMON_FLAGS, removeBazelTree, processSummary, skipWithoutBazel } from "./bazel";
import { expectAssetBuild, expectRemoteEqualsLocal } from "./scenarios";
import { ReapiClient, grpc } from "../support/client";
import { rejects, waitUntil } from "../support/helpers";
import { executionClient, run, stdout } from "../support/actions";
import { GetCapabilitiesRequestSchema } from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";

const GUEST = ["kernel-x86_64", "initramfs-x86_64"].map((f) => join(REPO, "build/vm", f));
const haveGuest = GUEST.every(existsSync) && !!Bun.which("qemu-system-x86_64");
if (!haveGuest && process.env.ACTIOND_REQUIRE_VM !== "1") console.warn("SKIP bazel-vm e2e: build/vm/ or qemu-system-x86_64 missing (npm run build -- --vm; apt-get install qemu-system-x86)");
const SKIP = skipWithoutBazel("bazel-vm e2e") || (!haveGuest && process.env.ACTIOND_REQUIRE_VM !== "1") || process.arch !== "x64";
const RELEASE_FILE = join(REPO, "build/vm/kernel-x86_64.release");

let tmp = "";
let root = "";
let server: ServerProcess | undefined;

/** serve-vm, returned once it is ready, or (listening) as soon as its port is bound, the guest still booting. */
const startVm = (until: "ready" | "listening" = "ready") =>
  startServer({
    root,
    subcommand: "serve-vm",
    args: ["--hypervisor", "qemu", "--cas-image-size-mib", "4096", "--cpus", "2", "--log-level", "debug"],
    startTimeoutMs: 300_000,
    readyPattern: until === "listening" ? /listening on [^\s]+:(\d+); connections wait/ : undefined,
  });

beforeAll(async () => {
  if (SKIP) return;
  tmp = tempDir("actiond-e2e-vm-");
  root = join(tmp, "root");
  // The build starts while the guest boots (as after a login-time start): its connections wait.
  server = await startVm("listening");
}, 300_000);

afterAll(async () => {
  await server?.stop();
  removeBazelTree(tmp);
});

test.skipIf(SKIP)("a build started while the guest boots waits for it; every action runs in the guest: outputs equal a local build's, and uname -r is the guest kernel's", async () => {
  expect(server!.log()).not.toContain("guest ready in");
  // The status page works while the guest boots: the host tells the guest's state and console.
  const base = `http://${server!.address}`;
  const booting = (await (await fetch(`${base}/api/vm`)).json()) as VmState;
  expect(booting).toMatchObject({ state: "booting", restarts: 0, cpus: expect.any(Number) });
  expect(booting.boots).toBeLessThanOrEqual(1);
  const page = await fetch(`${base}/`);
  expect(page.status).toBe(200);
  expect(await page.text()).toContain('id="vm-console"');
  const early = await fetch(`${base}/api/status`);
  expect(early.status).toBe(503);
  expect(((await early.json()) as { error: string }).error).toMatch(/^the VM guest is booting/);
  // A machine whose /dev/kvm opens but cannot run QEMU's guest (like these VMs) says so once.
  await expectRemoteEqualsLocal(tmp, server!, /QEMU could not use KVM here/);
  const w = new BazelWorkspace(tmp);
  await w.run(["build", "//where:kernel", `--remote_executor=grpc://${server!.address}`, "--spawn_strategy=remote", "--genrule_strategy=remote", "--remote_local_fallback=false", ...COMMON_FLAGS]);
  const release = readFileSync(join(w.ws, "bazel-bin/where/kernel.txt"), "utf8").trim();
  expect(release).toBe(readFileSync(RELEASE_FILE, "utf8").trim());
  expect(release).not.toBe(Bun.spawnSync(["uname", "-r"]).stdout.toString().trim());
  // Once it is up: its state, and the guest's own status behind the same port.
  const up = (await (await fetch(`${base}/api/vm`)).json()) as VmState;
  expect(up).toMatchObject({ state: "ready", boots: 1, restarts: 0 });
  expect(up.readySeconds).toBeGreaterThan(0);
  expect(up.consoleTail.length).toBeGreaterThan(0);
  const status = (await (await fetch(`${base}/api/status`)).json()) as StatusSnapshot;
  expect(status.executed).toBeGreaterThan(0);
  const cli = Bun.spawnSync([process.execPath, MAIN, "status", "--address", server!.address]);
  expect(cli.exitCode).toBe(0);
  expect(cli.stdout.toString()).toMatch(/^vm guest: ready since \S+, QEMU[^\n]*; 1 boots, 0 restarts, ready in [\d.]+ s\nactiond /);
}, 900_000);

test.skipIf(SKIP)("the guest has no network, yet an http_archive comes through its Remote Asset API: the host downloads, the guest checks and keeps it", async () => {
  await expectAssetBuild(tmp, server!);
  expect(server!.log()).toMatch(/downloading http:\/\/127\.0\.0\.1:\d+\/ext\.tar\.gz for the guest: HTTP 200/);
  expect(readFileSync(join(root, "vm/console.log"), "utf8")).toMatch(/fetched http:\/\/127\.0\.0\.1:\d+\/ext\.tar\.gz into the CAS/);
}, 600_000);

/** A C program the action compiles with the guest runtime's gcc: `forks` forks until it cannot (at
 * most 64) and prints how many it made; `memory N` touches N MiB. */
const PROBE_C = `#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "forks") == 0) {
    pid_t kids[64];
    int n = 0;
    for (; n < 64; n++) {
      kids[n] = fork();
      if (kids[n] < 0) break;
      if (kids[n] == 0) { pause(); _exit(0); }
    }
    printf("%d\\n", n);
    for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
    return 0;
  }
  size_t mib = argc > 2 ? strtoul(argv[2], 0, 10) : 0;
  for (size_t i = 0; i < mib; i++) memset(malloc(1 << 20), 1, 1 << 20);
  puts("allocated");
  return 0;
}
`;

test.skipIf(SKIP)("cgroup limits an action asks for take effect in the guest, which delegates cgroups", async () => {
  const consoleLog = readFileSync(join(root, "vm/console.log"), "utf8");
  expect(consoleLog).toContain("cgroup v2 limits (memory, pids, cpu) apply to actions");
  const client = new ReapiClient(server!.address);
  const exec = executionClient(server!.address);
  try {
    const probe = (args: string, platform: Record<string, string>) =>
      run(client, exec, { args: ["sh", "-c", `gcc -O1 -o probe probe.c && ./probe ${args}`], inputs: { "probe.c": PROBE_C }, platform, salt: `${Math.random()}` });
    const free = await probe("forks", {});
    expect(await stdout(client, free.result)).toBe("64\n");
    const limited = await probe("forks", { "limits.pids.max": "16" });
    const made = Number(await stdout(client, limited.result));
    expect(made).toBeGreaterThan(0);
    expect(made).toBeLessThan(16);
    expect((await probe("memory 256", {})).result!.exitCode).toBe(0);
    // Over memory.max (and no swap to escape to), the kernel kills it: 128 + SIGKILL.
    expect((await probe("memory 256", { "limits.memory.bytes": "64M" })).result!.exitCode).toBe(137);
  } finally {
    exec.close();
    client.close();
  }
}, 900_000);

test.skipIf(SKIP)("an action in the guest sees the CPUs --cpus gave it, and a network namespace holding only lo (no sit0)", async () => {
  const client = new ReapiClient(server!.address);
  const exec = executionClient(server!.address);
  try {
    const r = await run(client, exec, { args: ["sh", "-c", "nproc; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"], salt: `${Math.random()}` });
    expect(r.result?.exitCode).toBe(0);
    expect(await stdout(client, r.result)).toBe("2\nlo\n");
  } finally {
    exec.close();
    client.close();
  }
}, 120_000);

test.skipIf(SKIP)("a clean shutdown, a second boot, and the CAS disk still holds the earlier results", async () => {
  expect(await server!.stop()).toBe(0);
  const console1 = readFileSync(join(root, "vm/console.log"), "utf8");
  expect(console1).toContain("actiond guest: disks unmounted");
  server = await startVm();
  expect(readFileSync(join(root, "vm/console.log.1"), "utf8")).toBe(console1);
  const console2 = readFileSync(join(root, "vm/console.log"), "utf8");
  expect(console2).not.toContain("formatting");
  expect(console2).not.toMatch(/EXT4-fs \(vda\): recovery complete/);
  // A clean build of the same actions is all cache hits from the guest's CAS and action cache.
  const w = new BazelWorkspace(tmp);
  await w.run(["clean"]);
  const again = processSummary(
    await w.run(["build", "//...", `--remote_executor=grpc://${server!.address}`, "--spawn_strategy=remote", "--genrule_strategy=remote", "--remote_local_fallback=false", ...COMMON_FLAGS]),
  );
  expect(again.kinds["remote cache hit"]).toBe(again.total - (again.kinds["internal"] ?? 0));
}, 900_000);

test.skipIf(SKIP)("a guest that dies is booted again, and a call made meanwhile waits for it", async () => {
  const qemu = Bun.spawnSync(["pgrep", "-P", String(server!.proc.pid), "qemu-system"]).stdout.toString().trim().split("\n")[0];
  expect(qemu).toMatch(/^\d+$/);
  const readyLines = () => server!.log().split("\n").filter((l) => l.includes("guest ready in")).length;
  const before = readyLines();
  process.kill(Number(qemu), "SIGKILL");
  for (let i = 0; i < 600 && !server!.log().includes("the guest stopped (exit"); i++) await Bun.sleep(100);
  // A call made while it boots again waits for it, and is answered.
  expect(readyLines()).toBe(before);
  const client = new ReapiClient(server!.address);
  const caps = await client.unary(client.caps, "getCapabilities", GetCapabilitiesRequestSchema, {});
  expect(caps.executionCapabilities?.execEnabled).toBe(true);
  expect(readyLines()).toBe(before + 1);
  expect((await (await fetch(`http://${server!.address}/api/vm`)).json()) as VmState).toMatchObject({ state: "ready", boots: 2, restarts: 1 });
  client.close();
}, 900_000);

test.skipIf(SKIP)("a guest killed in the middle of a Bazel build is booted again, and the build still succeeds", async () => {
  const rules = Array.from({ length: 8 }, (_, i) => `genrule(name = "s${i}", outs = ["s${i}.txt"], cmd = "sleep 2; echo ${i} > $@")`);
  const w = new BazelWorkspace(tmp, "ws-crash", { WORKSPACE: 'workspace(name = "crash")\n', BUILD: `${rules.join("\n")}\n` });
  const restartsBefore = ((await (await fetch(`http://${server!.address}/api/vm`)).json()) as VmState).restarts;
  const building = w.run(["build", "//...", `--remote_executor=grpc://${server!.address}`, "--spawn_strategy=remote", "--genrule_strategy=remote", "--remote_local_fallback=false", ...COMMON_FLAGS], () => `--- server log ---\n${server!.log()}`);
  // Once an action runs in the guest, the guest dies under it.
  const running = async () => {
    const res = await fetch(`http://${server!.address}/api/status`).catch(() => undefined);
    return !!res?.ok && ((await res.json()) as StatusSnapshot).executions.some((e) => e.stage === "EXECUTING");
  };
  expect(await waitUntil(running, 120_000)).toBe(true);
  const qemu = Bun.spawnSync(["pgrep", "-P", String(server!.proc.pid), "qemu-system"]).stdout.toString().trim().split("\n")[0];
  process.kill(Number(qemu), "SIGKILL");
  const summary = processSummary(await building);
  expect(summary.kinds["remote"]).toBe(8);
  for (let i = 0; i < 8; i++) expect(readFileSync(join(w.ws, `bazel-bin/s${i}.txt`), "utf8")).toBe(`${i}\n`);
  expect(((await (await fetch(`http://${server!.address}/api/vm`)).json()) as VmState).restarts).toBe(restartsBefore + 1);
}, 900_000);

test.skipIf(SKIP)("a guest that does not come up turns waiting calls away with UNAVAILABLE saying why", async () => {
  const own = join(tmp, "root-timeout");
  const vm = await startServer({
    root: own,
    subcommand: "serve-vm",
    args: ["--hypervisor", "qemu", "--accel", "tcg", "--cas-image-size-mib", "1024", "--start-timeout-ms", "2000"],
    readyPattern: /listening on [^\s]+:(\d+); connections wait/,
  });
  const client = new ReapiClient(vm.address);
  const e = await rejects(client.unary(client.caps, "getCapabilities", GetCapabilitiesRequestSchema, {}));
  client.close();
  expect(e.code).toBe(grpc.status.UNAVAILABLE);
  expect(e.details).toBe(`actiond serve-vm: the VM guest did not answer within 2000 ms (--start-timeout-ms); its console: ${own}/vm/console.log`);
  expect(await vm.proc.exited).toBe(1);
}, 120_000);
