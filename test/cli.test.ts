// The command line: help, refusals (exit 2), a busy port, and a clean stop on SIGTERM/SIGINT.
import { describe, expect, test } from "bun:test";
import { MAIN, startServer, tempDir } from "./support/server";

function run(...args: string[]) {
  const p = Bun.spawnSync([process.execPath, MAIN, ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, XDG_CACHE_HOME: tempDir() } });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

describe("actiond CLI", () => {
  test("every command answers --help", () => {
    for (const args of [["--help"], ["serve", "--help"], ["version", "--help"]]) {
      const r = run(...args);
      expect(r.code).toBe(0);
      expect(r.out).toContain("Usage: actiond");
    }
    const serveHelp = run("serve", "--help").out;
    for (const flag of ["--listen", "--root", "--max-cas-size", "--log-level"]) expect(serveHelp).toContain(flag);
    expect(serveHelp).toContain("default 20GiB");
  });

  test("version prints the version and the Bun runtime", () => {
    const r = run("version");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^actiond \d+\.\d+\.\d+ \(bun \d+\.\d+\.\d+, linux-/);
  });

  test("unknown commands, unknown flags and bad values are refused with one line and exit 2", () => {
    for (const args of [["frobnicate"], ["serve", "--bogus"], ["serve", "--listen", "nohost"], ["serve", "--listen", "1.2.3.4:99999"], ["serve", "--max-cas-size", "lots"], ["serve", "--log-level", "loud"], ["serve", "stray"]]) {
      const r = run(...args);
      expect(r.code).toBe(2);
      expect(r.err.trim().split("\n")).toHaveLength(1);
      expect(r.err).toStartWith("actiond: ");
    }
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
});
