// The two ways execution meets the store's files: an execroot's inputs are hardlinks to stored
// blobs (no data copied), and an action's outputs are taken in by hardlink (hashed, never copied).
import { chmod, chown, copyFile, link } from "node:fs/promises";
import { linkSync } from "node:fs";
import { errnoCode, missingBlobsError } from "../../core";
import { formatDigest, missingSubject, type BlobDigest } from "../digest";
import type { BlobFiles } from "./blob-files";
import { storeKey } from "./layout";

/**
 * Hardlinks a stored blob, or its executable twin (made on first use), to dst. The caller pins the
 * blob first. Falls back to a copy where a link is impossible (too many links to one inode,
 * another filesystem).
 */
export async function linkBlob(files: BlobFiles, d: BlobDigest, dst: string, executable: boolean): Promise<void> {
  const key = storeKey("cas", d, executable);
  if (executable && !files.space.use(key)) {
    files.space.reserve(d.size, `the executable twin of blob ${formatDigest(d)}`);
    try {
      await files.placeCopy(files.path(storeKey("cas", d)), key, 0o555, d.size);
    } finally {
      files.space.release(d.size);
    }
  }
  try {
    // Synchronous from the use() above: eviction cannot run in between.
    linkSync(files.path(key), dst);
  } catch (err) {
    const code = errnoCode(err);
    if (code === "ENOENT") {
      // Gone from disk behind the index's back: forget it; a twin is made again, a blob is missing.
      files.vanished(key);
      if (executable && files.space.use(storeKey("cas", d))) return linkBlob(files, d, dst, executable);
      throw missingBlobsError(`input blob ${formatDigest(d)} is not in the CAS`, [missingSubject(d)]);
    }
    if (code !== "EMLINK" && code !== "EXDEV") throw err;
    await copyFile(files.path(key), dst);
    await chmod(dst, executable ? 0o555 : 0o444);
  }
}

/**
 * Stores a file already hashed to d without copying it: it is made read-only and ours, then
 * hardlinked into the store, so other output paths naming it still find it. A file with other
 * links (an input hardlinked from the store, an executable twin) is never changed in place: it is
 * copied instead. Nothing to do when the blob is already stored.
 */
export async function adoptFile(files: BlobFiles, d: BlobDigest, path: string, links: number): Promise<void> {
  const key = storeKey("cas", d);
  if (files.space.use(key)) return;
  files.space.reserve(d.size, `output blob ${formatDigest(d)}`);
  try {
    if (links > 1) return await files.placeCopy(path, key, 0o444, d.size);
    if (files.privileged) await chown(path, 0, 0);
    await chmod(path, 0o444);
    try {
      await link(path, files.path(key));
    } catch (err) {
      // Stored meanwhile by another upload or action: the same bytes.
      if (errnoCode(err) !== "EEXIST") throw err;
    }
    files.space.add(key, d.size);
  } finally {
    files.space.release(d.size);
  }
}
