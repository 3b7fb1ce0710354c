// The disk store: blobs and action results under one root and one budget (see layout.ts).
import { systemClock, type Clock, type Logger } from "../../core";
import { DiskActionResults } from "./action-results";
import { BlobFiles } from "./blob-files";
import { DiskBlobStore } from "./disk-blob-store";
import { scanStore } from "./layout";
import { DiskSpace } from "./space";

export interface DiskStoreOptions {
  root: string;
  /** --max-cas-size: blobs and action results together. */
  maxBytes: number;
  log: Logger;
  /** Whether this process is privileged (outputs taken into the store are then given to root). */
  privileged: boolean;
  clock?: Clock;
}

export interface DiskStore {
  blobs: DiskBlobStore;
  /** Entries as stored, their blobs unchecked: wrap in CompleteResults to serve them. */
  actionResults: DiskActionResults;
  /** What the store holds against its budget, and how many files it evicted since start. */
  usage(): StoreUsage;
  /** Waits for background writes (recency) to reach the disk. */
  close(): Promise<void>;
}

export interface StoreUsage {
  bytes: number;
  maxBytes: number;
  files: number;
  evictions: number;
}

/** Opens the store under root, rebuilding its index from the directories (and evicting if over budget). */
export function openDiskStore(opts: DiskStoreOptions): DiskStore {
  const space = new DiskSpace(opts.root, opts.maxBytes, opts.log, opts.clock ?? systemClock);
  const scan = scanStore(opts.root, opts.log);
  for (const f of scan.files) space.add(f.key, f.size, f.mtimeMs);
  space.pin(scan.emptyBlobs);
  space.evictWhileOver();
  opts.log.info(`store: ${scan.blobs} blobs and ${scan.actionResults} action results, ${space.storedBytes} bytes of ${opts.maxBytes} (--max-cas-size)`);
  const files = new BlobFiles(opts.root, space, opts.log, opts.privileged);
  return {
    blobs: new DiskBlobStore(files),
    actionResults: new DiskActionResults(files),
    usage: () => ({ bytes: space.storedBytes, maxBytes: opts.maxBytes, files: space.storedFiles, evictions: space.evictions }),
    close: () => space.flush(),
  };
}

export type { DiskBlobStore, DiskActionResults };
