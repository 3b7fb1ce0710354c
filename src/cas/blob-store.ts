// The storage seam: what the services and the executor ask of a content-addressable store, in the
// spirit of Buildbarn's BlobAccess. A store verifies what it takes in and what it gives out (a blob
// is only ever seen whole and matching its digest), so nothing above re-checks. Implementations:
// DiskBlobStore (cas/disk); a tier or a view can wrap one and override what it changes.
import type { BlobDigest } from "./digest";

export interface BlobStore {
  /**
   * The digests among `digests` that are not stored (the empty blob always is), the same objects
   * in the same order. A use of those that are.
   */
  findMissing(digests: readonly BlobDigest[]): Promise<BlobDigest[]>;
  /** A whole blob, checked against its digest; undefined when it is missing (or was found damaged, and dropped). */
  get(d: BlobDigest): Promise<Uint8Array | undefined>;
  /**
   * The blob's bytes from `offset`, at most `limit` of them (0: to the end), in chunks of at most
   * `chunkBytes`; undefined when missing. A whole read is checked as it goes: damage ends it with
   * DATA_LOSS (and the blob is dropped, so it can be uploaded again).
   */
  read(d: BlobDigest, range: ReadRange): Promise<BlobReader | undefined>;
  /** Stores a blob held in memory after checking it; true when it was not stored before. */
  put(d: BlobDigest, data: Uint8Array): Promise<boolean>;
  /** Starts a streamed upload of d: bytes are checked as they come and stored only once complete. */
  beginWrite(d: BlobDigest): Promise<BlobWriter>;
}

export interface ReadRange {
  offset: number;
  /** Bytes to read at most; 0 means to the end. */
  limit: number;
  chunkBytes: number;
}

export interface BlobReader extends AsyncIterable<Uint8Array> {
  /** Ends the read early (the client went away); iterating to the end closes it too. */
  close(): Promise<void>;
}

export interface BlobWriter {
  /** Bytes taken so far: where a resumed upload continues. */
  readonly committedSize: number;
  /** True once the blob is stored by some other way (another upload, an action's output): stop writing. */
  readonly superseded: boolean;
  /** Takes the next bytes; INVALID_ARGUMENT beyond the digest's size. */
  write(chunk: Uint8Array): Promise<void>;
  /** Checks size and hash and makes the blob visible; INVALID_ARGUMENT on a mismatch, storing nothing. */
  commit(): Promise<void>;
  /** Discards what was written; harmless after commit. */
  abort(): Promise<void>;
}

/**
 * A store whose blobs are files on this machine, as execution needs them: execroots are built from
 * links to them, and an action's outputs are taken in without copying.
 */
export interface LocalBlobFiles extends BlobStore {
  /** The biggest blob it can hold at all (its whole budget). */
  readonly capacityBytes: number;
  /** Keeps these blobs (when stored) from eviction until the returned function is called. */
  pin(digests: readonly BlobDigest[]): () => void;
  /** Makes `dst` the stored blob, read-only (and executable if asked), without copying where it can. */
  linkTo(d: BlobDigest, dst: string, executable: boolean): Promise<void>;
  /** Takes the file at `path`, already hashed to d, into the store; a file with other links is copied. */
  adopt(d: BlobDigest, path: string, links: number): Promise<void>;
}
