// The mount table of this process (/proc/self/mountinfo), parsed in one place. Each line is
//   id parent major:minor root MOUNTPOINT options [optional fields…] - FSTYPE source superoptions
// and the kernel escapes space, tab, newline and backslash in paths as \040, \011, \012 and \134.
import { readFileSync } from "node:fs";

export interface MountEntry {
  /** Where it is mounted, unescaped. */
  mountPoint: string;
  fsType: string;
  /** The root of the mount within its filesystem ("/" unless a bind of a subtree). */
  root: string;
  source: string;
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    const dash = f.indexOf("-", 6);
    if (dash < 0 || f.length < dash + 3) continue;
    out.push({ root: unescape(f[3]!), mountPoint: unescape(f[4]!), fsType: f[dash + 1]!, source: unescape(f[dash + 2]!) });
  }
  return out;
}

/** This process's mounts, in the kernel's order (a later mount at a point hides an earlier one). */
export function readMounts(): MountEntry[] {
  return parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8"));
}

/** The topmost mount at exactly `path`. */
export function mountAt(path: string, mounts = readMounts()): MountEntry | undefined {
  return mounts.findLast((m) => m.mountPoint === path);
}

/** The mount holding `path`: the longest mount point above it (the later one of equals). */
export function mountHolding(path: string, mounts = readMounts()): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const under = m.mountPoint === "/" || path === m.mountPoint || path.startsWith(`${m.mountPoint}/`);
    if (under && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
