// The linux-arm64 executable, run on this x86_64 machine under QEMU's user-mode emulation
// (qemu-aarch64-static, with binfmt_misc so the processes it starts run emulated too): version,
// doctor, and serve answering GetCapabilities and running an action. QEMU's user mode cannot
// create namespaces (clone with CLONE_NEWUSER and friends is EINVAL), so the sandbox cannot run
// there: doctor must say exactly that, and serve runs with --sandbox=none; the aarch64 sandbox
// helper still runs emulated, removing each action's work folder.
//
// Needs dist/actiond-linux-arm64 (npm run build -- --all), qemu-aarch64-static (Debian's
// qemu-user-static), the aarch64 loader (/usr/aarch64-linux-gnu, from gcc-aarch64-linux-gnu) and a
// registered qemu-aarch64 binfmt handler; skipped without them unless ACTIOND_REQUIRE_DIST=1.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { GetCapabilitiesRequestSchema } from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { executionClient, run, stdout } from "./support/actions";
import { ReapiClient } from "./support/client";
import { waitUntil } from "./support/helpers";
import { distBinary } from "./support/dist";
import { startServer, tempDir, workFolders, type ServerProcess } from "./support/server";

const EXE = distBinary("linux-arm64");
const QEMU = Bun.which("qemu-aarch64-static");
const LOADER = "/usr/aarch64-linux-gnu";
const BINFMT = "/proc/sys/fs/binfmt_misc/qemu-aarch64";
const missing = [
  !existsSync(EXE) && "dist/actiond-linux-arm64 (npm run build -- --all)",
  !QEMU && "qemu-aarch64-static (apt-get install qemu-user-static)",
  !existsSync(join(LOADER, "lib/ld-linux-aarch64.so.1")) && `${LOADER} (apt-get install gcc-aarch64-linux-gnu)`,
  !existsSync(BINFMT) && `the qemu-aarch64 binfmt handler (${BINFMT}; .ci/run registers it)`,
].filter(Boolean);
const SKIP = process.arch !== "x64" || (missing.length > 0 && process.env.ACTIOND_REQUIRE_DIST !== "1");
if (SKIP && process.arch === "x64") console.warn(`SKIP the arm64 executable under qemu-user: missing ${missing.join(", ")}`);

/** The emulated executable's command line, and the loader it needs (the host has no aarch64 /lib). */
const EMULATED = [QEMU ?? "qemu-aarch64-static", EXE];
const ENV = { PATH: "/usr/bin:/bin", QEMU_LD_PREFIX: LOADER };

describe.skipIf(SKIP)("actiond-linux-arm64 under qemu-user", () => {
  const root = tempDir("actiond-arm64-");
  let server: ServerProcess | undefined;

  afterAll(async () => {
    await server?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test("version says linux-arm64 and lists the aarch64 assets", () => {
    expect(missing).toEqual([]);
    const r = Bun.spawnSync([...EMULATED, "version"], { env: ENV });
    const out = r.stdout.toString();
    expect(r.exitCode).toBe(0);
    expect(out).toMatch(/^actiond \S+ \(bun \S+, linux-arm64\)/);
    expect(out).toContain("runtime-cc-aarch64.sqfs");
    expect(out).toContain("kernel-aarch64");
  }, 60_000);

  test("doctor runs, finds the helper and the aarch64 runtime, and says the sandbox cannot be built under emulation", () => {
    const r = Bun.spawnSync([...EMULATED, "doctor", "--root", root], { env: ENV });
    const out = r.stdout.toString();
    expect(out).toMatch(/ok\s+sandbox helper\s+carried by this executable/);
    expect(out).toMatch(/ok\s+runtime image\s+cc \(glibc[\d.]+, aarch64\)/);
    // QEMU's user mode refuses clone() with new namespaces: the one thing that cannot run here.
    expect(out).toMatch(/FAIL\s+namespaces\s+cannot build the action sandbox here: clone with new namespaces: Invalid argument/);
    expect(r.exitCode).toBe(1);
  }, 120_000);

  test("serve --sandbox=none answers GetCapabilities and runs an action; the emulated helper removes its work folder", async () => {
    server = await startServer({ root, command: EMULATED, inheritEnv: false, env: ENV, args: ["--sandbox", "none"], startTimeoutMs: 120_000 });
    const client = new ReapiClient(server.address);
    const exec = executionClient(server.address);
    try {
      const caps = await client.unary(client.caps, "getCapabilities", GetCapabilitiesRequestSchema, {});
      expect(caps.executionCapabilities?.execEnabled).toBe(true);
      const r = await run(client, exec, { args: ["/bin/sh", "-c", "echo from an action; echo made > out.txt"], outputFiles: ["out.txt"], salt: crypto.randomUUID() });
      expect(r.result?.exitCode).toBe(0);
      expect(await stdout(client, r.result)).toBe("from an action\n");
      expect(r.result?.outputFiles.map((f) => f.path)).toEqual(["out.txt"]);
      // Work folders are removed by the (aarch64) helper, emulated through binfmt_misc.
      expect(await waitUntil(() => workFolders(root).length === 0, 30_000)).toBe(true);
      // ...the helper itself, still running (one for the server's life), emulated: not the fallback.
      const helpers = Bun.spawnSync(["pgrep", "-a", "-f", "actiond-sandbox-[0-9a-f]+ --remove-trees"]).stdout.toString();
      expect(helpers).toMatch(/qemu-binfmt\/aarch64-binfmt-P (\S+\/embedded\/actiond-sandbox-[0-9a-f]+ )+--remove-trees/);
      expect(server.log()).not.toContain("cannot remove");
    } finally {
      exec.close();
      client.close();
    }
  }, 180_000);
});
