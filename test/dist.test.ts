// The executables `npm run build -- --all` makes, checked without running them: each is a valid
// executable for its platform and carries the assets its manifest lists, byte for byte.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { findManifest, type AssetEntry } from "../src/payload/manifest";
import { DIST, HOST_TARGET, distBinary, skipWithoutDist } from "./support/dist";
import { REPO } from "./support/server";
import pkg from "../package.json" with { type: "json" };

const TARGETS = [
  { name: "linux-x64", format: "elf", machine: 62, linuxArch: "x86_64", linuxMachine: 62, vm: ["guest-kernel", "guest-initramfs"] },
  { name: "linux-arm64", format: "elf", machine: 183, linuxArch: "aarch64", linuxMachine: 183, vm: ["guest-kernel", "guest-initramfs"] },
  { name: "darwin-arm64", format: "macho", machine: 0x0100000c, linuxArch: "aarch64", linuxMachine: 183, vm: ["guest-kernel", "guest-initramfs", "vz-shim"] },
] as const;
const SKIP = skipWithoutDist("dist executables", TARGETS.map((t) => t.name));
const sha256 = (b: Uint8Array) => new Bun.CryptoHasher("sha256").update(b).digest("hex");
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** The asset's stored bytes inside the executable: the slice at a magic number whose hash matches. */
function storedBytes(exe: Buffer, a: AssetEntry): Buffer | undefined {
  const magic = a.encoding === "zstd" ? ZSTD_MAGIC : a.name.endsWith(".sqfs") ? Buffer.from("hsqs") : undefined;
  if (!magic) throw new Error(`no magic number known for ${a.name}`);
  for (let at = exe.indexOf(magic); at >= 0; at = exe.indexOf(magic, at + 1)) {
    const slice = exe.subarray(at, at + a.storedSize);
    if (slice.length === a.storedSize && sha256(slice) === a.storedSha256) return slice;
  }
  return undefined;
}

function elfMachine(b: Uint8Array): number | undefined {
  if (b[0] !== 0x7f || b[1] !== 0x45 || b[2] !== 0x4c || b[3] !== 0x46 || b[4] !== 2) return undefined; // \x7fELF, 64-bit
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).readUInt16LE(18);
}

describe.skipIf(SKIP)("dist executables", () => {
  for (const t of TARGETS) {
    test(`${t.name}: a ${t.format === "elf" ? "64-bit ELF" : "64-bit Mach-O"} for its CPU, carrying its helpers and runtime`, () => {
      const exe = readFileSync(distBinary(t.name));
      if (t.format === "elf") expect(elfMachine(exe)).toBe(t.machine);
      else expect([exe.readUInt32LE(0), exe.readUInt32LE(4)]).toEqual([0xfeedfacf, t.machine]);

      const manifest = findManifest(exe);
      expect(manifest).toBeDefined();
      expect(manifest!).toMatchObject({ target: t.name, version: pkg.version });
      expect(manifest!.assets.map((a) => a.role).sort()).toEqual(["runtime", "sandbox-helper", "vsock-relay"]);
      expect(manifest!.missing.map((m) => m.role)).toEqual([...t.vm]);

      for (const a of manifest!.assets) {
        const stored = storedBytes(exe, a);
        if (!stored) throw new Error(`${t.name}: ${a.name} (${a.storedSize} bytes, sha256 ${a.storedSha256}) is not in the executable`);
        const content = a.encoding === "zstd" ? Bun.zstdDecompressSync(stored) : stored;
        expect(sha256(content)).toBe(a.sha256);
        expect(content.length).toBe(a.size);
        if (a.role === "runtime") {
          expect(a.name).toBe(`runtime-cc-${t.linuxArch}.sqfs`);
          const record = join(REPO, "build/runtimes", `cc-${t.linuxArch}.build.json`);
          if (existsSync(record)) expect(a.sha256).toBe(JSON.parse(readFileSync(record, "utf8")).imageSha256);
        } else {
          expect(elfMachine(content)).toBe(t.linuxMachine); // the Linux helpers, for this target's (or its guest's) CPU
        }
      }
    });
  }

  test("checksums.txt and each .sha256 match the files; the release files are there", () => {
    const lines = readFileSync(join(DIST, "checksums.txt"), "utf8").trim().split("\n");
    const listed = new Map(lines.map((l) => [l.split("  ")[1] as string, l.split("  ")[0] as string]));
    expect([...listed.keys()].sort()).toEqual(["actiond-darwin-arm64", "actiond-linux-arm64", "actiond-linux-x64", "actiond.entitlements", "actiond.rb", "install.sh"]);
    for (const [file, sum] of listed) expect(sha256(readFileSync(join(DIST, file)))).toBe(sum);
    for (const t of TARGETS) expect(readFileSync(`${distBinary(t.name)}.sha256`, "utf8")).toBe(`${listed.get(`actiond-${t.name}`)}  actiond-${t.name}\n`);
    const formula = readFileSync(join(DIST, "actiond.rb"), "utf8");
    expect(formula).toContain(`sha256 "${listed.get("actiond-darwin-arm64")}"`);
    expect(formula).toContain(`sha256 "${listed.get("actiond.entitlements")}"`);
    expect(formula).not.toMatch(/@[A-Z0-9_]+@/);
    const notes = readFileSync(join(DIST, "RELEASE-NOTES.md"), "utf8");
    for (const file of listed.keys()) expect(notes).toContain(`| ${file} | `);
    for (const sum of listed.values()) expect(notes).toContain(`\`${sum}\``);
  });

  test("this machine's executable lists in `version` exactly what its manifest says it carries", () => {
    const exe = distBinary(HOST_TARGET);
    const manifest = findManifest(readFileSync(exe))!;
    const r = Bun.spawnSync([exe, "version"], { env: { PATH: "/usr/bin:/bin" } });
    const out = r.stdout.toString();
    expect(r.exitCode).toBe(0);
    expect(out).toStartWith(`actiond ${pkg.version} (bun ${Bun.version}, ${HOST_TARGET})\n`);
    for (const a of manifest.assets) expect(out).toMatch(new RegExp(`${a.name.replace(/\./g, "\\.")}\\s+${a.size} bytes\\s+sha256 ${a.sha256}`));
  });
});
