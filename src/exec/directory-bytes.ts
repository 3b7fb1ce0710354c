// Directory and Tree messages written straight to bytes, as protobuf-es would write them (fields in
// number order, defaults left out), for output directories: a directory of a million files made a
// million FileNode objects and then one encoding pass that held the event loop for a second. Each
// node's length is worked out first and its fields written into the one buffer: a buffer per node
// (and per digest) was a gigabyte of garbage for a million files, freed later than it was made.
import { WireWriter, lengthFieldSize, varintSize } from "../core";
import type { BlobDigest } from "../cas";

/** Digest: 1 hash (ASCII hex), 2 size_bytes (left out when 0). */
const digestSize = (d: BlobDigest) => lengthFieldSize(d.hash.length) + (d.size > 0 ? 1 + varintSize(d.size) : 0);

function writeDigest(w: WireWriter, number: number, d: BlobDigest): void {
  w.lengthPrefix(number, digestSize(d));
  w.string(1, d.hash, d.hash.length);
  if (d.size > 0) {
    w.varint(2 << 3);
    w.varint(d.size);
  }
}

/** One Directory, its entries added in the order they are to appear (by name, as REAPI asks). */
export class DirectoryBytes {
  private readonly files = new WireWriter();
  private readonly directories = new WireWriter();
  private readonly symlinks = new WireWriter();

  /** FileNode (Directory field 1): 1 name, 2 digest, 4 is_executable. */
  file(name: string, digest: BlobDigest, executable: boolean): void {
    const nameBytes = Buffer.byteLength(name);
    this.files.lengthPrefix(1, lengthFieldSize(nameBytes) + lengthFieldSize(digestSize(digest)) + (executable ? 2 : 0));
    this.files.string(1, name, nameBytes);
    writeDigest(this.files, 2, digest);
    if (executable) {
      this.files.varint(4 << 3); // is_executable, a varint
      this.files.varint(1);
    }
  }

  /** DirectoryNode (Directory field 2): 1 name, 2 digest. */
  directory(name: string, digest: BlobDigest): void {
    const nameBytes = Buffer.byteLength(name);
    this.directories.lengthPrefix(2, lengthFieldSize(nameBytes) + lengthFieldSize(digestSize(digest)));
    this.directories.string(1, name, nameBytes);
    writeDigest(this.directories, 2, digest);
  }

  /** SymlinkNode (Directory field 3): 1 name, 2 target. */
  symlink(name: string, target: string): void {
    const nameBytes = Buffer.byteLength(name);
    const targetBytes = Buffer.byteLength(target);
    this.symlinks.lengthPrefix(3, lengthFieldSize(nameBytes) + lengthFieldSize(targetBytes));
    this.symlinks.string(1, name, nameBytes);
    this.symlinks.string(2, target, targetBytes);
  }

  /** Bytes of the encoded Directory. */
  get length(): number {
    return this.files.length + this.directories.length + this.symlinks.length;
  }

  /** The encoded Directory as pieces in order, nothing joined: a million files' worth is not copied. */
  pieces(): Buffer[] {
    return [this.files, this.directories, this.symlinks].filter((w) => w.length > 0).flatMap((w) => w.pieceList());
  }

  /** The encoded Directory: files (field 1), then directories (2), then symlinks (3). */
  done(): Buffer {
    const pieces = this.pieces();
    // One piece (a small directory of files only, say) is its own bytes: no copy.
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, this.length);
  }
}

/**
 * A Tree: its root Directory (field 1) and every other Directory below it once (field 2), as pieces
 * in order: the root's own pieces are part of it, not copied.
 */
export function treePieces(root: DirectoryBytes, children: Iterable<Uint8Array>): Buffer[] {
  const head = new WireWriter(16);
  head.lengthPrefix(1, root.length);
  const tail = [...children];
  const rest = new WireWriter(tail.reduce((n, c) => n + lengthFieldSize(c.length), 0) || 1);
  for (const c of tail) rest.field(2, c);
  return [head.done(), ...root.pieces(), rest.done()].filter((p) => p.length > 0);
}
