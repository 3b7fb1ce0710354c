// The guest's initramfs: /init (shim/guest-init.c), /actiond (the Linux build for the guest's CPU),
// the glibc files a Bun executable loads, and mkfs.ext4 with its libraries (for a blank CAS disk);
// nothing else. Files come from Debian packages of the guest's architecture, as the runtime images
// do, and the result is checked the same way: every interpreter and library an ELF file names is in.
// Written as a gzip-compressed newc cpio with fixed owners and times, so it is reproducible.
import { chmodSync, copyFileSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { Arch } from "../src/core";
import { extractDeb, fetchDebs, resolvePackages } from "../runtimes/recipe/apt";
import { checkRoot, resolveInRoot } from "../runtimes/recipe/check";

/** Package → the files the initramfs takes from it (paths as the package installs them). */
function wanted(arch: Arch): Record<string, string[]> {
  const lib = `lib/${arch.triplet}`;
  return {
    libc6: [`${lib}/${basename(arch.loader)}`, `${lib}/libc.so.6`, `${lib}/libm.so.6`, `${lib}/libpthread.so.0`, `${lib}/libdl.so.2`],
    e2fsprogs: ["sbin/mke2fs", "etc/mke2fs.conf"],
    libext2fs2: [`${lib}/libext2fs.so.2`, `${lib}/libe2p.so.2`],
    "libcom-err2": [`${lib}/libcom_err.so.2`],
    libblkid1: [`usr/${lib}/libblkid.so.1`],
    libuuid1: [`usr/${lib}/libuuid.so.1`],
  };
}

export interface InitramfsInputs {
  arch: Arch;
  /** The guest's actiond (a Linux executable for arch). */
  actiond: string;
  /** /init, statically linked for arch. */
  init: string;
  /** Where fetched .debs are kept between builds. */
  debsDir: string;
  out: string;
}

export async function buildInitramfs(inputs: InitramfsInputs): Promise<{ bytes: number; files: number }> {
  const { arch } = inputs;
  const files = wanted(arch);
  const debs = await resolvePackages(Object.keys(files), arch);
  await fetchDebs(debs, arch, inputs.debsDir);
  const staging = mkdtempSync(join(dirname(inputs.out), ".initramfs-"));
  try {
    const root = join(staging, "root");
    for (const dir of ["dev", "proc", "sys", "tmp", "run", "cas", "runtimes", "usr/sbin", `usr/lib/${arch.triplet}`, "etc"]) mkdirSync(join(root, dir), { recursive: true });
    symlinkSync("usr/lib", join(root, "lib"));
    symlinkSync("usr/sbin", join(root, "sbin"));
    for (const deb of debs) {
      const unpacked = join(staging, "pkgs", deb.name);
      await extractDeb(join(inputs.debsDir, deb.file), unpacked);
      for (const path of files[deb.name] ?? []) {
        // Libraries are often symlinks to a versioned file: take the file, under the name asked for.
        const dest = join(root, path.replace(/^(lib|sbin)\//, "usr/$1/"));
        mkdirSync(dirname(dest), { recursive: true });
        // Symlinks followed as if the package were /, so an absolute one never reaches this host's files.
        const file = resolveInRoot(unpacked, `/${path}`);
        if (!file) throw new Error(`${deb.name} has no ${path}`);
        copyFileSync(file, dest);
        chmodSync(dest, path.includes("sbin/") || path.endsWith(basename(arch.loader)) ? 0o755 : 0o644);
      }
    }
    symlinkSync("mke2fs", join(root, "usr/sbin/mkfs.ext4"));
    // The loader where executables name it (/lib64/… or /lib/…), as Debian links it.
    const loaderLink = join(root, arch.loader.replace(/^\/lib\//, "/usr/lib/"));
    mkdirSync(dirname(loaderLink), { recursive: true });
    symlinkSync(`/usr/lib/${arch.triplet}/${basename(arch.loader)}`, loaderLink);
    copyFileSync(inputs.init, join(root, "init"));
    chmodSync(join(root, "init"), 0o755);
    copyFileSync(inputs.actiond, join(root, "actiond"));
    chmodSync(join(root, "actiond"), 0o755);

    const check = checkRoot(root, arch, [arch.loader, "/init", "/actiond", "/usr/sbin/mke2fs"]);
    if (check.problems.length > 0) throw new Error(`the initramfs is incomplete:\n  ${check.problems.join("\n  ")}`);
    const cpio = newcArchive(root);
    const gz = Bun.gzipSync(cpio, { level: 9 });
    writeFileSync(inputs.out, gz);
    return { bytes: gz.length, files: countFiles(root) };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

function countFiles(dir: string): number {
  return readdirSync(dir, { withFileTypes: true }).reduce((n, e) => n + 1 + (e.isDirectory() ? countFiles(join(dir, e.name)) : 0), 0);
}

/** A newc ("070701") cpio archive of everything under root, sorted, owned by root, dated 0. */
export function newcArchive(root: string): Uint8Array<ArrayBuffer> {
  const parts: Uint8Array[] = [];
  let ino = 1;
  const pad4 = (n: number) => new Uint8Array((4 - (n % 4)) % 4);
  const add = (name: string, mode: number, data: Uint8Array) => {
    const nameBytes = new TextEncoder().encode(`${name}\0`);
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nameBytes.length, 0];
    const header = new TextEncoder().encode(`070701${fields.map((f) => f.toString(16).padStart(8, "0")).join("")}`);
    parts.push(header, nameBytes, pad4(header.length + nameBytes.length), data, pad4(data.length));
  };
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(root, path));
      const perm = st.mode & 0o7777;
      if (st.isSymbolicLink()) add(path, 0o120000 | 0o777, new TextEncoder().encode(readlinkSync(join(root, path))));
      else if (st.isDirectory()) {
        add(path, 0o040000 | perm, new Uint8Array());
        walk(path);
      } else add(path, 0o100000 | perm, new Uint8Array(readFileSync(join(root, path))));
    }
  };
  walk("");
  add("TRAILER!!!", 0, new Uint8Array());
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total + ((512 - (total % 512)) % 512));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
