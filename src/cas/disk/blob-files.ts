// The file operations every part of the disk store shares: paths, temporary files, and putting a
// finished file in place. A file enters the store only by link(2) from tmp/ (never a rename over an
// existing file: a rename over a blob that an execroot is hardlinking at that moment makes the link
// fail, since the replaced inode has no links left), so it is visible only when complete.
import { chmod, copyFile, link, unlink } from "node:fs/promises";
import { rmSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { errnoCode, type Logger } from "../../core";
import { TMP_DIR } from "./layout";
import type { DiskSpace } from "./space";

export class BlobFiles {
  constructor(
    readonly root: string,
    readonly space: DiskSpace,
    readonly log: Logger,
    /** Whether we run privileged: adopted outputs are then given to root. */
    readonly privileged: boolean,
  ) {}

  path(key: string): string {
    return join(this.root, key);
  }

  /** A fresh name under tmp/ for a file being written. */
  tempPath(): string {
    return join(this.root, TMP_DIR, randomUUID());
  }

  /** Moves a finished temporary file to key, never over an existing file (the same bytes, then: it is dropped). */
  async place(tmp: string, key: string, size: number): Promise<void> {
    try {
      await link(tmp, this.path(key));
    } catch (err) {
      if (errnoCode(err) !== "EEXIST") throw err;
    }
    await unlink(tmp);
    this.space.add(key, size);
  }

  /** Copies a file into the store at key (through tmp/, so it appears whole), read-only with mode. */
  async placeCopy(from: string, key: string, mode: number, size: number): Promise<void> {
    const tmp = this.tempPath();
    try {
      await copyFile(from, tmp);
      await chmod(tmp, mode);
      await this.place(tmp, key, size);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
  }

  /** Removes a file whose bytes no longer match its name's digest. */
  discardDamaged(key: string): undefined {
    unlink(this.path(key)).catch(() => {});
    this.space.forget(key, "is damaged on disk (content does not match its digest); removed");
    return undefined;
  }

  /** A file the index counted is gone from disk (removed from outside, or a late eviction). */
  vanished(key: string): undefined {
    this.space.forget(key, "vanished from disk");
    return undefined;
  }
}
