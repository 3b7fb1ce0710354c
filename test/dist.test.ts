// The executables `npm run build -- --all` makes, checked without running them: each is a valid
// executable for its platform and carries the assets its manifest lists, byte for byte.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { findManifest, type AssetEntry } from "../src/assets";
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
/** With the VM guest built (npm run build -- --vm), every executable must carry it. */
const VM_REQUIRED = process.env.ACTIOND_REQUIRE_VM === "1";

/** The asset's stored bytes inside the executable: the slice at its first bytes whose hash matches. */
function storedBytes(exe: Buffer, a: AssetEntry): Buffer | undefined {
  const head = Buffer.from(a.storedHead, "hex");
  for (let at = exe.indexOf(head); at >= 0; at = exe.indexOf(head, at + 1)) {
    const slice = exe.subarray(at, at + a.storedSize);
    if (slice.length === a.storedSize && sha256(slice) === a.storedSha256) return slice;
  }
  return undefined;
}

function elfMachine(b: Uint8Array): number | undefined {
  if (b[0] !== 0x7f || b[1] !== 0x45 || b[2] !== 0x4c || b[3] !== 0x46 || b[4] !== 2) return undefined; // \x7fELF, 64-bit
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).readUInt16LE(18);
}

/** x86: a bzImage ("HdrS" at 0x202); arm64: the raw Image Virtualization.framework boots ("ARM\x64" at 0x38). */
function isKernelFor(b: Uint8Array, arch: string): boolean {
  const at = (offset: number, magic: string) => Buffer.from(b.subarray(offset, offset + magic.length)).toString("latin1") === magic;
  return arch === "x86_64" ? at(0x202, "HdrS") : at(0x38, "ARM\x64");
}

/** The regular files of a newc cpio archive, by path. */
function cpioFiles(archive: Uint8Array): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const text = (from: number, n: number) => Buffer.from(archive.subarray(from, from + n)).toString("latin1");
  const pad4 = (n: number) => (n + 3) & ~3;
  for (let at = 0; text(at, 6) === "070701"; ) {
    const field = (i: number) => parseInt(text(at + 6 + i * 8, 8), 16);
    const mode = field(1), size = field(6), nameSize = field(11);
    const name = text(at + 110, nameSize - 1);
    if (name === "TRAILER!!!") break;
    const dataAt = pad4(at + 110 + nameSize);
    if ((mode & 0o170000) === 0o100000) files.set(name, archive.subarray(dataAt, dataAt + size));
    at = pad4(dataAt + size);
  }
  return files;
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
      const roles = manifest!.assets.map((a) => a.role);
      expect(roles).toEqual(expect.arrayContaining(["runtime", "sandbox-helper", "vsock-relay"]));
      // Each VM role is carried or listed as missing (with why); with the guest built only vz-shim may be missing.
      for (const role of t.vm) expect(roles.includes(role) !== manifest!.missing.some((m) => m.role === role)).toBe(true);
      if (VM_REQUIRED) expect(manifest!.missing).toEqual([]);

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
        } else if (a.role === "guest-kernel") {
          expect(isKernelFor(content, t.linuxArch)).toBe(true);
        } else if (a.role === "vz-shim") {
          // A Mach-O arm64 dylib (MH_DYLIB) exporting what src/vmhost/vz.ts calls.
          const b = Buffer.from(content);
          expect([b.readUInt32LE(0), b.readUInt32LE(4), b.readUInt32LE(12)]).toEqual([0xfeedfacf, 0x0100000c, 6]);
          for (const name of ["_actiond_vz_start", "_actiond_vz_relay", "_actiond_vz_state"]) expect(b.includes(name)).toBe(true);
        } else if (a.role === "guest-initramfs") {
          const files = cpioFiles(Bun.gunzipSync(new Uint8Array(content)));
          expect(elfMachine(files.get("init")!)).toBe(t.linuxMachine);
          expect(elfMachine(files.get("actiond")!)).toBe(t.linuxMachine);
          expect(files.has("usr/sbin/mke2fs")).toBe(true);
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
