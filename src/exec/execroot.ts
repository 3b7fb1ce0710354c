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
 * Materialises tree under dir (which exists and is empty): all of it, or with `within`, the subtree
 * of that directory (its paths made relative to it). The directories listed in `leaveEmpty` (indices
 * into tree.dirs) are made, but not what is below them: an action gets those from shared input
 * directories mounted there (see SharedInputDirs). Directories are writable by everyone: the action
 * (uid 65534) creates its outputs next to its inputs, and the work folder above is private to the
 * server. Input files stay read-only.
 */
export async function buildExecroot(files: LocalBlobFiles, tree: InputTree, dir: string, opts: { within?: number; leaveEmpty?: number[] } = {}): Promise<void> {
  chmodSync(dir, 0o777);
  const top = opts.within === undefined ? undefined : tree.dirs[opts.within]!;
  const strip = top === undefined ? 0 : top.path.length + 1;
  const at = (path: string) => join(dir, path.slice(strip));
  const below = (list: "dirs" | "files" | "symlinks"): [number, number] => {
    if (top === undefined) return [0, tree[list].length];
    if (list === "dirs") return [opts.within! + 1, top.dirsEnd];
    return list === "files" ? [top.filesStart, top.filesEnd] : [top.symlinksStart, top.symlinksEnd];
  };
  const empty = (opts.leaveEmpty ?? []).map((i) => ({ index: i, ...tree.dirs[i]! }));
  // Hundreds of thousands of entries are possible: made in slices of a few milliseconds, with other
  // calls in between (counted in time: 250 mkdirs were 5 ms on one disk and 50 ms on this one).
  const pause = timeSlices(SLICE_MS);
  for (const d of between(tree.dirs, below("dirs"), empty.map((d) => [d.index + 1, d.dirsEnd]))) {
    makeDir(at(d.path));
    await pause();
  }
  const inputs = [...between(tree.files, below("files"), empty.map((d) => [d.filesStart, d.filesEnd]))];
  const digests = inputs.map((f) => f.digest);
  const unpin = files.pin(digests);
  try {
    // The blobs were there when the tree was read; any evicted since is MISSING, so Bazel re-uploads.
    const missing = new Set((await files.findMissing(digests)).map(missingSubject));
    if (missing.size > 0) throw missingBlobsError(`${missing.size} input blobs were evicted from the CAS before the action started`, [...missing]);
    for (const f of inputs) {
      await files.linkTo(f.digest, at(f.path), f.executable);
      await pause();
    }
  } finally {
    unpin();
  }
  for (const s of between(tree.symlinks, below("symlinks"), empty.map((d) => [d.symlinksStart, d.symlinksEnd]))) {
    symlinkSync(s.target, at(s.path));
    await pause();
  }
}

/** The items of list in [start, end) outside the holes (ascending, disjoint [from, to) ranges). */
function* between<T>(list: T[], [start, end]: [number, number], holes: [number, number][]): Generator<T> {
  let h = 0;
  for (let i = start; i < end; i++) {
    while (h < holes.length && holes[h]![1] <= i) h++;
    if (h < holes.length && holes[h]![0] <= i) {
      i = holes[h]![1] - 1;
      continue;
    }
    yield list[i]!;
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
 * Whether the action may create something at or below the input directory `path`: it is, or leads
 * to, a wanted path, or it lies within an output (self false: an output path). Such directories
 * must be in the execroot itself, where outputs are collected from.
 */
export function writesInto(wanted: WantedDir[]): (path: string) => boolean {
  const leading = new Set<string>();
  const outputs = new Set<string>();
  for (const w of wanted) {
    let rel = "";
    for (const part of w.path === "" ? [] : w.path.split("/")) {
      rel = rel === "" ? part : `${rel}/${part}`;
      leading.add(rel);
    }
    if (!w.self) outputs.add(w.path);
  }
  return (path) => {
    if (leading.has(path)) return true;
    for (let at = path; ; at = at.slice(0, at.lastIndexOf("/"))) {
      if (outputs.has(at)) return true;
      if (!at.includes("/")) return false;
    }
  };
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
  for (const d of tree.dirs) if (asked.has(d.path)) dirs.add(d.path);
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
