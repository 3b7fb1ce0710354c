// The action cache seam, and the rule that makes a hit worth having: CompleteResults serves an
// entry only when every blob it references (output files, Tree blobs and every file in them,
// stdout, stderr) is still in the CAS, so eviction turns a hit into a miss, never into a broken hit;
// and it stores only results whose blobs are all there.
import type { ActionResult } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError, missingBlobsError, type Logger } from "../core";
import type { BlobStore } from "./blob-store";
import { formatDigest, fromWire, missingSubject, type BlobDigest } from "./digest";
import { forEachDirectoryFile, forEachTreeFile } from "./tree";

export interface ActionCache {
  /** The result cached for an action, or undefined on a miss. */
  get(action: BlobDigest): Promise<ActionResult | undefined>;
  put(action: BlobDigest, result: ActionResult): Promise<void>;
}

export class CompleteResults implements ActionCache {
  constructor(
    private readonly results: ActionCache,
    private readonly blobs: BlobStore,
    private readonly log: Logger,
  ) {}

  async get(action: BlobDigest): Promise<ActionResult | undefined> {
    const result = await this.results.get(action);
    if (!result) return undefined;
    let missing: BlobDigest[];
    try {
      missing = await this.missingBlobs(action, result);
    } catch (err) {
      // A stored result that names a blob it cannot be checked against (a Tree that is not one) is no hit.
      if (!(err instanceof StatusError) || err.code !== Code.INVALID_ARGUMENT) throw err;
      this.log.warn(`AC entry ${formatDigest(action)} cannot be checked, so it is a miss: ${err.message}`);
      return undefined;
    }
    if (missing.length > 0) {
      this.log.debug(`AC entry ${formatDigest(action)} references ${missing.length} blobs no longer in the CAS; a miss`);
      return undefined;
    }
    return result;
  }

  /** Stores a result after checking its output paths, and that every blob it references is in the CAS. */
  async put(action: BlobDigest, result: ActionResult): Promise<void> {
    checkOutputPaths(result);
    const missing = await this.missingBlobs(action, result);
    if (missing.length > 0) {
      throw missingBlobsError(`the action result references ${missing.length} blobs that are not in the CAS`, missing.map(missingSubject));
    }
    await this.results.put(action, result);
  }

  /**
   * Stores a result whose every blob the caller itself stored and holds pinned (the executor's own
   * outputs): only its output paths are checked. Checking its blobs again meant reading its Trees
   * back whole (80 MB for a directory of a million files) to learn what the caller already knew.
   */
  async putStored(action: BlobDigest, result: ActionResult): Promise<void> {
    checkOutputPaths(result);
    await this.results.put(action, result);
  }

  /** Each referenced blob that is not in the CAS (of the action's digest function), once. */
  private async missingBlobs(action: BlobDigest, r: ActionResult): Promise<BlobDigest[]> {
    const fn = action.fn;
    const missing = new Map<string, BlobDigest>();
    const note = (ds: BlobDigest[]) => ds.forEach((d) => missing.set(formatDigest(d), d));
    // Files below output directories are looked up a chunk at a time: a Tree may name a million.
    const lookUp = async (files: BlobDigest[]) => note(await this.blobs.findMissing(files));
    const direct: BlobDigest[] = [];
    for (const f of r.outputFiles) direct.push(fromWire(fn, f.digest, `output file "${f.path}"`));
    if (r.stdoutDigest) direct.push(fromWire(fn, r.stdoutDigest, "stdout_digest"));
    if (r.stderrDigest) direct.push(fromWire(fn, r.stderrDigest, "stderr_digest"));
    for (const dir of r.outputDirectories) {
      // A Tree, or Directory blobs from a root (REAPI 2.8 output_directory_format), or both.
      if (dir.treeDigest || !dir.rootDirectoryDigest) {
        const tree = fromWire(fn, dir.treeDigest, `output directory "${dir.path}"`);
        if (!(await forEachTreeFile(this.blobs, tree, lookUp))) note([tree]);
      }
      if (dir.rootDirectoryDigest) {
        const root = fromWire(fn, dir.rootDirectoryDigest, `output directory "${dir.path}" root_directory_digest`);
        note(await forEachDirectoryFile(this.blobs, root, lookUp));
      }
    }
    await lookUp(direct);
    return [...missing.values()];
  }
}

/**
 * Output paths are relative to the action's working directory and stay below it: a result naming
 * "../../etc/passwd" or "/etc/passwd" would have every client that takes it write there.
 */
export function checkOutputPaths(r: ActionResult): void {
  const entries: [string, string][] = [
    ...r.outputFiles.map((f): [string, string] => ["output file", f.path]),
    ...r.outputDirectories.map((d): [string, string] => ["output directory", d.path]),
    ...[...r.outputSymlinks, ...r.outputFileSymlinks, ...r.outputDirectorySymlinks].map((s): [string, string] => ["output symlink", s.path]),
  ];
  for (const [what, path] of entries) {
    let depth = 0;
    let escapes = path === "" || path.startsWith("/") || path.includes("\0");
    for (const seg of path.split("/")) {
      if (seg === "..") depth--;
      else if (seg !== "" && seg !== ".") depth++;
      if (depth < 0) escapes = true;
    }
    if (escapes) throw new StatusError(Code.INVALID_ARGUMENT, `${what} path "${path}" must be a relative path that stays inside the working directory`);
  }
}
