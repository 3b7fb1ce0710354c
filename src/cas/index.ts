// cas/: content-addressable storage and the action cache. What other folders may use.
export type { BlobReader, BlobStore, BlobWriter, LocalBlobFiles, ReadRange } from "./blob-store";
export type { ActionCache } from "./action-cache";
export { CompleteResults, checkOutputPaths } from "./action-cache";
export {
  DIGEST_FUNCTIONS,
  DigestFunction,
  EMPTY_HASH,
  SUPPORTED_FUNCTIONS,
  blobDigest,
  digestOnWire,
  digestKey,
  emptyDigest,
  formatDigest,
  fromWire,
  functionValue,
  missingSubject,
  resolveFunction,
  toWire,
  type BlobDigest,
  type DigestFunctionName,
} from "./digest";
export { inlineBlobs, type InlineRequest } from "./inline";
export { forEachDirectoryFile, forEachTreeFile, treePages, type TreePage } from "./tree";
export { openDiskStore, type DiskStore, type DiskStoreOptions, type StoreUsage } from "./disk";
