// Reads an action's input root from the CAS into a flat, checked list of what the execroot holds.
// Every name and symlink is validated here, before anything touches the disk, so that nothing an
// action sends can make the execroot reach outside itself. Missing blobs are collected, all of
// them, so one FAILED_PRECONDITION lists everything the client must upload.
import { DirectorySchema, type Digest, type Directory } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError, WIRE_LEN, WireReader, missingBlobsError, slices } from "../core";
import { digestKey, fromWire, missingSubject, type BlobDigest, type BlobStore, type DigestFunctionName } from "../cas";
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

/**
 * A directory below the root. The expansion is depth first, so everything below it lies in one
 * stretch of each of the tree's lists: directories [its index + 1, dirsEnd), files [filesStart,
 * filesEnd), symlinks [symlinksStart, symlinksEnd). A subtree is skipped, or taken, in one step.
 */
export interface InputDir {
  path: string;
  digest: BlobDigest;
  /** Files, directories and symlinks below it, at any depth. */
  nodes: number;
  dirsEnd: number;
  filesStart: number;
  filesEnd: number;
  symlinksStart: number;
  symlinksEnd: number;
}

export interface InputTree {
  /** Every directory below the root, parents before children ("a", "a/b", ...). */
  dirs: InputDir[];
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

/** The entries (files, directories, symlinks) a Directory's encoding holds, counted without decoding it. */
export function countEntries(bytes: Uint8Array): number {
  const r = new WireReader(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), "Directory");
  let entries = 0;
  try {
    while (!r.done) {
      const { field, type } = r.tag();
      r.skip(type);
      if (type === WIRE_LEN && field >= 1 && field <= 3) entries++;
    }
  } catch {
    // Malformed bytes end the count; decoding them says what is wrong.
  }
  return entries;
}

/** Links followed while resolving one path, as the kernel allows (MAXSYMLINKS). */
const MAX_LINK_HOPS = 40;

/**
 * Resolves every relative symlink's target against the tree itself, following the tree's other
 * symlinks as the kernel would: none may lead above the execroot. The textual check on each target
 * alone lets a chain through (`d/s -> .` and `d/l -> s/../../usr` reach the sandbox's /usr).
 * Absolute targets are allowed (they name the sandbox's own files), and so is a path that leaves
 * the tree's known entries (what is not there cannot lead anywhere). Neither is followed further
 * ("ends"), nor a loop.
 */
async function checkSymlinks(symlinks: InputSymlink[], pause: () => Promise<void> | undefined): Promise<void> {
  const targets = new Map(symlinks.map((s) => [s.path, s.target]));
  /** Each link's resolution, once: the path it leads to, or "ends" (absolute, or a loop). */
  const resolved = new Map<string, string[] | "ends">();
  const resolving = new Set<string>();
  const escape = (link: string) => new StatusError(Code.INVALID_ARGUMENT, `symlink "${link}" leads outside the execroot (resolved through the input tree's symlinks)`);

  const resolveLink = (path: string, hops: number, from: string): string[] | "ends" => {
    const known = resolved.get(path);
    if (known) return known;
    // A loop (or too long a chain) resolves to nothing in the kernel (ELOOP): it cannot lead out.
    if (hops > MAX_LINK_HOPS || resolving.has(path)) return "ends";
    resolving.add(path);
    const target = targets.get(path)!;
    const parent = path.split("/").slice(0, -1);
    const r = target.startsWith("/") ? "ends" : walk(parent, target, hops + 1, from);
    resolving.delete(path);
    resolved.set(path, r);
    return r;
  };

  /** Follows `target` from the directory `base` (its components); the components reached. */
  const walk = (base: string[], target: string, hops: number, from: string): string[] | "ends" => {
    const parts = [...base];
    for (const seg of target.split("/")) {
      if (seg === "" || seg === ".") continue;
      if (seg === "..") {
        if (parts.length === 0) throw escape(from);
        parts.pop();
        continue;
      }
      parts.push(seg);
      const here = parts.join("/");
      if (!targets.has(here)) continue;
      const r = resolveLink(here, hops, from);
      if (r === "ends") return r;
      parts.splice(0, parts.length, ...r);
    }
    return parts;
  };

  for (const s of symlinks) {
    resolveLink(s.path, 0, s.path);
    await pause();
  }
}

const tooMany = () => new StatusError(Code.INVALID_ARGUMENT, `the input tree has more than ${MAX_INPUT_NODES} files, directories and symlinks`);
const tooDeep = (where: string) => new StatusError(Code.INVALID_ARGUMENT, `${where}: the input tree is deeper than ${MAX_INPUT_DEPTH} directories`);

