// The command line: help, refusals (exit 2), a busy port, and a clean stop on SIGTERM/SIGINT.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { WriteRequestSchema } from "../src/gen/google/bytestream/bytestream_pb";
import { GetActionResultRequestSchema, GetCapabilitiesRequestSchema } from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { ReapiClient, sha256 } from "./support/client";
import { randomBytes, waitUntil } from "./support/helpers";
import { MAIN, startServer, tempDir } from "./support/server";

function run(...args: string[]) {
  const p = Bun.spawnSync([process.execPath, MAIN, ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, XDG_CACHE_HOME: tempDir() } });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

describe("actiond CLI", () => {
  test("every command answers --help", () => {
    for (const args of [["--help"], ["serve", "--help"], ["version", "--help"], ["doctor", "--help"], ["serve-vm", "--help"]]) {
      const r = run(...args);
      expect(r.code).toBe(0);
      expect(r.out).toContain("Usage: actiond");
    }
    const serveHelp = run("serve", "--help").out;
    for (const flag of ["--listen", "--root", "--max-cas-size", "--log-level", "--jobs", "--default-timeout", "--sandbox", "--runtime-image", "--runtime-root", "--keep-failed"]) {
      expect(serveHelp).toContain(flag);
    }
    expect(serveHelp).toContain("default 20GiB");
  });

  test("version prints the version and the Bun runtime; from source it carries no assets", () => {
    const r = run("version");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^actiond \d+\.\d+\.\d+ \(bun \d+\.\d+\.\d+, linux-/);
    expect(r.out).toContain("assets: none embedded (running from a source checkout");
  });

  test("doctor finds the sandbox working here, and reports each area", () => {
    const r = run("doctor", "--root", tempDir());
    expect(r.code).toBe(0);
    for (const area of ["sandbox helper", "runtime image", "namespaces", "user namespaces", "cgroup v2", "KVM"]) expect(r.out).toMatch(new RegExp(`\\n  (ok|warn|info)\\s+${area} `));
    expect(r.out).toContain("actiond serve can run actions here.");
  });

  test("doctor as a plain user reports the rootless sandbox", () => {
    const root = tempDir();
    Bun.spawnSync(["chown", "tester:", root]);
    const p = Bun.spawnSync(["setpriv", "--reuid=tester", "--regid=tester", "--init-groups", "--", process.execPath, MAIN, "doctor", "--root", root], { stdout: "pipe", stderr: "pipe" });
    expect(p.stdout.toString()).toMatch(/ok\s+namespaces\s+actions run rootless/);
    expect(p.exitCode).toBe(0);
  });

  test("where no sandbox can be built, doctor says FAIL with what to do, and exits 1", () => {
    const p = Bun.spawnSync([process.execPath, MAIN, "doctor", "--root", tempDir()], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ACTIOND_SANDBOX_HELPER: "/bin/false" } });
    const out = p.stdout.toString();
    expect(out).toMatch(/FAIL\s+namespaces\s+cannot build the action sandbox here/);
    expect(out).toContain("→ fix the above, or run serve with --sandbox=none");
    expect(out).toContain("actiond serve cannot run actions here yet");
    expect(p.exitCode).toBe(1);
  });

  test("serve-vm refuses what it cannot do with one line: a missing guest file, the vz hypervisor, bad flags", () => {
    const missing = run("serve-vm", "--root", tempDir(), "--kernel", "/nonexistent/kernel");
    expect(missing.code).toBe(1);
    expect(missing.err.trim().split("\n")).toEqual([expect.stringMatching(/^actiond: serve-vm: the kernel \/nonexistent\/kernel does not exist$|^actiond: serve-vm needs a guest /)]);
    const vz = run("serve-vm", "--root", tempDir(), "--hypervisor", "vz");
    expect(vz.code).toBe(1);
    expect(vz.err).toContain("serve-vm --hypervisor vz needs macOS (Virtualization.framework)");
    for (const args of [["--hypervisor", "xen"], ["--cpus", "0"], ["--memory-mib", "lots"], ["--listen", "unix:/tmp/x"], ["--accel", "warp"]]) {
      const r = run("serve-vm", ...args);
      expect(r.code).toBe(2);
      expect(r.err).toStartWith("actiond: serve-vm: ");
    }
  });

  test("unknown commands, unknown flags and bad values are refused with one line and exit 2", () => {
    for (const args of [["frobnicate"], ["serve", "--bogus"], ["serve", "--listen", "nohost"], ["serve", "--listen", "1.2.3.4:99999"], ["serve", "--max-cas-size", "lots"], ["serve", "--log-level", "loud"], ["serve", "stray"], ["serve", "--jobs", "0"], ["serve", "--jobs", "two"], ["serve", "--default-timeout", "-1"], ["serve", "--sandbox", "docker"]]) {
      const r = run(...args);
      expect(r.code).toBe(2);
      expect(r.err.trim().split("\n")).toHaveLength(1);
      expect(r.err).toStartWith("actiond: ");
    }
  });

  test("every flag has an ACTIOND_ variable: --help lists it, a bad value in it is refused like a flag, a flag given wins", async () => {
    const help = run("serve", "--help").out;
    for (const v of ["ACTIOND_LISTEN", "ACTIOND_ROOT", "ACTIOND_MAX_CAS_SIZE", "ACTIOND_JOBS", "ACTIOND_KEEP_FAILED", "ACTIOND_RUNTIME_IMAGE", "ACTIOND_SANDBOX_HELPER"]) expect(help).toContain(`$${v}`);
    expect(run("serve-vm", "--help").out).toContain("$ACTIOND_START_TIMEOUT_MS");
    const env = (vars: Record<string, string>, ...args: string[]) => {
      const p = Bun.spawnSync([process.execPath, MAIN, ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, XDG_CACHE_HOME: tempDir(), ...vars } });
      return { code: p.exitCode, err: p.stderr.toString() };
    };
    const bad = env({ ACTIOND_MAX_CAS_SIZE: "lots" }, "serve");
    expect(bad.code).toBe(2);
    expect(bad.err.trim()).toBe('actiond: serve: $ACTIOND_MAX_CAS_SIZE "lots" is not a size (for example 500M or 50G)');
    expect(env({ ACTIOND_KEEP_FAILED: "maybe" }, "serve").err).toContain('$ACTIOND_KEEP_FAILED "maybe" is not 1, true, 0 or false');
    // The variables set the server's settings; a flag on the command line wins over its variable.
    const root = tempDir();
    const s = await startServer({ root, args: ["--jobs", "3"], env: { ACTIOND_JOBS: "7", ACTIOND_MAX_CAS_SIZE: "123M" } });
    expect(s.log()).toContain("executing up to 3 actions at once");
    expect(s.log()).toContain(`bytes of ${123 * 2 ** 20} (--max-cas-size)`);
    expect(await s.stop()).toBe(0);
  });

  test("a --root that cannot be used is a clear one-line error", () => {
    const r = run("serve", "--listen", "127.0.0.1:0", "--root", "/proc/actiond-cannot-live-here");
    expect(r.code).toBe(1);
    expect(r.err.trim().split("\n")).toEqual([expect.stringMatching(/^actiond: cannot use --root \/proc\/actiond-cannot-live-here: /)]);
  });

  test("a runtime image that does not exist is a clear one-line error", () => {
    const r = run("serve", "--listen", "127.0.0.1:0", "--root", tempDir(), "--runtime-image", "/nonexistent/runtime.sqfs");
    expect(r.code).toBe(1);
    const lines = r.err.trim().split("\n").filter((l) => l.startsWith("actiond:"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("/nonexistent/runtime.sqfs");
  });

  test("where no sandbox can be built, serve refuses to start, says why and what to do", () => {
    // A helper that cannot build anything stands in for a host without namespaces.
    const p = Bun.spawnSync([process.execPath, MAIN, "serve", "--listen", "127.0.0.1:0", "--root", tempDir()], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, ACTIOND_SANDBOX_HELPER: "/bin/false" },
    });
    expect(p.exitCode).toBe(1);
    const lines = p.stderr.toString().trim().split("\n").filter((l) => l.startsWith("actiond:"));
    expect(lines).toEqual([expect.stringMatching(/^actiond: cannot build the action sandbox here: .*--sandbox=none/)]);
  });

  test("--listen unix:PATH serves on a Unix socket", async () => {
    const path = join(tempDir(), "actiond.sock");
    const proc = Bun.spawn([process.execPath, MAIN, "serve", "--listen", `unix:${path}`, "--root", tempDir()], { stdout: "pipe", stderr: "pipe" });
    try {
      expect(await waitUntil(() => existsSync(path), 10_000)).toBe(true);
      const client = new ReapiClient(`unix:${path}`);
      const caps = await client.unary(client.caps, "getCapabilities", GetCapabilitiesRequestSchema, {});
      expect(caps.executionCapabilities?.execEnabled).toBe(true);
      client.close();
    } finally {
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    }
    expect(await new Response(proc.stderr).text()).toContain(`actiond serving REAPI on unix:${path} (root`);
  });

  test("a port already in use is a clear one-line error", async () => {
    const s = await startServer();
    const r = run("serve", "--listen", s.address, "--root", tempDir());
    expect(r.code).toBe(1);
    expect(r.err.trim().split("\n").filter((l) => l.startsWith("actiond:"))).toEqual([`actiond: cannot listen on ${s.address}: the address is already in use`]);
    await s.stop();
  });

  test("SIGTERM and SIGINT stop the server with exit code 0", async () => {
    const a = await startServer();
    expect(await a.stop()).toBe(0);
    const b = await startServer();
    b.proc.kill("SIGINT");
    expect(await b.proc.exited).toBe(0);
    expect(b.log()).toContain("SIGINT: shutting down");
  });

  test("on SIGTERM an upload in flight still completes, then the server exits 0", async () => {
    const s = await startServer();
    const c = new ReapiClient(s.address);
    const data = randomBytes(512 * 1024);
    const d = sha256(data);
    let call: any;
    const done = new Promise<bigint>((res, rej) => {
      call = c.bs.write((err: Error | null, out: { committedSize: bigint }) => (err ? rej(err) : res(out.committedSize)));
    });
    const name = `uploads/${crypto.randomUUID()}/blobs/${d.hash}/${d.sizeBytes}`;
    call.write(create(WriteRequestSchema, { resourceName: name, data: data.subarray(0, 256 * 1024) }));
    // Once the upload is under way on the server (its temporary file exists), the server is told to
    // stop; the rest goes out only after it says it is shutting down.
    expect(await waitUntil(() => readdirSync(join(s.root, "tmp")).length > 0, 10_000)).toBe(true);
    s.proc.kill("SIGTERM");
    expect(await waitUntil(() => s.log().includes("SIGTERM: shutting down"), 10_000)).toBe(true);
    call.write(create(WriteRequestSchema, { writeOffset: BigInt(256 * 1024), data: data.subarray(256 * 1024), finishWrite: true }));
    call.end();
    expect(await done).toBe(BigInt(data.length));
    expect(await s.proc.exited).toBe(0);
    c.close();
  });

  test("the log tells how to use the server and, at shutdown, what it served", async () => {
    const s = await startServer();
    expect(s.log()).toContain(`use it with: bazel build --remote_executor=grpc://${s.address}`);
    const c = new ReapiClient(s.address);
    const data = randomBytes(2048);
    const d = sha256(data);
    await c.upload(`uploads/${crypto.randomUUID()}/blobs/${d.hash}/${d.sizeBytes}`, data);
    await c.read(`blobs/${d.hash}/${d.sizeBytes}`);
    await c.unary(c.ac, "getActionResult", GetActionResultRequestSchema, { actionDigest: sha256("never run") }).catch(() => {});
    c.close();
    expect(await s.stop()).toBe(0);
    expect(s.log()).toContain("since start: action cache 0 hits, 1 misses, 0 updates; blobs 1 stored (0.0 MiB), 1 read (0.0 MiB)");
  });
});

