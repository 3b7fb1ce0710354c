// Reads an action's input root from the CAS into a flat, checked list of what the execroot holds.
// Every name and symlink is validated here, before anything touches the disk, so that nothing an
// action sends can make the execroot reach outside itself. Missing blobs are collected, all of
// them, so one FAILED_PRECONDITION lists everything the client must upload.
import { DirectorySchema, type Digest } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError, missingBlobsError } from "../core";
import { fromWire, missingSubject, type BlobDigest, type BlobStore, type DigestFunctionName } from "../cas";
import type { MessageCache } from "./message-cache";

/** The most files and directories one input tree may expand to. */
const MAX_INPUT_NODES = 1_000_000;
/** The deepest an input tree may go: far beyond real trees, far below what the kernel's path limit allows. */
export const MAX_INPUT_DEPTH = 256;
/** The longest a path in the execroot may be, in bytes (PATH_MAX is 4096, and the work folder's path comes first). */
export const MAX_INPUT_PATH_BYTES = 3072;
/** The longest a name may be, in bytes (NAME_MAX). */
const MAX_NAME_BYTES = 255;

export interface InputFile {
  path: string;
  digest: BlobDigest;
  executable: boolean;
}

export interface InputSymlink {
  path: string;
  target: string;
}

export interface InputTree {
  /** Every directory below the root, parents before children ("a", "a/b", ...). */
  dirs: string[];
  files: InputFile[];
  symlinks: InputSymlink[];
}

/** A single path segment: not empty, not "." or "..", no "/" and no NUL, at most NAME_MAX bytes. */
function checkName(name: string, where: string): void {
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw new StatusError(Code.INVALID_ARGUMENT, `${where}: "${name}" is not a valid file name`);
  }
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
    throw new StatusError(Code.INVALID_ARGUMENT, `${where}: a name of ${Buffer.byteLength(name)} bytes is longer than the ${MAX_NAME_BYTES} a file name may have ("${name.slice(0, 40)}…")`);
  }
}

/**
 * Normalises a relative path and checks it stays inside the tree: no leading "/", no NUL, and
 * ".." never climbs above the start. Returns the clean form ("" for the root itself).
 */
export function normalizeInside(path: string, what: string, base = ""): string {
  if (path.startsWith("/") || path.includes("\0")) {
    throw new StatusError(Code.INVALID_ARGUMENT, `${what} "${path}" must be a relative path inside the execroot`);
  }
  if (Buffer.byteLength(path) > MAX_INPUT_PATH_BYTES || path.split("/").some((seg) => Buffer.byteLength(seg) > MAX_NAME_BYTES)) {
    throw new StatusError(Code.INVALID_ARGUMENT, `${what} "${path.slice(0, 60)}…" is too long (a name may have ${MAX_NAME_BYTES} bytes, a path ${MAX_INPUT_PATH_BYTES})`);
  }
  const parts: string[] = base === "" ? [] : base.split("/");
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (parts.length === 0) throw new StatusError(Code.INVALID_ARGUMENT, `${what} "${path}" reaches outside the execroot`);
      parts.pop();
    } else parts.push(seg);
  }
  return parts.join("/");
}

export async function readInputTree(blobs: BlobStore, messages: MessageCache, fn: DigestFunctionName, root: Digest | undefined): Promise<InputTree> {
  const tree: InputTree = { dirs: [], files: [], symlinks: [] };
  const missing = new Set<string>();

  // A few shared Directory blobs can describe an exponentially large tree: cap what is expanded.
  const checkSize = () => {
    if (tree.dirs.length + tree.files.length + tree.symlinks.length > MAX_INPUT_NODES) {
      throw new StatusError(Code.INVALID_ARGUMENT, `the input tree has more than ${MAX_INPUT_NODES} files, directories and symlinks`);
    }
  };

  // Checked before anything is created: a tree deeper or with longer paths than the execroot can
  // hold would fail half-built (and a deep one is slow to clean up).
  const walk = async (d: BlobDigest, prefix: string, depth: number) => {
    const where = prefix === "" ? "input root" : `input directory "${prefix}"`;
    if (depth > MAX_INPUT_DEPTH) throw new StatusError(Code.INVALID_ARGUMENT, `${where}: the input tree is deeper than ${MAX_INPUT_DEPTH} directories`);
    const dir = await messages.get(DirectorySchema, d);
    if (!dir) {
      missing.add(missingSubject(d));
      return;
    }
    const names = new Set<string>();
    const claim = (name: string) => {
      checkName(name, where);
      if (names.has(name)) throw new StatusError(Code.INVALID_ARGUMENT, `${where}: "${name}" appears twice`);
      names.add(name);
      const path = prefix === "" ? name : `${prefix}/${name}`;
      if (Buffer.byteLength(path) > MAX_INPUT_PATH_BYTES) {
        throw new StatusError(Code.INVALID_ARGUMENT, `${where}: the path "${path.slice(0, 60)}…" is longer than the ${MAX_INPUT_PATH_BYTES} bytes an input path may have`);
      }
      return path;
    };
    for (const f of dir.files) {
      const path = claim(f.name);
      tree.files.push({ path, digest: fromWire(fn, f.digest, `file "${path}"`), executable: f.isExecutable });
    }
    for (const s of dir.symlinks) {
      const path = claim(s.name);
      // An absolute target is allowed (we advertise ALLOWED): inside the sandbox it names the
      // sandbox's own files, and the server itself never follows a symlink in the execroot (see
      // MergedView and ExecrootPaths). A relative one, resolved from the link's own directory, may
      // not climb above the execroot (checked on the text).
      if (s.target === "" || s.target.includes("\0")) throw new StatusError(Code.INVALID_ARGUMENT, `symlink "${path}" has an empty or invalid target`);
      if (!s.target.startsWith("/")) normalizeInside(s.target, `symlink "${path}" target`, prefix);
      tree.symlinks.push({ path, target: s.target });
    }
    checkSize();
    for (const sub of dir.directories) {
      const path = claim(sub.name);
      tree.dirs.push(path);
      checkSize();
      await walk(fromWire(fn, sub.digest, `directory "${path}"`), path, depth + 1);
    }
  };

  await walk(fromWire(fn, root, "Action.input_root_digest"), "", 0);
  for (const d of await blobs.findMissing(tree.files.map((f) => f.digest))) missing.add(missingSubject(d));
  if (missing.size > 0) {
    throw missingBlobsError(`${missing.size} input blobs are not in the CAS`, [...missing]);
  }
  return tree;
}
