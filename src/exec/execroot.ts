// Builds an action's execroot on disk from its checked input tree: directories, files hardlinked
// from the CAS (no data copies), symlinks, the working directory and every output's parent.
import { chmodSync, mkdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { Code, StatusError, missingBlobsError, timeSlices } from "../core";
import { missingSubject, type LocalBlobFiles } from "../cas";
import type { InputTree } from "./input-tree";

/** The longest the event loop is held between turns while entries are made. */
const SLICE_MS = 4;

/**
 * Materialises tree under dir (which exists and is empty). Directories are writable by everyone:
 * the action (uid 65534) creates its outputs next to its inputs, and the work folder above is
 * private to the server. Input files stay read-only.
 */
export async function buildExecroot(files: LocalBlobFiles, tree: InputTree, dir: string): Promise<void> {
  chmodSync(dir, 0o777);
  // Hundreds of thousands of entries are possible: made in slices of a few milliseconds, with other
  // calls in between (counted in time: 250 mkdirs were 5 ms on one disk and 50 ms on this one).
  const pause = timeSlices(SLICE_MS);
  for (const d of tree.dirs) {
    makeDir(join(dir, d));
    await pause();
  }
  const digests = tree.files.map((f) => f.digest);
  const unpin = files.pin(digests);
  try {
    // The blobs were there when the tree was read; any evicted since is MISSING, so Bazel re-uploads.
    const missing = new Set((await files.findMissing(digests)).map(missingSubject));
    if (missing.size > 0) throw missingBlobsError(`${missing.size} input blobs were evicted from the CAS before the action started`, [...missing]);
    for (const f of tree.files) {
      await files.linkTo(f.digest, join(dir, f.path), f.executable);
      await pause();
    }
  } finally {
    unpin();
  }
  for (const s of tree.symlinks) {
    symlinkSync(s.target, join(dir, s.path));
    await pause();
  }
}

/** A directory the action needs that its inputs may not bring: its working directory, an output's parent. */
export interface WantedDir {
  path: string;
  /** Whether path itself is to be a directory (the working directory), or only the ones leading to it. */
  self: boolean;
  what: string;
}

/**
 * Creates the directories leading to each wanted path (and the path itself with self), never
 * through a symlink or a file of the inputs, so nothing is ever created outside the execroot. The
 * tree is scanned once for just the paths in question: a set of every input path was tens of
 * megabytes for a tree of 300,000 directories.
 */
export function makeWantedDirs(root: string, tree: InputTree, wanted: WantedDir[]): void {
  /** The directories a wanted path needs, outermost first: "a/b/c" (not self) needs "a", "a/b". */
  const chain = (w: WantedDir) => {
    const parts = w.path === "" ? [] : w.path.split("/");
    const upto = w.self ? parts.length : parts.length - 1;
    const out: string[] = [];
    let rel = "";
    for (let i = 0; i < upto; i++) {
      rel = rel === "" ? parts[i]! : `${rel}/${parts[i]}`;
      out.push(rel);
    }
    return out;
  };
  const asked = new Set(wanted.flatMap(chain));
  const dirs = new Set<string>([""]);
  const others = new Map<string, string>();
  for (const d of tree.dirs) if (asked.has(d)) dirs.add(d);
  for (const f of tree.files) if (asked.has(f.path)) others.set(f.path, "input file");
  for (const l of tree.symlinks) if (asked.has(l.path)) others.set(l.path, "input symlink");
  for (const w of wanted) {
    for (const rel of chain(w)) {
      if (dirs.has(rel)) continue;
      const other = others.get(rel);
      if (other) throw new StatusError(Code.INVALID_ARGUMENT, `${w.what} "${w.path}" goes through the ${other} "${rel}"`);
      makeDir(join(root, rel));
      dirs.add(rel);
    }
  }
}

function makeDir(path: string): void {
  mkdirSync(path);
  chmodSync(path, 0o777);
}
