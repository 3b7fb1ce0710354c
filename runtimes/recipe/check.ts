// Checks on the finished root, as the dynamic loader and a chrooted shell would see it: every
// symlink resolves, and every ELF file finds its interpreter and each DT_NEEDED library.
import { lstatSync, readdirSync, readlinkSync } from "node:fs";
import { join, posix } from "node:path";
import type { Arch } from "../../src/core";
import { readElfDeps } from "./elf";

/** Follows `path` (absolute, as seen inside the image) with `root` as "/"; the host path of what it names, or undefined. */
export function resolveInRoot(root: string, path: string, hops = 0): string | undefined {
  const parts = path.split("/").filter((p) => p && p !== ".");
  let cur = "";
  for (const [i, part] of parts.entries()) {
    if (part === "..") {
      cur = posix.dirname(cur) === "." ? "" : posix.dirname(cur);
      continue;
    }
    const next = cur ? `${cur}/${part}` : part;
    let st;
    try {
      st = lstatSync(join(root, next));
    } catch {
      return undefined;
    }
    if (st.isSymbolicLink()) {
      if (hops >= 40) return undefined;
      const target = readlinkSync(join(root, next));
      const rest = parts.slice(i + 1).join("/");
      return resolveInRoot(root, `${target.startsWith("/") ? target : `/${cur}/${target}`}/${rest}`, hops + 1);
    }
    cur = next;
  }
  return join(root, cur);
}

/** The loader's search path without ld.so.cache (Debian's glibc: the multiarch dirs, then /lib and /usr/lib). */
const systemDirs = (arch: Arch) => [`/lib/${arch.triplet}`, `/usr/lib/${arch.triplet}`, "/lib", "/usr/lib"];

export interface CheckResult {
  elfFiles: number;
  problems: string[];
}

export function checkRoot(root: string, arch: Arch, required: string[]): CheckResult {
  const problems: string[] = [];
  let elfFiles = 0;
  const walk = (rel: string) => {
    for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
      const path = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(path);
      else if (e.isSymbolicLink()) {
        if (!resolveInRoot(root, path)) problems.push(`${path} -> ${readlinkSync(join(root, path))}: dangling symlink`);
      } else if (e.isFile()) {
        const deps = readElfDeps(join(root, path));
        if (!deps) continue;
        elfFiles++;
        if (deps.machine !== arch.elfMachine) problems.push(`${path}: ELF machine ${deps.machine}, not ${arch.name}`);
        if (deps.interp && !resolveInRoot(root, deps.interp)) problems.push(`${path}: interpreter ${deps.interp} is not in the image`);
        const dirs = [...deps.runpath.map((d) => d.replace(/\$(ORIGIN|\{ORIGIN\})/g, posix.dirname(path))), ...systemDirs(arch)];
        for (const lib of deps.needed) {
          const found = lib.includes("/") ? resolveInRoot(root, lib) : dirs.map((d) => resolveInRoot(root, `${d}/${lib}`)).find(Boolean);
          if (!found) problems.push(`${path}: needs ${lib}, which is not in the image`);
        }
      }
    }
  };
  walk("");
  for (const p of required) if (!resolveInRoot(root, p)) problems.push(`${p}: missing`);
  return { elfFiles, problems };
}
