// Walking Directory graphs stored in the CAS: GetTree pages and the blobs a Tree references.
import { fromBinary } from "@bufbuild/protobuf";
import {
  DirectorySchema,
  TreeSchema,
  type Digest,
  type Directory,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError } from "../rpc/status";
import { digestKey, toBlobDigest, type BlobDigest } from "./digest";
import type { DiskCas } from "./disk-cas";

export interface TreePage {
  directories: Directory[];
  nextPageToken: string;
}

export const DEFAULT_TREE_PAGE = 1000;

/**
 * The breadth-first walk from root, in pages. The walk order is deterministic (each directory's
 * children in listing order, each distinct directory once), so a page token is simply the number of
 * directories before that page: a client that resumes with it gets the pages from there on. Missing
 * subtrees are left out, as the API allows.
 */
export async function* treePages(
  cas: DiskCas,
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

  const rootBytes = await cas.read(root);
  if (!rootBytes) throw new StatusError(Code.NOT_FOUND, `root directory ${root.hash}/${root.size} is not in the CAS`);

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
      const d = wireDigest(root, child.digest, `directory "${child.name}"`);
      const key = digestKey(d);
      if (seen.has(key)) continue;
      seen.add(key);
      const childBytes = await cas.read(d);
      if (childBytes) queue.push(childBytes);
    }
  }
  yield { directories: page, nextPageToken: "" };
}

const EMPTY = new Uint8Array(0);

/** Every file blob a stored Tree refers to, or undefined when the Tree itself is missing. */
export async function treeFileDigests(cas: DiskCas, tree: BlobDigest): Promise<BlobDigest[] | undefined> {
  const bytes = await cas.read(tree);
  if (!bytes) return undefined;
  let parsed;
  try {
    parsed = fromBinary(TreeSchema, bytes);
  } catch {
    throw new StatusError(Code.INVALID_ARGUMENT, `blob ${tree.hash}/${tree.size} is not a Tree message`);
  }
  const files: BlobDigest[] = [];
  for (const dir of [parsed.root, ...parsed.children]) {
    for (const f of dir?.files ?? []) files.push(wireDigest(tree, f.digest, `file "${f.name}" in tree`));
  }
  return files;
}

function parseDirectory(bytes: Uint8Array): Directory {
  try {
    return fromBinary(DirectorySchema, bytes);
  } catch {
    throw new StatusError(Code.INVALID_ARGUMENT, "a blob in the tree is not a Directory message");
  }
}

function wireDigest(like: BlobDigest, d: Digest | undefined, what: string): BlobDigest {
  if (!d) throw new StatusError(Code.INVALID_ARGUMENT, `${what} has no digest`);
  return toBlobDigest(like.fn, d.hash, d.sizeBytes, what);
}
