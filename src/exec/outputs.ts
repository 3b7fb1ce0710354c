// Collects an action's outputs after it ran: files are hardlinked into the CAS (hashed, never
// copied), directories become Trees, symlinks are reported as symlinks, whatever their targets
// (absolute ones too: we advertise ALLOWED), never followed or resolved. Paths are
// resolved one component at a time without following symlinks (MergedView), so nothing outside the
// execroot is ever read.
import { chmodSync, readlinkSync, type Stats } from "node:fs";
import { create } from "@bufbuild/protobuf";
import {
  OutputDirectorySchema,
  OutputFileSchema,
  OutputSymlinkSchema,
  Command_OutputDirectoryFormat as DirectoryFormat,
  type ActionResult,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError, hashBytes, hashFile, timeSlices } from "../core";
import { emptyDigest, toWire, type BlobDigest, type DigestFunctionName, type LocalBlobFiles } from "../cas";
import { DirectoryBytes, treePieces } from "./directory-bytes";
import { MergedView, type Entry } from "./merged-view";

/** What the command asked for, as execroot-relative paths plus the names the client used. */
export interface OutputRequest {
  /** REAPI 2.1 output_paths: the kind is decided by what the action produced. */
  paths: { execPath: string; name: string }[];
  /** Legacy output_files / output_directories (used only when paths is empty). */
  files: { execPath: string; name: string }[];
  directories: { execPath: string; name: string }[];
  /** How output directories come back (REAPI 2.8): a Tree, Directory blobs from a root, or both. */
  directoryFormat: DirectoryFormat;
}

export class OutputCollector {
  private readonly view: MergedView;
  /** Every stored output stays pinned until release(): the result must not lose a blob before it is cached. */
  private readonly pins: (() => void)[] = [];
  /** Bytes of outputs taken so far, by their apparent size (a sparse file counts whole). */
  private outputBytes = 0;
  /** A million small outputs are taken in slices of a few milliseconds, with other calls in between. */
  private readonly pause = timeSlices(4);

  constructor(
    private readonly files: LocalBlobFiles,
    private readonly fn: DigestFunctionName,
    execroot: string,
    upper: string | undefined,
    /** Whether the server is privileged; if not, the action's files are ours and may need opening up. */
    private readonly privileged: boolean,
    /** The most an action's outputs may come to (--max-output-size), stdout and stderr included. */
    private readonly maxOutputBytes: number,
  ) {
    this.view = new MergedView(upper ? [upper, execroot] : [execroot], privileged);
  }

  release(): void {
    this.pins.splice(0).forEach((unpin) => unpin());
  }

  /** Fills the output fields of result. */
  async collect(req: OutputRequest, result: ActionResult): Promise<void> {
    const legacy = req.paths.length === 0;
    const symlink = (name: string, path: string) => create(OutputSymlinkSchema, { path: name, target: readlinkSync(path) });
    const addFile = async (name: string, path: string, st: Stats) => {
      const digest = await this.store(path, st);
      result.outputFiles.push(create(OutputFileSchema, { path: name, digest: toWire(digest), isExecutable: isExecutable(st) }));
    };
    const addDir = async (name: string, dir: Entry) => {
      const { tree, root } = await this.storeDirectory(dir, req.directoryFormat);
      result.outputDirectories.push(create(OutputDirectorySchema, { path: name, treeDigest: tree && toWire(tree), rootDirectoryDigest: root && toWire(root) }));
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
    if (st.size === 0) return emptyDigest(this.fn);
    // Checked before reading: a huge (even sparse) file would otherwise be hashed for nothing, and
    // take room in the store that other blobs would be evicted for.
    this.outputBytes += st.size;
    if (this.outputBytes > this.maxOutputBytes) {
      throw new StatusError(Code.RESOURCE_EXHAUSTED, `the action's outputs come to more than ${this.maxOutputBytes} bytes (--max-output-size), counted by apparent size (one of ${st.size} bytes took them over)`);
    }
    if (st.size > this.files.capacityBytes) {
      throw new StatusError(Code.RESOURCE_EXHAUSTED, `an output of ${st.size} bytes is larger than the whole CAS (--max-cas-size ${this.files.capacityBytes})`);
    }
    if (!this.privileged) readable(path, st);
    const d: BlobDigest = { fn: this.fn, hash: await hashFile(this.fn, path, st.size), size: st.size };
    this.pins.push(this.files.pin([d]));
    await this.files.adopt(d, path, st.nlink);
    return d;
  }

  /**
   * Stores an output directory as asked: a Tree (every Directory below it once, in a fixed order),
   * and/or each Directory as a blob of its own, named from the root's digest.
   */
  private async storeDirectory(dir: Entry, format: DirectoryFormat): Promise<{ tree?: BlobDigest; root?: BlobDigest }> {
    const children = new Map<string, Uint8Array>();
    const root = await this.directory(dir, children);
    const out: { tree?: BlobDigest; root?: BlobDigest } = {};
    if (format !== DirectoryFormat.DIRECTORY_ONLY) out.tree = await this.storeMessage(treePieces(root, children.values()));
    if (format !== DirectoryFormat.TREE_ONLY) {
      out.root = await this.storeMessage(root.pieces());
      for (const bytes of children.values()) await this.storeMessage([bytes]);
    }
    return out;
  }

  /**
   * Stores a message the server made (a Tree, a Directory), given as pieces in order; pinned until
   * release(). A big one (a million files' Tree is 80 MB) is streamed to the store piece by piece,
   * never joined into one buffer.
   */
  private async storeMessage(pieces: Uint8Array[]): Promise<BlobDigest> {
    const size = pieces.reduce((n, p) => n + p.length, 0);
    const d: BlobDigest = { fn: this.fn, hash: await hashBytes(this.fn, pieces), size };
    this.pins.push(this.files.pin([d]));
    if (size <= STREAM_MESSAGES_OVER) {
      await this.files.put(d, pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, size));
      return d;
    }
    const w = await this.files.beginWrite(d);
    try {
      for (const p of pieces) {
        if (w.superseded) break;
        await w.write(p);
      }
      if (!w.superseded) await w.commit();
    } finally {
      await w.abort();
    }
    return d;
  }

  /** The Directory of `at`, to be encoded; each distinct Directory below it lands in `children`, by hash. */
  private async directory(at: Entry, children: Map<string, Uint8Array>): Promise<DirectoryBytes> {
    const dir = new DirectoryBytes();
    for (const name of await this.view.names(at)) {
      await this.pause();
      const e = this.view.child(at, name);
      if (!e) continue;
      if (e.st.isFile()) dir.file(name, await this.store(e.path, e.st), isExecutable(e.st));
      else if (e.st.isSymbolicLink()) dir.symlink(name, readlinkSync(e.path));
      else if (e.st.isDirectory()) {
        const bytes = (await this.directory(e, children)).done();
        const digest: BlobDigest = { fn: this.fn, hash: await hashBytes(this.fn, bytes), size: bytes.length };
        if (!children.has(digest.hash)) children.set(digest.hash, bytes);
        dir.directory(name, digest);
      }
      // Sockets, fifos and devices have no place in a Tree; they are left out.
    }
    return dir;
  }
}

/** Messages the server made that are bigger than this go to the store as a stream. */
const STREAM_MESSAGES_OVER = 4 * 1024 * 1024;

function isExecutable(st: Stats): boolean {
  return (st.mode & 0o111) !== 0;
}

/** A file the action made unreadable is made readable again (rootless, where it is ours). */
function readable(path: string, st: Stats): void {
  if ((st.mode & 0o400) === 0) chmodSync(path, st.mode | 0o400);
}
