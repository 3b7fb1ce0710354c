// Assembling the image root from unpacked packages: merged /usr, pruning, and the few files a
// package's maintainer scripts would otherwise have made (symlinks, /etc basics).
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, posix } from "node:path";
import type { Arch } from "../../src/core";

/** Debian 12 packages still ship these at the top; the image keeps them under usr/ (usrmerge). */
const MERGED = ["bin", "sbin", "lib", "lib64"];

/** Where a package path lands in the image: bin/bash → usr/bin/bash. */
export function usrMerged(rel: string): string {
  const top = rel.split("/")[0] as string;
  return MERGED.includes(top) ? `usr/${rel}` : rel;
}

/** Paths never shipped: documentation, translations, lint data, debugger helpers, charset modules. */
function pruned(path: string, arch: Arch): boolean {
  const dropped = [
    "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian", "usr/share/bug",
    "usr/share/doc-base", "usr/share/menu", "usr/share/common-licenses", "usr/share/bash-completion",
    "usr/share/debianutils", // the shells.d registry, for dpkg triggers
    "usr/share/gdb", "usr/share/gcc", // gdb auto-load and the libstdc++ pretty printers (Python)
    `usr/lib/${arch.triplet}/gconv`, // iconv modules; UTF-8 and ASCII are built into libc
    "etc/skel",
    "usr/lib/mime", // mailcap entries, for desktop mail readers
    "etc/rmt", // tar's link to the remote-tape server, an update-alternatives target that is not here
    "usr/bin/bashbug", "usr/bin/clear_console", // bash's interactive extras
  ];
  if (dropped.some((d) => path === d || path.startsWith(`${d}/`))) return true;
  // gcc-12's LTO bytecode dumper (32 MB, a debugging aid; lto1 itself stays, for -flto).
  if (/^usr\/bin\/([a-z0-9_-]+-)?lto-dump(-\d+)?$/.test(path)) return true;
  // Keep usr/share/doc/<pkg>/copyright (license compliance) and nothing else from the docs.
  const doc = /^usr\/share\/doc\/[^/]+\/(.+)$/.exec(path);
  return doc !== null && doc[1] !== "copyright";
}

export interface MergeStats {
  files: number;
  pruned: number;
}

/**
 * Moves one unpacked package (`pkgDir`) into `root`, usr-merged and pruned. Two packages may ship the
 * same path only with identical content; anything else is a conflict dpkg would refuse too.
 */
export function mergePackage(pkgDir: string, pkg: string, root: string, arch: Arch, owners: Map<string, string>, stats: MergeStats): void {
  const walk = (rel: string) => {
    for (const name of readdirSync(join(pkgDir, rel)).sort()) {
      const from = rel ? `${rel}/${name}` : name;
      const to = usrMerged(from);
      if (pruned(to, arch)) {
        stats.pruned++;
        continue;
      }
      const src = join(pkgDir, from), dst = join(root, to);
      const st = lstatSync(src);
      const have = lstatOrUndefined(dst);
      if (st.isDirectory()) {
        if (have && !have.isDirectory()) throw conflict(to, pkg, owners);
        if (!have) {
          mkdirSync(dst);
          chmodSync(dst, st.mode & 0o7777);
        }
        walk(from);
        continue;
      }
      if (st.isSymbolicLink()) {
        const target = retarget(from, to, readlinkSync(src));
        if (have) {
          if (!have.isSymbolicLink() || readlinkSync(dst) !== target) throw conflict(to, pkg, owners);
          continue;
        }
        symlinkSync(target, dst);
      } else if (st.isFile()) {
        if (have) {
          if (!have.isFile() || !readFileSync(src).equals(readFileSync(dst))) throw conflict(to, pkg, owners);
          continue;
        }
        renameSync(src, dst);
      } else {
        throw new Error(`${pkg}: ${from} is neither a file, a directory nor a symlink`);
      }
      owners.set(to, pkg);
      stats.files++;
    }
  };
  mkdirSync(join(root, "usr"), { recursive: true, mode: 0o755 }); // bin/ lands in usr/bin/ even before usr/ comes by
  walk("");
}

/** A relative link moved from bin/x to usr/bin/x must still point at the same file. */
function retarget(from: string, to: string, target: string): string {
  if (from === to || target.startsWith("/")) return target;
  const pointsAt = posix.resolve("/", posix.dirname(from), target).slice(1);
  return posix.relative(posix.dirname(`/${to}`), `/${usrMerged(pointsAt)}`);
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function conflict(path: string, pkg: string, owners: Map<string, string>): Error {
  return new Error(`${pkg} and ${owners.get(path) ?? "another package"} both ship ${path}, differently`);
}

/**
 * Newest mtime (seconds) of the regular files under `root`: a SOURCE_DATE_EPOCH that changes only
 * when the packages do. (Directories and symlinks were made by this build, so they carry "now".)
 */
export function newestFileMtime(root: string): number {
  let newest = 0;
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) newest = Math.max(newest, Math.floor(lstatSync(p).mtimeMs / 1000));
    }
  };
  walk(root);
  return newest;
}

/** Writes a file the recipe adds (never one a package ships). */
export function writeRootFile(root: string, rel: string, text: string, mode = 0o644): void {
  const path = join(root, rel);
  if (existsSync(path)) throw new Error(`the recipe writes ${rel}, but a package already ships it`);
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  writeFileSync(path, text);
  chmodSync(path, mode);
}

function link(root: string, rel: string, target: string): void {
  if (lstatOrUndefined(join(root, rel))) throw new Error(`the recipe links ${rel} -> ${target}, but a package already ships ${rel}`);
  symlinkSync(target, join(root, rel));
}

function dir(root: string, rel: string, mode = 0o755): void {
  mkdirSync(join(root, rel), { recursive: true });
  chmodSync(join(root, rel), mode);
}

/**
 * What dpkg's maintainer scripts and base-files would have added: the usrmerge links, sh and awk,
 * cc/c++ when gcc is there, a minimal /etc for name lookups and `id`, and empty mount points.
 */
export function addSystemFiles(root: string): void {
  for (const d of ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64"]) dir(root, d);
  for (const top of MERGED) link(root, top, `usr/${top}`);
  if (!existsSync(join(root, "usr/bin/bash"))) throw new Error("the profile has no bash (usr/bin/bash); /bin/sh needs it");
  link(root, "usr/bin/sh", "bash");
  const awk = ["mawk", "gawk", "original-awk"].find((a) => existsSync(join(root, "usr/bin", a)));
  if (!awk) throw new Error("the profile has no awk (mawk or gawk)");
  link(root, "usr/bin/awk", awk);
  // Debian makes these with update-alternatives; Bazel's C++ autoconfiguration looks for cc.
  if (existsSync(join(root, "usr/bin/gcc"))) link(root, "usr/bin/cc", "gcc");
  if (existsSync(join(root, "usr/bin/g++"))) link(root, "usr/bin/c++", "g++");

  writeRootFile(root, "etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n");
  writeRootFile(root, "etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n");
  writeRootFile(root, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
  writeRootFile(root, "etc/group", "root:x:0:\nnogroup:x:65534:\n");
  // Mount points for whoever chroots into the image as is (the sandbox builds its own root).
  dir(root, "dev");
  dir(root, "proc");
  dir(root, "tmp", 0o1777);
}
