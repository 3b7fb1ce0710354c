// Builds an action's execroot on disk from its checked input tree: directories, files hardlinked
// from the CAS (no data copies), symlinks, the working directory and every output's parent.
import { chmodSync, mkdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { Code, StatusError, missingBlobsError, slices } from "../core";
import { missingSubject, type LocalBlobFiles } from "../cas";
import type { InputTree } from "./input-tree";

/**
 * Materialises tree under dir (which exists and is empty). Directories are writable by everyone:
 * the action (uid 65534) creates its outputs next to its inputs, and the work folder above is
 * private to the server. Input files stay read-only.
 */
export async function buildExecroot(files: LocalBlobFiles, tree: InputTree, dir: string): Promise<void> {
  chmodSync(dir, 0o777);
  // Hundreds of thousands of entries are possible: made in slices of a few milliseconds (a mkdir
  // and a chmod each), with other calls in between.
  const pause = slices(250);
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

/** What already occupies each execroot path, for creating directories the inputs did not bring. */
export class ExecrootPaths {
  private readonly dirs: Set<string>;
  private readonly others: Map<string, string>;

  constructor(
    private readonly root: string,
    tree: InputTree,
  ) {
    this.dirs = new Set(["", ...tree.dirs]);
    this.others = new Map<string, string>();
    for (const f of tree.files) this.others.set(f.path, "input file");
    for (const s of tree.symlinks) this.others.set(s.path, "input symlink");
  }

  /**
   * Creates the directories leading to path (and path itself with self), never through a symlink
   * or a file of the inputs, so nothing is ever created outside the execroot.
   */
  makeDirs(path: string, self: boolean, what: string): void {
    const parts = path === "" ? [] : path.split("/");
    const upto = self ? parts.length : parts.length - 1;
    let rel = "";
    for (let i = 0; i < upto; i++) {
      rel = rel === "" ? parts[i]! : `${rel}/${parts[i]}`;
      if (this.dirs.has(rel)) continue;
      const other = this.others.get(rel);
      if (other) throw new StatusError(Code.INVALID_ARGUMENT, `${what} "${path}" goes through the ${other} "${rel}"`);
      makeDir(join(this.root, rel));
      this.dirs.add(rel);
    }
  }
}

function makeDir(path: string): void {
  mkdirSync(path);
  chmodSync(path, 0o777);
}
