// Walking Directory graphs stored in the CAS: GetTree pages and the blobs a Tree references.
import { fromBinary } from "@bufbuild/protobuf";
import { DirectorySchema, type Directory } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError, WIRE_LEN, WireReader, slices } from "../core";
import type { BlobStore } from "./blob-store";
import { digestKey, digestOnWire, formatDigest, fromWire, type BlobDigest } from "./digest";

export interface TreePage {
  directories: Directory[];
  nextPageToken: string;
}

const DEFAULT_TREE_PAGE = 1000;

/**
 * The breadth-first walk from root, in pages. The walk order is deterministic (each directory's
 * children in listing order, each distinct directory once), so a page token is simply the number of
 * directories before that page: a client that resumes with it gets the pages from there on. Missing
 * subtrees are left out, as the API allows.
 */
export async function* treePages(
  blobs: BlobStore,
  root: BlobDigest,
  pageSize: number,
  pageToken: string,
  maxPageBytes: number,
): AsyncGenerator<TreePage> {
  let skip = 0;
  if (pageToken !== "") {
    if (!/^\d{1,9}$/.test(pageToken)) throw new StatusError(Code.INVALID_ARGUMENT, `page_token "${pageToken}" was not issued by this server`);
    skip = Number(pageToken);
  }
  if (pageSize < 0) throw new StatusError(Code.INVALID_ARGUMENT, `page_size ${pageSize} is negative`);
  const limit = pageSize === 0 ? DEFAULT_TREE_PAGE : Math.min(pageSize, DEFAULT_TREE_PAGE);

  const rootBytes = await blobs.get(root);
  if (!rootBytes) throw new StatusError(Code.NOT_FOUND, `root directory ${formatDigest(root)} is not in the CAS`);

  const seen = new Set<string>([digestKey(root)]);
  const queue: Uint8Array[] = [rootBytes];
  let page: Directory[] = [];
  let pageBytes = 0;
  let index = 0;
  for (let head = 0; head < queue.length; head++) {
    const bytes = queue[head]!;
    queue[head] = EMPTY;
    const dir = parseDirectory(bytes);
    if (index >= skip) {
      if (page.length >= limit || (page.length > 0 && pageBytes + bytes.length > maxPageBytes)) {
        yield { directories: page, nextPageToken: String(index) };
        page = [];
        pageBytes = 0;
      }
      page.push(dir);
      pageBytes += bytes.length + 8;
    }
    index++;
    for (const child of dir.directories) {
      const d = fromWire(root.fn, child.digest, `directory "${child.name}"`);
      const key = digestKey(d);
      if (seen.has(key)) continue;
      seen.add(key);
      const childBytes = await blobs.get(d);
      if (childBytes) queue.push(childBytes);
    }
  }
  yield { directories: page, nextPageToken: "" };
}

const EMPTY = new Uint8Array(0);

/** File digests are handed on in chunks of at most this many: a million never live at once. */
const FILE_CHUNK = 10_000;

/** Gathers digests into chunks of distinct ones and hands each full chunk on. */
class FileChunks {
  private chunk = new Map<string, BlobDigest>();
  constructor(private readonly onChunk: (files: BlobDigest[]) => Promise<void>) {}

  async add(d: BlobDigest): Promise<void> {
    this.chunk.set(formatDigest(d), d);
    if (this.chunk.size >= FILE_CHUNK) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.chunk.size === 0) return;
    const files = [...this.chunk.values()];
    this.chunk = new Map();
    await this.onChunk(files);
  }
}

/**
 * Hands every file blob a stored Tree refers to to `onChunk`, some thousands at a time (the same
 * digest at most once per chunk); false when the Tree itself is missing. Read from the Tree's bytes
 * where they lie (a Tree of a million files, decoded, was a million objects and a second of the
 * event loop): Tree 1 root, 2 children (Directory); Directory 1 files (FileNode); FileNode 2 digest.
 */
export async function forEachTreeFile(blobs: BlobStore, tree: BlobDigest, onChunk: (files: BlobDigest[]) => Promise<void>): Promise<boolean> {
  const bytes = await blobs.get(tree);
  if (!bytes) return false;
  const what = `blob ${formatDigest(tree)} (a Tree)`;
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunks = new FileChunks(onChunk);
  const pause = slices(10_000);
  const t = new WireReader(buf, what);
  while (!t.done) {
    const { field, type } = t.tag();
    if ((field !== 1 && field !== 2) || type !== WIRE_LEN) {
      t.skip(type);
      continue;
    }
    const dir = t.message();
    while (!dir.done) {
      const d = dir.tag();
      if (d.field !== 1 || d.type !== WIRE_LEN) {
        dir.skip(d.type);
        continue;
      }
      const node = dir.message();
      while (!node.done) {
        const n = node.tag();
        if (n.field === 2 && n.type === WIRE_LEN) await chunks.add(digestOnWire(node.message(), tree.fn, `a file in ${what}`));
        else node.skip(n.type);
      }
      await pause();
    }
  }
  await chunks.flush();
  return true;
}

function parseDirectory(bytes: Uint8Array): Directory {
  try {
    return fromBinary(DirectorySchema, bytes);
  } catch {
    throw new StatusError(Code.INVALID_ARGUMENT, "a blob in the tree is not a Directory message");
  }
}

/**
 * Hands every file blob below a root Directory stored as Directory blobs (an OutputDirectory's
 * root_directory_digest) to `onChunk`, as forEachTreeFile does, each distinct directory read once;
 * returns the Directory blobs that are not there (their subtrees cannot be known).
 */
export async function forEachDirectoryFile(blobs: BlobStore, root: BlobDigest, onChunk: (files: BlobDigest[]) => Promise<void>): Promise<BlobDigest[]> {
  const chunks = new FileChunks(onChunk);
  const missingDirectories: BlobDigest[] = [];
  const seen = new Set<string>([digestKey(root)]);
  const queue = [root];
  const pause = slices(10_000);
  for (let head = 0; head < queue.length; head++) {
    const d = queue[head]!;
    await pause();
    const bytes = await blobs.get(d);
    if (!bytes) {
      missingDirectories.push(d);
      continue;
    }
    const dir = parseDirectory(bytes);
    for (const f of dir.files) {
      await chunks.add(fromWire(root.fn, f.digest, `file "${f.name}" in directory ${formatDigest(d)}`));
      await pause();
    }
    for (const sub of dir.directories) {
      const child = fromWire(root.fn, sub.digest, `directory "${sub.name}" in directory ${formatDigest(d)}`);
      if (!seen.has(digestKey(child))) {
        seen.add(digestKey(child));
        queue.push(child);
      }
    }
  }
  await chunks.flush();
  return missingDirectories;
}
