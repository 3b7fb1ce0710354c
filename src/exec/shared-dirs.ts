// Input directories shared between actions. A subtree that comes back action after action (a
// toolchain, a library's headers) is laid out from hardlinks once, and each later action that has
// it gets it mounted in its sandbox under an overlay of its own (its writes stay its own), instead
// of a hardlink per file: an execroot then costs what its unshared part costs. A directory is laid
// out on its second sighting, so a tree seen once costs nothing extra. An entry never changes while
// an action uses it; unused ones are evicted oldest first beyond a bound on entries and bytes. Their
// blobs stay pinned in the CAS while the entry exists: its hardlinks hold their disk blocks.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { digestKey, type LocalBlobFiles } from "../cas";
import type { SharedDir, TreeRemover } from "../sandbox";
import { buildExecroot } from "./execroot";
import type { InputTree } from "./input-tree";

/** Subtrees with fewer entries are cheaper to link than to mount (a link is ~10 µs, an overlay ~0.3 ms). */
export const MIN_SHARED_NODES = 64;
/** The most shared directories one action gets mounted. */
const MAX_PER_ACTION = 32;
/** Directories remembered as seen once. */
const MAX_SEEN = 50_000;

interface Entry {
  source: string;
  nodes: number;
  bytes: number;
  /** Actions that have it now. */
  users: number;
  /** Settles once it is laid out (or failed to be, then it is gone from the map). */
  ready: Promise<void>;
  unpin: () => void;
}

export interface SharedDirLimits {
  /** The most files, directories and symlinks all entries hold together. */
  maxNodes: number;
  /** The most bytes of blobs all entries pin together (counted once per entry). */
  maxBytes: number;
}

/** What the shared directories hold now, and how often they were laid out and mounted since start. */
export interface SharedDirsUsage {
  entries: number;
  nodes: number;
  bytes: number;
  laidOut: number;
  mounted: number;
}

/** Shared directories taken by one action: where each goes, and a release once its sandbox is gone. */
export interface TakenDirs {
  /** Indices into the tree's dirs, ascending: the execroot leaves them empty. */
  indices: number[];
  mounts: SharedDir[];
  release(): void;
}

export class SharedInputDirs {
  /** By digest key, least recently used first. */
  private readonly entries = new Map<string, Entry>();
  private readonly seen = new Set<string>();
  private nodes = 0;
  private bytes = 0;
  private next = 0;
  private laidOut = 0;
  private mounted = 0;

  constructor(
    private readonly files: LocalBlobFiles,
    private readonly root: string,
    private readonly remover: TreeRemover,
    private readonly limits: SharedDirLimits,
  ) {
    mkdirSync(root, { recursive: true, mode: 0o700 });
  }

  /**
   * Takes for one action the largest subtrees of tree that are shared (or seen before, then laid
   * out now) and that it does not write into: `writes(path)` says whether the action may create
   * something at or below a directory (its working directory and what leads to it, its outputs).
   */
  async take(tree: InputTree, writes: (path: string) => boolean): Promise<TakenDirs> {
    const taken: { index: number; entry: Entry }[] = [];
    for (let i = 0; i < tree.dirs.length && taken.length < MAX_PER_ACTION; ) {
      const d = tree.dirs[i]!;
      const entry = d.nodes >= MIN_SHARED_NODES && !writes(d.path) ? this.entryFor(tree, i) : undefined;
      if (!entry) {
        i++;
        continue;
      }
      taken.push({ index: i, entry });
      i = d.dirsEnd;
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      for (const t of taken) t.entry.users--;
      this.evictWhileOver();
    };
    try {
      await Promise.all(taken.map((t) => t.entry.ready));
    } catch (err) {
      release();
      throw err;
    }
    this.mounted += taken.length;
    return { indices: taken.map((t) => t.index), mounts: taken.map((t) => ({ source: t.entry.source, path: tree.dirs[t.index]!.path })), release };
  }

  usage(): SharedDirsUsage {
    return { entries: this.entries.size, nodes: this.nodes, bytes: this.bytes, laidOut: this.laidOut, mounted: this.mounted };
  }

  /** The entry for tree.dirs[i], counted as used: there, or laid out now if seen once before; undefined otherwise. */
  private entryFor(tree: InputTree, i: number): Entry | undefined {
    const d = tree.dirs[i]!;
    const key = digestKey(d.digest);
    const known = this.entries.get(key);
    if (known) {
      this.entries.delete(key);
      this.entries.set(key, known);
      known.users++;
      return known;
    }
    if (!this.seen.delete(key)) {
      this.seen.add(key);
      if (this.seen.size > MAX_SEEN) this.seen.delete(this.seen.values().next().value!);
      return undefined;
    }
    const inputs = tree.files.slice(d.filesStart, d.filesEnd);
    const bytes = inputs.reduce((sum, f) => sum + f.digest.size, 0);
    if (d.nodes > this.limits.maxNodes || bytes > this.limits.maxBytes) return undefined;
    const source = join(this.root, String(this.next++));
    this.evictWhileOver(d.nodes, bytes);
    const entry: Entry = { source, nodes: d.nodes, bytes, users: 1, ready: Promise.resolve(), unpin: this.files.pin(inputs.map((f) => f.digest)) };
    entry.ready = this.layOut(tree, i, entry, key);
    this.entries.set(key, entry);
    this.nodes += entry.nodes;
    this.bytes += entry.bytes;
    this.laidOut++;
    return entry;
  }

  private async layOut(tree: InputTree, i: number, entry: Entry, key: string): Promise<void> {
    try {
      mkdirSync(entry.source);
      await buildExecroot(this.files, tree, entry.source, { within: i });
    } catch (err) {
      this.drop(key, entry);
      throw err;
    }
  }

  /** Evicts unused entries, oldest first, while the bounds are passed (or would be, with so much more). */
  private evictWhileOver(moreNodes = 0, moreBytes = 0): void {
    for (const [key, entry] of this.entries) {
      if (this.nodes + moreNodes <= this.limits.maxNodes && this.bytes + moreBytes <= this.limits.maxBytes) return;
      if (entry.users === 0) this.drop(key, entry);
    }
  }

  private drop(key: string, entry: Entry): void {
    if (this.entries.get(key) !== entry) return;
    this.entries.delete(key);
    this.nodes -= entry.nodes;
    this.bytes -= entry.bytes;
    // The blobs stay pinned until their last hardlinks here are gone.
    void entry.ready
      .catch(() => {})
      .then(() => this.remover.remove(entry.source))
      .finally(entry.unpin);
  }
}
