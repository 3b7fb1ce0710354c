// Just enough of ELF to see what a file needs from the dynamic loader: PT_INTERP and the
// DT_NEEDED / DT_RUNPATH entries. Reads only the headers, so checking a 30 MB cc1 is cheap.
import { closeSync, openSync, readSync } from "node:fs";

export interface ElfDeps {
  machine: number;
  /** ET_EXEC 2, ET_DYN 3 (shared objects and PIE executables), ET_REL 1 (object files) … */
  type: number;
  interp?: string;
  needed: string[];
  /** DT_RUNPATH, else DT_RPATH, split on ":" (may hold $ORIGIN). */
  runpath: string[];
}

const PT_LOAD = 1, PT_DYNAMIC = 2, PT_INTERP = 3;
const DT_NULL = 0n, DT_NEEDED = 1n, DT_STRTAB = 5n, DT_STRSZ = 10n, DT_RPATH = 15n, DT_RUNPATH = 29n;

/** Undefined when the file is not ELF. Throws for ELF this recipe never builds (32-bit, big-endian). */
export function readElfDeps(path: string): ElfDeps | undefined {
  const fd = openSync(path, "r");
  try {
    const at = (offset: number | bigint, length: number): Buffer => {
      const buf = Buffer.alloc(length);
      const n = readSync(fd, buf, 0, length, Number(offset));
      return buf.subarray(0, n);
    };
    const eh = at(0, 64);
    if (eh.length < 64 || eh.readUInt32BE(0) !== 0x7f454c46) return undefined;
    if (eh[4] !== 2 || eh[5] !== 1) throw new Error(`${path}: not a 64-bit little-endian ELF file`);
    const deps: ElfDeps = { machine: eh.readUInt16LE(18), type: eh.readUInt16LE(16), needed: [], runpath: [] };
    const phoff = eh.readBigUInt64LE(32), phentsize = eh.readUInt16LE(54), phnum = eh.readUInt16LE(56);
    const ph = at(phoff, phentsize * phnum);
    const loads: { vaddr: bigint; offset: bigint; filesz: bigint }[] = [];
    let dynamic: { offset: bigint; size: bigint } | undefined;
    for (let i = 0; i < phnum; i++) {
      const p = ph.subarray(i * phentsize, (i + 1) * phentsize);
      const kind = p.readUInt32LE(0), offset = p.readBigUInt64LE(8), vaddr = p.readBigUInt64LE(16), filesz = p.readBigUInt64LE(32);
      if (kind === PT_LOAD) loads.push({ vaddr, offset, filesz });
      if (kind === PT_DYNAMIC) dynamic = { offset, size: filesz };
      if (kind === PT_INTERP) deps.interp = at(offset, Number(filesz)).toString("latin1").replace(/\0.*$/s, "");
    }
    if (!dynamic) return deps;
    // Dynamic entries are (tag, value) pairs; string values are offsets into DT_STRTAB, which is a
    // virtual address: map it to a file offset through the PT_LOAD segment that holds it.
    const dyn = at(dynamic.offset, Number(dynamic.size));
    const entries: [bigint, bigint][] = [];
    for (let o = 0; o + 16 <= dyn.length; o += 16) {
      const tag = dyn.readBigInt64LE(o);
      if (tag === DT_NULL) break;
      entries.push([tag, dyn.readBigUInt64LE(o + 8)]);
    }
    const value = (tag: bigint) => entries.find(([t]) => t === tag)?.[1];
    const strtab = value(DT_STRTAB), strsz = value(DT_STRSZ);
    if (strtab === undefined || strsz === undefined) return deps;
    const seg = loads.find((l) => strtab >= l.vaddr && strtab < l.vaddr + l.filesz);
    if (!seg) throw new Error(`${path}: DT_STRTAB outside every PT_LOAD segment`);
    const strings = at(strtab - seg.vaddr + seg.offset, Number(strsz));
    const str = (off: bigint) => {
      const start = Number(off);
      return strings.toString("latin1", start, strings.indexOf(0, start));
    };
    let rpath: string[] = [];
    for (const [tag, val] of entries) {
      if (tag === DT_NEEDED) deps.needed.push(str(val));
      if (tag === DT_RUNPATH) deps.runpath = str(val).split(":").filter(Boolean);
      if (tag === DT_RPATH) rpath = str(val).split(":").filter(Boolean);
    }
    if (deps.runpath.length === 0) deps.runpath = rpath;
    return deps;
  } finally {
    closeSync(fd);
  }
}
