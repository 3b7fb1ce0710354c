// The execroot as the action left it, read from the host without following any symlink. Root mode
// has one layer (the execroot). Rootless, the execroot is the lower layer of an overlayfs and the
// action's writes are in the upper one; this reproduces overlayfs's lookup rules: an upper entry
// hides lower ones, a whiteout (a 0/0 character device) deletes them, a non-directory ends the path,
// and an opaque directory (xattr user.overlay.opaque=y) hides everything below it in lower layers.
import { chmodSync, lstatSync, type Stats } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { dlopen, FFIType } from "bun:ffi";
import { hostArchName, sortInSlices } from "../core";

export interface Entry {
  /** Host path of the topmost layer's entry. */
  path: string;
  st: Stats;
  /** For a directory: its host path in each layer that merges into it, topmost first. */
  dirs: string[];
}

export class MergedView {
  constructor(
    private readonly layers: string[],
    /** Whether the server is privileged (then permissions do not bind it; see searchable()). */
    private readonly privileged: boolean,
  ) {}

  /** The root directory of the view. */
  root(): Entry {
    const st = lstatSync(this.layers[0]!);
    for (const layer of this.layers) this.searchable(layer, lstatSync(layer));
    return { path: this.layers[0]!, st, dirs: [...this.layers] };
  }

  /** What rel names in the merged view, or undefined; never goes through a symlink. */
  find(rel: string): Entry | undefined {
    let at: Entry | undefined = this.root();
    for (const name of rel === "" ? [] : rel.split("/")) {
      if (!at?.st.isDirectory()) return undefined;
      at = this.child(at, name);
    }
    return at;
  }

  /**
   * The names in a directory across its layers, sorted by UTF-8 bytes (in slices: there may be a
   * million). Each is looked at with child() as it is needed, so a listing holds names, not entries
   * (a million entries with their Stats were half a gigabyte).
   */
  async names(dir: Entry): Promise<string[]> {
    if (dir.dirs.length === 1) return sortInSlices(await readdir(dir.dirs[0]!), compareUtf8);
    const names = new Set<string>();
    for (const d of dir.dirs) for (const name of await readdir(d)) names.add(name);
    return sortInSlices([...names], compareUtf8);
  }

  /** What `name` in `dir` is in the merged view, or undefined (a whiteout); never follows a symlink. */
  child(dir: Entry, name: string): Entry | undefined {
    let top: Entry | undefined;
    for (const [i, d] of dir.dirs.entries()) {
      const path = join(d, name);
      const st = lstatSync(path, { throwIfNoEntry: false });
      if (!st) continue;
      if (isWhiteout(st)) break;
      if (st.isDirectory()) this.searchable(path, st);
      // Opacity matters only where a lower layer could show through.
      const last = i === dir.dirs.length - 1;
      if (!top) {
        top = { path, st, dirs: st.isDirectory() ? [path] : [] };
        // A non-directory hides whatever lower layers have under this name.
        if (!st.isDirectory() || (!last && isOpaque(path))) break;
      } else {
        // Lower directories merge into the upper one; lower non-directories are hidden by it.
        if (!st.isDirectory()) break;
        top.dirs.push(path);
        if (!last && isOpaque(path)) break;
      }
    }
    return top;
  }

  /**
   * Rootless, a directory the action left without read or search permission (it is ours: the action
   * ran as our uid) is opened up again, before its xattrs or entries are read: otherwise an opaque
   * directory would look transparent, or its entries unreadable. As root, permissions do not bind us.
   */
  private searchable(path: string, st: Stats): void {
    if (!this.privileged && (st.mode & 0o700) !== 0o700) chmodSync(path, (st.mode & 0o7777) | 0o700);
  }
}

/**
 * Orders names by their UTF-8 bytes, as REAPI wants, without encoding them: UTF-16 code units
 * order the same way unless both differ at a unit at or above a surrogate (0xD800).
 */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca === cb) continue;
    if (ca >= 0xd800 && cb >= 0xd800) return Buffer.compare(Buffer.from(a), Buffer.from(b));
    return ca - cb;
  }
  return a.length - b.length;
}

function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

// Node has no getxattr; libc's lgetxattr through bun:ffi (glibc, which Bun's Linux builds use).
let lgetxattr: ((path: Buffer, name: Buffer, value: Buffer, size: number) => number) | undefined;
function loadXattr() {
  if (lgetxattr) return lgetxattr;
  const symbols = { lgetxattr: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64 } } as const;
  const names = ["libc.so.6", `libc.musl-${hostArchName()}.so.1`];
  const lib = openFirst(names, symbols);
  lgetxattr = (path, name, value, size) => Number(lib.symbols.lgetxattr(path, name, value, size));
  return lgetxattr;
}

function openFirst<S extends Parameters<typeof dlopen>[1]>(names: string[], symbols: S) {
  for (const name of names) {
    try {
      return dlopen(name, symbols);
    } catch {}
  }
  throw new Error(`cannot load the C library (${names.join(", ")}) to read overlayfs attributes`);
}

const OPAQUE = Buffer.from("user.overlay.opaque\0");
const OPAQUE_TRUSTED = Buffer.from("trusted.overlay.opaque\0");

function isOpaque(path: string): boolean {
  const get = loadXattr();
  const value = Buffer.alloc(4);
  const cpath = Buffer.from(`${path}\0`);
  for (const name of [OPAQUE, OPAQUE_TRUSTED]) {
    if (get(cpath, name, value, value.length) > 0 && value[0] === 0x79 /* "y" */) return true;
  }
  return false;
}
