// packaging/install.sh, offline (--from a folder): it installs the executable for this machine only
// after its checksum matches, and the installed actiond runs. Also the devcontainer feature's
// installer, which hands over to install.sh.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DIST, HOST_TARGET, skipWithoutDist } from "./support/dist";
import { REPO, tempDir } from "./support/server";
import pkg from "../package.json" with { type: "json" };

const INSTALL = join(REPO, "packaging/install.sh");
const FEATURE = join(REPO, "packaging/devcontainer/src/actiond/install.sh");
const SKIP = skipWithoutDist("install.sh with the real executable", [HOST_TARGET]);

function sh(args: string[], env: Record<string, string> = {}) {
  const r = Bun.spawnSync(["sh", ...args], { env: { PATH: "/usr/bin:/bin", HOME: tempDir(), ...env }, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

describe("install.sh", () => {
  test.skipIf(SKIP)("--from dist installs actiond-<os>-<arch> into PREFIX/bin, and it answers version", () => {
    const prefix = join(tempDir(), "prefix");
    const r = sh([INSTALL, "--from", DIST, "--prefix", prefix]);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`installed actiond ${pkg.version} (bun ${Bun.version}, ${HOST_TARGET}) to ${prefix}/bin/actiond`);
    expect(r.out).toContain(`${prefix}/bin is not on your PATH`);
    const v = Bun.spawnSync([join(prefix, "bin/actiond"), "version"]);
    expect(v.exitCode).toBe(0);
    expect(v.stdout.toString()).toContain("runtime-cc-");
    expect(readdirSync(join(prefix, "bin"))).toEqual(["actiond"]);
  });

  test("a checksum mismatch is refused and nothing is installed", () => {
    const from = tempDir();
    const name = `actiond-${HOST_TARGET}`;
    writeFileSync(join(from, name), "#!/bin/sh\necho tampered\n");
    writeFileSync(join(from, `${name}.sha256`), `${"0".repeat(64)}  ${name}\n`);
    const prefix = join(tempDir(), "prefix");
    const r = sh([INSTALL, "--from", from, "--prefix", prefix]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`checksum mismatch for ${name}: expected 0{64}, got [0-9a-f]{64}; nothing was installed`));
    expect(existsSync(prefix)).toBe(false);
  });

  test("a missing file or an unknown option is a clear error", () => {
    const r = sh([INSTALL, "--from", tempDir(), "--prefix", tempDir()]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`actiond-${HOST_TARGET} does not exist`);
    const bad = sh([INSTALL, "--frmo", "x"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("unknown option --frmo");
  });

  test.skipIf(SKIP)("the devcontainer feature installs through install.sh (from a local folder here)", () => {
    const prefix = join(tempDir(), "usr-local");
    mkdirSync(prefix);
    // The feature runs install.sh from the same release folder (the build puts a copy in dist/).
    const r = sh([FEATURE], { FROM: DIST, VERSION: "latest", _ACTIOND_PREFIX: prefix });
    expect(r.code).toBe(0);
    expect(Bun.spawnSync([join(prefix, "bin/actiond"), "version"]).exitCode).toBe(0);
  });
});
