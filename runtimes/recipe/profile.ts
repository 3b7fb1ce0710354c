// Package lists: runtimes/profiles/<name>.txt, one Debian package per line.
//   # comment             ignored
//   include base          every package of profiles/base.txt
//   pkg [x86_64]          only when building for that architecture (our arch names)
import { readFileSync } from "node:fs";
import { join } from "node:path";

export const PROFILES_DIR = join(import.meta.dir, "../profiles");

/** The profile's packages for `arch`, sorted and unique, and the list files it read (for the input hash). */
export function readProfile(name: string, arch: string, seen: string[] = []): { packages: string[]; files: string[] } {
  if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`bad profile name: ${name}`);
  if (seen.includes(name)) throw new Error(`profile include cycle: ${[...seen, name].join(" -> ")}`);
  const file = join(PROFILES_DIR, `${name}.txt`);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new Error(`no such profile: ${name} (expected ${file})`);
  }
  const packages = new Set<string>();
  const files = [file];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.replace(/#.*/, "").trim();
    if (!line) continue;
    const inc = /^include\s+(\S+)$/.exec(line);
    if (inc) {
      const sub = readProfile(inc[1] as string, arch, [...seen, name]);
      sub.packages.forEach((p) => packages.add(p));
      files.push(...sub.files);
      continue;
    }
    const m = /^([a-z0-9][a-z0-9+.-]+)(?:\s+\[([a-z0-9_ ]+)\])?$/.exec(line);
    if (!m) throw new Error(`${file}:${i + 1}: cannot read "${raw}" (want: package [arch ...])`);
    const only = m[2]?.split(/\s+/);
    if (!only || only.includes(arch)) packages.add(m[1] as string);
  }
  return { packages: [...packages].sort(), files };
}
