// Collects an action's outputs after it ran: files move into the CAS by rename (hashed, never
// copied), directories become Trees, symlinks are reported as symlinks (never followed). Paths are
// resolved one component at a time without following symlinks, so nothing outside the execroot is
// ever read. With an overlay the action's writes are in the upper layer, over the execroot.
import { lstatSync, readdirSync, readlinkSync, type Stats } from "node:fs";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  DigestSchema,
  DirectoryNodeSchema,
  DirectorySchema,
  FileNodeSchema,
  OutputDirectorySchema,
  OutputFileSchema,
  OutputSymlinkSchema,
  SymlinkNodeSchema,
  TreeSchema,
  type ActionResult,
  type Directory,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { EMPTY_HASH, hashBytes, newHasher, type BlobDigest, type DigestFunctionName } from "../cas/digest";
import type { DiskCas } from "../cas/disk-cas";
import { Code, StatusError } from "../rpc/status";

/** What the command asked for, as execroot-relative paths plus the names the client used. */
export interface OutputRequest {
  /** REAPI 2.1 output_paths: the kind is decided by what the action produced. */
  paths: { execPath: string; name: string }[];
  /** Legacy output_files / output_directories (used only when paths is empty). */
  files: { execPath: string; name: string }[];
  directories: { execPath: string; name: string }[];
}

type Found = { path: string; st: Stats } | undefined;

/** Upper layer first (the action's writes), then the execroot; whiteouts hide lower entries. */
class LayeredView {
  constructor(private readonly layers: string[]) {}

  /** lstat of an execroot-relative path through the layers, never through a symlink on the way. */
  find(rel: string): Found {
    for (const layer of this.layers) {
      const found = this.findIn(layer, rel);
      if (found === "whiteout") return undefined;
      if (found) return found;
    }
    return undefined;
  }

  private findIn(layer: string, rel: string): Found | "whiteout" {
    const parts = rel === "" ? [] : rel.split("/");
    let path = layer;
    for (let i = 0; i < parts.length; i++) {
      path = join(path, parts[i]!);
      const st = lstatSync(path, { throwIfNoEntry: false });
      if (!st) return undefined;
      if (isWhiteout(st)) return "whiteout";
      if (i < parts.length - 1 && !st.isDirectory()) return undefined;
      if (i === parts.length - 1) return { path, st };
    }
    const st = lstatSync(path, { throwIfNoEntry: false });
    return st ? { path, st } : undefined;
  }

  /** Entries of a directory across the layers, upper names shadowing lower ones, sorted by UTF-8 bytes. */
  list(rel: string): { name: string; path: string; st: Stats }[] {
    const seen = new Map<string, { name: string; path: string; st: Stats } | null>();
    for (const layer of this.layers) {
      const dir = join(layer, rel);
      const st = lstatSync(dir, { throwIfNoEntry: false });
      if (!st?.isDirectory()) continue;
      for (const name of readdirSync(dir)) {
        if (seen.has(name)) continue;
        const path = join(dir, name);
        const est = lstatSync(path);
        seen.set(name, isWhiteout(est) ? null : { name, path, st: est });
      }
    }
    return [...seen.values()].filter((e) => e !== null).sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  }
}

/** overlayfs marks a deleted lower entry with a 0/0 character device in the upper layer. */
function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

export class OutputCollector {
  private readonly view: LayeredView;

  constructor(
    private readonly cas: DiskCas,
    private readonly fn: DigestFunctionName,
    execroot: string,
    upper: string | undefined,
  ) {
    this.view = new LayeredView(upper ? [upper, execroot] : [execroot]);
  }

