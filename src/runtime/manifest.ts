// The contract between the runtime recipe (runtimes/build.ts) and the loader: the manifest at the
// root of every runtime image; and, for a root without one, what its glibc says of it.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** File name of the manifest at the runtime root. */
export const MANIFEST_FILE = "actiond-runtime.json";

export interface RuntimeManifest {
  /** The profile it was built from ("base", "cc"). */
  name: string;
  /** What an action asks for with the `libc` platform property, e.g. "glibc2.36". */
  libc: string;
  /** "x86_64" or "aarch64". */
  arch: string;
  /** Debian release the packages come from, e.g. "12". */
  debian: string;
  /** Debian package name → version, sorted by name. */
  packages: Record<string, string>;
  /** Every timestamp in the image (seconds since the epoch). */
  sourceDateEpoch: number;
}

/** Reads `<root>/actiond-runtime.json`; undefined when there is none. Throws when it is malformed. */
export function readManifest(root: string): RuntimeManifest | undefined {
  let text: string;
  try {
    text = readFileSync(join(root, MANIFEST_FILE), "utf8");
  } catch {
    return undefined;
  }
  const m = JSON.parse(text) as Partial<RuntimeManifest>;
  if (typeof m.name !== "string" || typeof m.libc !== "string" || typeof m.arch !== "string") {
    throw new Error(`${join(root, MANIFEST_FILE)}: needs string fields name, libc and arch`);
  }
  return m as RuntimeManifest;
}

/**
 * For a root without a manifest: finds `usr/lib/<triplet>/libc.so.6` (or under `lib/`) and reads the
 * glibc version from the banner compiled into it. Returns the libc ("glibc2.36") and the arch taken
 * from the triplet, or undefined when there is no glibc.
 */
export function probeLibc(root: string): { libc: string; arch: string } | undefined {
  for (const dir of ["usr/lib", "lib"]) {
    let entries: string[];
    try {
      entries = readdirSync(join(root, dir));
    } catch {
      continue;
    }
    for (const triplet of entries.filter((e) => e.endsWith("-linux-gnu")).sort()) {
      let bytes: Buffer;
      try {
        bytes = readFileSync(join(root, dir, triplet, "libc.so.6"));
      } catch {
        continue;
      }
      // glibc embeds "GNU C Library (...) stable release version 2.36." in libc.so.6.
      const m = /release version (\d+\.\d+)/.exec(bytes.toString("latin1"));
      if (m) return { libc: `glibc${m[1]}`, arch: triplet.split("-")[0] ?? "unknown" };
    }
  }
  return undefined;
}
