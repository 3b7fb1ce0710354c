// Collects an action's outputs after it ran: files are hardlinked into the CAS (hashed, never
// copied), directories become Trees, symlinks are reported as symlinks (never followed). Paths are
// resolved one component at a time without following symlinks (MergedView), so nothing outside the
// execroot is ever read.
import { chmodSync, readlinkSync, type Stats } from "node:fs";
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
import { PRIVILEGED } from "../identity";
import { MergedView, type Entry } from "./merged-view";

/** What the command asked for, as execroot-relative paths plus the names the client used. */
export interface OutputRequest {
  /** REAPI 2.1 output_paths: the kind is decided by what the action produced. */
  paths: { execPath: string; name: string }[];
  /** Legacy output_files / output_directories (used only when paths is empty). */
  files: { execPath: string; name: string }[];
  directories: { execPath: string; name: string }[];
}

export class OutputCollector {
  private readonly view: MergedView;
  /** Every stored output stays pinned until release(): the result must not lose a blob before it is cached. */
  private readonly pins: (() => void)[] = [];

  constructor(
    private readonly cas: DiskCas,
    private readonly fn: DigestFunctionName,
    execroot: string,
    upper: string | undefined,
  ) {
    this.view = new MergedView(upper ? [upper, execroot] : [execroot]);
  }

  release(): void {
    this.pins.splice(0).forEach((unpin) => unpin());
  }

  /** Fills the output fields of result. */
  async collect(req: OutputRequest, result: ActionResult): Promise<void> {
    const legacy = req.paths.length === 0;
    const symlink = (name: string, path: string) => create(OutputSymlinkSchema, { path: name, target: symlinkTarget(name, path) });
    const addFile = async (name: string, path: string, st: Stats) => {
      const digest = await this.store(path, st);
      result.outputFiles.push(create(OutputFileSchema, { path: name, digest: wire(digest), isExecutable: isExecutable(st) }));
    };
    const addDir = async (name: string, dir: Entry) => {
      const treeDigest = await this.storeTree(dir);
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
        await addDir(o.name, found);
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
      } else if (found.st.isDirectory()) await addDir(o.name, found);
      else throw new StatusError(Code.FAILED_PRECONDITION, `output directory "${o.name}" is not a directory`);
    }
  }

  /** Hashes a file and links it into the CAS (or finds it already there); pinned until release(). */
  async store(path: string, st: Stats): Promise<BlobDigest> {
    // Empty files (often stdout and stderr) need no reading: the empty blob is always stored.
    if (st.size === 0) return { fn: this.fn, hash: EMPTY_HASH[this.fn], size: 0 };
    // Checked before reading: a huge (even sparse) file would otherwise be hashed for nothing.
    if (st.size > this.cas.maxBytes) {
      throw new StatusError(Code.RESOURCE_EXHAUSTED, `an output of ${st.size} bytes is larger than the whole CAS (--max-cas-size ${this.cas.maxBytes})`);
    }
    const hash = await hashFile(this.fn, readable(path, st), st.size);
    const d: BlobDigest = { fn: this.fn, hash, size: st.size };
    this.pins.push(this.cas.pin(d));
    await this.cas.adopt(d, path, st);
    return d;
  }

  /** Stores a Tree for a directory: every Directory below it once, in a fixed order. */
  private async storeTree(dir: Entry): Promise<BlobDigest> {
    const children = new Map<string, Directory>();
    const root = await this.directory(dir, children);
    const bytes = toBinary(TreeSchema, create(TreeSchema, { root, children: [...children.values()] }));
    const d: BlobDigest = { fn: this.fn, hash: await hashBytes(this.fn, bytes), size: bytes.length };
    this.pins.push(this.cas.pin(d));
    await this.cas.put(d, bytes);
    return d;
  }

  private async directory(at: Entry, children: Map<string, Directory>): Promise<Directory> {
    const dir = create(DirectorySchema);
    for (const { name, entry: e } of this.view.list(at)) {
      if (e.st.isFile()) {
        const digest = await this.store(e.path, e.st);
        dir.files.push(create(FileNodeSchema, { name, digest: wire(digest), isExecutable: isExecutable(e.st) }));
      } else if (e.st.isSymbolicLink()) {
        dir.symlinks.push(create(SymlinkNodeSchema, { name, target: symlinkTarget(name, e.path) }));
      } else if (e.st.isDirectory()) {
        const child = await this.directory(e, children);
        const bytes = toBinary(DirectorySchema, child);
        const digest: BlobDigest = { fn: this.fn, hash: await hashBytes(this.fn, bytes), size: bytes.length };
        if (!children.has(digest.hash)) children.set(digest.hash, child);
        dir.directories.push(create(DirectoryNodeSchema, { name, digest: wire(digest) }));
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

/** We advertise SymlinkAbsolutePathStrategy DISALLOWED: an absolute output symlink is FAILED_PRECONDITION. */
function symlinkTarget(name: string, path: string): string {
  const target = readlinkSync(path);
  if (target.startsWith("/")) {
    throw new StatusError(Code.FAILED_PRECONDITION, `output symlink "${name}" points to the absolute path "${target}", which this server does not allow`);
  }
  return target;
}

/** A file the action made unreadable is made readable again (rootless, where it is ours). */
function readable(path: string, st: Stats): string {
  if (!PRIVILEGED && (st.mode & 0o400) === 0) chmodSync(path, st.mode | 0o400);
  return path;
}

/** Small files are read at once; big ones streamed through the hasher. */
export async function hashFile(fn: DigestFunctionName, path: string, size: number): Promise<string> {
  const file = Bun.file(path);
  if (size <= 4 * 1024 * 1024) return hashBytes(fn, await file.bytes());
  const hasher = await newHasher(fn);
  for await (const chunk of file.stream()) hasher.update(chunk);
  return hasher.digestHex();
}
