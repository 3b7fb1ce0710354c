// Directory and Tree messages written straight to bytes, as protobuf-es would write them (fields in
// number order, defaults left out), for output directories: a directory of a million files made a
// million FileNode objects and then one encoding pass that held the event loop for a second.
import { WireWriter } from "../core";
import type { BlobDigest } from "../cas";

const utf8 = (s: string) => Buffer.from(s);

function digestBytes(d: BlobDigest): Buffer {
  const b = new WireWriter();
  b.field(1, utf8(d.hash));
  if (d.size > 0) {
    b.varint(2 << 3);
    b.varint(d.size);
  }
  return b.done();
}

/** One Directory, its entries added in the order they are to appear (by name, as REAPI asks). */
export class DirectoryBytes {
  private readonly files = new WireWriter();
  private readonly directories = new WireWriter();
  private readonly symlinks = new WireWriter();

  file(name: string, digest: BlobDigest, executable: boolean): void {
    const node = new WireWriter();
    node.field(1, utf8(name));
    node.field(2, digestBytes(digest));
    if (executable) {
      node.varint(4 << 3); // is_executable, a varint
      node.varint(1);
    }
    this.files.field(1, node.done());
  }

  directory(name: string, digest: BlobDigest): void {
    const node = new WireWriter();
    node.field(1, utf8(name));
    node.field(2, digestBytes(digest));
    this.directories.field(2, node.done());
  }

  symlink(name: string, target: string): void {
    const node = new WireWriter();
    node.field(1, utf8(name));
    node.field(2, utf8(target));
    this.symlinks.field(3, node.done());
  }

  /** The encoded Directory: files (field 1), then directories (2), then symlinks (3). */
  done(): Buffer {
    return Buffer.concat([this.files.done(), this.directories.done(), this.symlinks.done()]);
  }
}

/** A Tree: its root Directory (field 1) and every other Directory below it once (field 2). */
export function treeBytes(root: Uint8Array, children: Iterable<Uint8Array>): Buffer {
  const t = new WireWriter();
  t.field(1, root);
  for (const c of children) t.field(2, c);
  return t.done();
}
