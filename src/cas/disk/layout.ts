// Where things are under --root, and reading that back at start. The directories are the source of
// truth; there is no index file:
//   cas/<fn>/<hash[0:2]>/<hash>-<size>     a read-only blob
//   cas/<fn>/<hash[0:2]>/<hash>-<size>.x   its executable twin (mode 0555), made on first need:
//                                          execroots hardlink files, and a hardlink has no mode of its own
//   ac/<fn>/<hash[0:2]>/<hash>-<size>      an action cache entry, named by the action's digest
//   tmp/                                   files being written; emptied at start
// The size in a blob's name lets the scan drop a file that a power loss left shorter than it should be.
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../core";
import { DIGEST_FUNCTIONS, EMPTY_HASH, type BlobDigest } from "../digest";

export type Kind = "cas" | "ac";

/** A file's place in the store, relative to the root: its key in the disk budget too. */
export function storeKey(kind: Kind, d: BlobDigest, executable = false): string {
  return `${kind}/${d.fn}/${d.hash.slice(0, 2)}/${d.hash}-${d.size}${executable ? ".x" : ""}`;
}

export const TMP_DIR = "tmp";

export interface FoundFile {
  key: string;
  size: number;
  mtimeMs: number;
}

export interface Scan {
  /** Every file of the store, least recently used first. */
  files: FoundFile[];
  /** Keys of the empty blob of each function (always present, never evicted). */
  emptyBlobs: string[];
  blobs: number;
  actionResults: number;
}

const NAME = /^([0-9a-f]{64})-(\d+)(\.x)?$/;

/**
 * Reads the store's directories: empties tmp/, creates what is missing, removes files that do not
 * belong (a wrong name, shard or size), and puts the empty blobs in place. Synchronous calls: at
 * start, speed beats concurrency.
 */
export function scanStore(root: string, log: Logger): Scan {
  rmSync(join(root, TMP_DIR), { recursive: true, force: true });
  mkdirSync(join(root, TMP_DIR), { recursive: true });
  const scan: Scan = { files: [], emptyBlobs: [], blobs: 0, actionResults: 0 };
  for (const kind of ["cas", "ac"] as const) {
    for (const fn of DIGEST_FUNCTIONS) {
      const fnDir = join(root, kind, fn);
      mkdirSync(fnDir, { recursive: true });
      const shards = new Set(readdirSync(fnDir));
      for (let i = 0; i < 256; i++) {
        const shard = i.toString(16).padStart(2, "0");
        if (!shards.has(shard)) mkdirSync(join(fnDir, shard));
      }
      for (const shard of shards) {
        for (const name of readdirSync(join(fnDir, shard))) {
          const key = `${kind}/${fn}/${shard}/${name}`;
          const m = NAME.exec(name);
          const st = statSync(join(root, key), { throwIfNoEntry: false });
          // A blob's size is in its name; an AC entry's name carries the action's size instead.
          const sizeOk = kind === "ac" ? !m?.[3] : st?.size === Number(m?.[2]);
          if (!m || !st?.isFile() || !sizeOk || m[1]!.slice(0, 2) !== shard) {
            log.warn(`removing unexpected file in the store: ${key}`);
            rmSync(join(root, key), { recursive: true, force: true });
            continue;
          }
          scan.files.push({ key, size: st.size, mtimeMs: st.mtimeMs });
          if (kind === "ac") scan.actionResults++;
          else if (!m[3] && m[1] !== EMPTY_HASH[fn]) scan.blobs++;
        }
      }
      if (kind === "cas") {
        // The empty blob always exists; keep it on disk so reads need no special case.
        const empty = storeKey("cas", { fn, hash: EMPTY_HASH[fn], size: 0 });
        if (!scan.files.some((f) => f.key === empty)) {
          writeFileSync(join(root, empty), "", { mode: 0o444 });
          scan.files.push({ key: empty, size: 0, mtimeMs: Date.now() });
        }
        scan.emptyBlobs.push(empty);
      }
    }
  }
  scan.files.sort((a, b) => a.mtimeMs - b.mtimeMs);
  return scan;
}