export async function readInputTree(blobs: BlobStore, messages: MessageCache, fn: DigestFunctionName, root: Digest | undefined): Promise<InputTree> {
  const missing = new Set<string>();
  const pause = slices(5000);

  // First each distinct Directory once: how many entries the tree expands to and how deep it goes.
  // A few shared blobs can describe an exponentially large tree, and one blob a million entries:
  // both are refused here, the latter before it is decoded, and nothing has been expanded yet.
  const dirs = new Map<string, Directory | undefined>();
  const measured = new Map<string, { nodes: number; height: number }>();
  let distinctEntries = 0;
  const measure = async (d: BlobDigest, prefix: string, depth: number): Promise<{ nodes: number; height: number }> => {
    const key = digestKey(d);
    const known = measured.get(key);
    if (known) return known;
    const where = prefix === "" ? "input root" : `input directory "${prefix}"`;
    if (depth > MAX_INPUT_DEPTH) throw tooDeep(where);
    await pause();
    const dir = await messages.get(DirectorySchema, d, (bytes) => {
      if (distinctEntries + countEntries(bytes) > MAX_INPUT_NODES) throw tooMany();
    });
    dirs.set(key, dir);
    if (!dir) {
      missing.add(missingSubject(d));
      return { nodes: 0, height: 0 };
    }
    const entries = dir.files.length + dir.directories.length + dir.symlinks.length;
    distinctEntries += entries;
    if (distinctEntries > MAX_INPUT_NODES) throw tooMany();
    const m = { nodes: entries, height: 0 };
    for (const sub of dir.directories) {
      const path = prefix === "" ? sub.name : `${prefix}/${sub.name}`;
      const below = await measure(fromWire(fn, sub.digest, `directory "${path}"`), path, depth + 1);
      m.nodes += below.nodes;
      m.height = Math.max(m.height, below.height + 1);
      if (m.nodes > MAX_INPUT_NODES) throw tooMany();
      if (depth + m.height > MAX_INPUT_DEPTH) throw tooDeep(where);
    }
    measured.set(key, m);
    return m;
  };
  const rootDigest = fromWire(fn, root, "Action.input_root_digest");
  await measure(rootDigest, "", 0);

  // Then the expansion, known to be bounded: every name and path checked, in slices.
  const tree: InputTree = { dirs: [], files: [], symlinks: [] };
  const expand = async (d: BlobDigest, prefix: string) => {
    const where = prefix === "" ? "input root" : `input directory "${prefix}"`;
    const dir = dirs.get(digestKey(d));
    if (!dir) return; // missing, and listed
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
      await pause();
    }
    for (const s of dir.symlinks) {
      const path = claim(s.name);
      // An absolute target is allowed (we advertise ALLOWED): inside the sandbox it names the
      // sandbox's own files, and the server itself never follows a symlink in the execroot (see
      // MergedView and makeWantedDirs). A relative one, resolved from the link's own directory, may
      // not climb above the execroot (checked on the text).
      if (s.target === "" || s.target.includes("\0")) throw new StatusError(Code.INVALID_ARGUMENT, `symlink "${path}" has an empty or invalid target`);
      if (!s.target.startsWith("/")) normalizeInside(s.target, `symlink "${path}" target`, prefix);
      tree.symlinks.push({ path, target: s.target });
    }
    for (const sub of dir.directories) {
      const path = claim(sub.name);
      const digest = fromWire(fn, sub.digest, `directory "${path}"`);
      const node: InputDir = {
        path,
        digest,
        nodes: measured.get(digestKey(digest))?.nodes ?? 0,
        dirsEnd: 0,
        filesStart: tree.files.length,
        filesEnd: 0,
        symlinksStart: tree.symlinks.length,
        symlinksEnd: 0,
      };
      tree.dirs.push(node);
      await pause();
      await expand(digest, path);
      node.dirsEnd = tree.dirs.length;
      node.filesEnd = tree.files.length;
      node.symlinksEnd = tree.symlinks.length;
    }
  };
  await expand(rootDigest, "");
  await checkSymlinks(tree.symlinks, pause);
  for (const d of await blobs.findMissing(tree.files.map((f) => f.digest))) missing.add(missingSubject(d));
  if (missing.size > 0) {
    throw missingBlobsError(`${missing.size} input blobs are not in the CAS`, [...missing]);
  }
  return tree;
}
