// This machine's compiled executable, copied alone into an empty folder and run with a bare PATH:
// it extracts its assets on first start, reuses them after, repairs a damaged one, and doctor passes.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { findManifest } from "../src/assets";
import { BARE_ENV, HOST_TARGET, aloneCopy, distBinary, skipWithoutDist } from "./support/dist";
import { startServer, tempDir } from "./support/server";

const SKIP = skipWithoutDist("the compiled executable", [HOST_TARGET]);

describe.skipIf(SKIP)("compiled actiond, alone", () => {
  const alone = SKIP ? undefined : aloneCopy();
  const manifest = SKIP ? undefined : findManifest(readFileSync(distBinary(HOST_TARGET)))!;
  /** What serve extracts: not the VM guest's files, which are serve-vm's. */
  const served = manifest?.assets.filter((a) => ["sandbox-helper", "vsock-relay", "runtime"].includes(a.role)) ?? [];
  const root = tempDir();
  const start = () => startServer({ root, command: [alone!.exe], cwd: alone!.dir, inheritEnv: false, env: BARE_ENV, startTimeoutMs: 60_000 });

  afterAll(() => {
    if (alone) rmSync(alone.dir, { recursive: true, force: true });
  });

  test("the first start extracts every asset to <root>/embedded/<name>-<sha256>; the next reuses them", async () => {
    const first = await start();
    expect(first.log()).toContain(`embedded assets ready in`);
    expect(first.log()).toContain(`(${served.length} extracted, 0 already there)`);
    expect(first.log()).toMatch(/sandbox namespaces, runtimes: cc \(glibc/);
    expect(await first.stop()).toBe(0);
    const names = readdirSync(join(root, "embedded"));
    for (const a of served) expect(names).toContain(`${a.name}-${a.sha256}`);
    for (const a of manifest!.assets.filter((x) => !served.includes(x))) expect(names).not.toContain(`${a.name}-${a.sha256}`);

    const second = await start();
    expect(second.log()).toContain(`(0 extracted, ${served.length} already there)`);
    expect(await second.stop()).toBe(0);
  }, 120_000);

  test("a damaged extraction is found at start and extracted again", async () => {
    const runtime = manifest!.assets.find((a) => a.role === "runtime")!;
    const path = join(root, "embedded", `${runtime.name}-${runtime.sha256}`);
    chmodSync(path, 0o644);
    const bytes = readFileSync(path);
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 0xff;
    writeFileSync(path, bytes);
    const server = await start();
    expect(server.log()).toContain(`${path} is damaged`);
    expect(server.log()).toContain(`(1 extracted, ${served.length - 1} already there)`);
    expect(await server.stop()).toBe(0);
    expect(new Bun.CryptoHasher("sha256").update(readFileSync(path)).digest("hex")).toBe(runtime.sha256);
  }, 120_000);

  test("doctor finds the sandbox working", () => {
    const r = Bun.spawnSync([alone!.exe, "doctor", "--root", root], { cwd: alone!.dir, env: BARE_ENV });
    const out = r.stdout.toString();
    expect(out).toMatch(/ok\s+sandbox helper\s+carried by this executable/);
    expect(out).toMatch(/ok\s+namespaces/);
    expect(out).toContain("actiond serve can run actions here.");
    expect(r.exitCode).toBe(0);
  });
});