  /** Fills the output fields of result. */
  async collect(req: OutputRequest, result: ActionResult): Promise<void> {
    const legacy = req.paths.length === 0;
    const symlink = (name: string, path: string) => create(OutputSymlinkSchema, { path: name, target: readlinkSync(path) });
    const addFile = async (name: string, path: string, st: Stats) => {
      const digest = await this.store(path, st);
      result.outputFiles.push(create(OutputFileSchema, { path: name, digest: wire(digest), isExecutable: isExecutable(st) }));
    };
    const addDir = async (name: string, rel: string) => {
      const treeDigest = await this.storeTree(rel);
      result.outputDirectories.push(create(OutputDirectorySchema, { path: name, treeDigest: wire(treeDigest) }));
    };

    for (const o of legacy ? req.files : req.paths) {
      const found = this.view.find(o.execPath);
      if (!found) continue;
      if (found.st.isSymbolicLink()) {
        const s = symlink(o.name, found.path);
        result.outputSymlinks.push(s);
        if (legacy) result.outputFileSymlinks.push(s);
      } else if (found.st.isFile()) await addFile(o.name, found.path, found.st);
      else if (found.st.isDirectory()) {
        if (legacy) throw new StatusError(Code.FAILED_PRECONDITION, `output file "${o.name}" is a directory`);
        await addDir(o.name, o.execPath);
      }
    }
    if (!legacy) return;
    for (const o of req.directories) {
      const found = this.view.find(o.execPath);
      if (!found) continue;
      if (found.st.isSymbolicLink()) {
        const s = symlink(o.name, found.path);
        result.outputSymlinks.push(s);
        result.outputDirectorySymlinks.push(s);
      } else if (found.st.isDirectory()) await addDir(o.name, o.execPath);
      else throw new StatusError(Code.FAILED_PRECONDITION, `output directory "${o.name}" is not a directory`);
    }
  }

  /** Hashes a file and moves it into the CAS (or finds it already there). */
  async store(path: string, st: Stats): Promise<BlobDigest> {
    // Empty files (often stdout and stderr) need no reading: the empty blob is always stored.
    if (st.size === 0) return { fn: this.fn, hash: EMPTY_HASH[this.fn], size: 0 };
    const hash = await hashFile(this.fn, path, st.size);
    const d: BlobDigest = { fn: this.fn, hash, size: st.size };
    await this.cas.adopt(d, path);
    return d;
  }

  /** Stores a Tree for the directory at rel: every Directory below it once, in a fixed order. */
  private async storeTree(rel: string): Promise<BlobDigest> {
    const children = new Map<string, Directory>();
    const root = await this.directory(rel, children);
    const bytes = toBinary(TreeSchema, create(TreeSchema, { root, children: [...children.values()] }));
    const d: BlobDigest = { fn: this.fn, hash: await hashBytes(this.fn, bytes), size: bytes.length };
    await this.cas.put(d, bytes);
    return d;
  }

  private async directory(rel: string, children: Map<string, Directory>): Promise<Directory> {
    const dir = create(DirectorySchema);
    for (const e of this.view.list(rel)) {
      const childRel = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.st.isFile()) {
        const digest = await this.store(e.path, e.st);
        dir.files.push(create(FileNodeSchema, { name: e.name, digest: wire(digest), isExecutable: isExecutable(e.st) }));
      } else if (e.st.isSymbolicLink()) {
        dir.symlinks.push(create(SymlinkNodeSchema, { name: e.name, target: readlinkSync(e.path) }));
      } else if (e.st.isDirectory()) {
        const child = await this.directory(childRel, children);
        const bytes = toBinary(DirectorySchema, child);
        const digest: BlobDigest = { fn: this.fn, hash: await hashBytes(this.fn, bytes), size: bytes.length };
        if (!children.has(digest.hash)) children.set(digest.hash, child);
        dir.directories.push(create(DirectoryNodeSchema, { name: e.name, digest: wire(digest) }));
      }
      // Sockets, fifos and devices have no place in a Tree; they are left out.
    }
    return dir;
  }
}

export function wire(d: BlobDigest) {
  return create(DigestSchema, { hash: d.hash, sizeBytes: BigInt(d.size) });
}

function isExecutable(st: Stats): boolean {
  return (st.mode & 0o111) !== 0;
}

/** Small files are read at once; big ones streamed through the hasher. */
export async function hashFile(fn: DigestFunctionName, path: string, size: number): Promise<string> {
  const file = Bun.file(path);
  if (size <= 4 * 1024 * 1024) return hashBytes(fn, await file.bytes());
  const hasher = await newHasher(fn);
  for await (const chunk of file.stream()) hasher.update(chunk);
  return hasher.digestHex();
}
