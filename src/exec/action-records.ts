// The last executed action of each (target, mnemonic, primary output), kept on disk under
// ROOT/explain/ so "why did it miss" survives a restart. One small JSON file per key, named by
// hashes of the target and of the rest, so a target's records are found by listing the folder.
// Bounded in count and bytes: the oldest go first. A record that cannot be read is no record.
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../core";
import type { ActionRecord, RecordKey } from "./why-missed";

export interface RecordLimits {
  count: number;
  bytes: number;
}

export const DEFAULT_RECORD_LIMITS: RecordLimits = { count: 20_000, bytes: 64 * 1024 * 1024 };
/** A record larger than this keeps a hash of its arguments and environment instead of them. */
const MAX_RECORD_BYTES = 256 * 1024;

const hash = (s: string) => createHash("sha256").update(s).digest("hex").slice(0, 32);
const targetPart = (target: string) => hash(`target\0${target}`);
const fileOf = (k: RecordKey) => `${targetPart(k.target)}-${hash(`${k.mnemonic}\0${k.output}`)}.json`;

/** Arguments and environment too long to keep are replaced by one line holding their hash (a change still shows). */
function compact(r: ActionRecord): string {
  let text = JSON.stringify(r);
  if (text.length <= MAX_RECORD_BYTES) return text;
  const args = JSON.stringify(r.args);
  const env = JSON.stringify(r.env);
  text = JSON.stringify({ ...r, args: [`(${r.args.length} arguments, sha256 ${hash(args)})`], env: [["(environment)", `${r.env.length} variables, sha256 ${hash(env)}`]] });
  if (text.length <= MAX_RECORD_BYTES) return text;
  // What is left that can be long is the explanation's lists and the outputs.
  return JSON.stringify({ ...JSON.parse(text), outputs: [`(${r.outputs.length} outputs)`], why: r.why && { ...r.why, inputs: r.why.inputs.slice(0, 10), args: [], env: [] } });
}

export class ActionRecords {
  /** File name → size, oldest first. */
  private readonly index = new Map<string, number>();
  private bytes = 0;
  private readonly loaded: Promise<void>;

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
    private readonly limits: RecordLimits = DEFAULT_RECORD_LIMITS,
  ) {
    mkdirSync(dir, { recursive: true });
    this.loaded = this.load().catch((err) => log.warn(`explain records in ${dir}: ${(err as Error).message}`));
  }

  /** What is on disk, oldest first; a write cut by a crash left a .tmp file, which goes. */
  private async load(): Promise<void> {
    const found: { name: string; size: number; mtime: number }[] = [];
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (!name.endsWith(".json")) {
        await rm(path, { force: true });
        continue;
      }
      const st = await stat(path).catch(() => undefined);
      if (st) found.push({ name, size: st.size, mtime: st.mtimeMs });
    }
    found.sort((a, b) => a.mtime - b.mtime);
    for (const f of found) if (!this.index.has(f.name)) this.note(f.name, f.size);
    await this.trim();
  }

  private note(name: string, size: number): void {
    this.bytes -= this.index.get(name) ?? 0;
    this.index.delete(name);
    this.index.set(name, size);
    this.bytes += size;
  }

  private async trim(): Promise<void> {
    for (const [name, size] of this.index) {
      if (this.index.size <= this.limits.count && this.bytes <= this.limits.bytes) break;
      this.index.delete(name);
      this.bytes -= size;
      await rm(join(this.dir, name), { force: true });
    }
  }

  private async read(name: string): Promise<ActionRecord | undefined> {
    try {
      return JSON.parse(await readFile(join(this.dir, name), "utf8")) as ActionRecord;
    } catch {
      return undefined;
    }
  }

  /** The record kept for this key. */
  async get(key: RecordKey): Promise<ActionRecord | undefined> {
    await this.loaded;
    const name = fileOf(key);
    if (!this.index.has(name)) return undefined;
    const r = await this.read(name);
    // Two keys whose hashes met: not this one.
    return r && r.target === key.target && r.mnemonic === key.mnemonic && r.output === key.output ? r : undefined;
  }

  /** Keeps r as its key's record, replacing the earlier one. */
  async put(r: ActionRecord): Promise<void> {
    await this.loaded;
    const name = fileOf(r);
    const text = compact(r);
    const tmp = join(this.dir, `${name}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
    try {
      await writeFile(tmp, text);
      await rename(tmp, join(this.dir, name));
    } catch (err) {
      await rm(tmp, { force: true });
      this.log.warn(`not keeping the explain record of ${r.target || r.output}: ${(err as Error).message}`);
      return;
    }
    this.note(name, Buffer.byteLength(text));
    await this.trim();
  }

  /** Every record of a target, newest first. */
  async ofTarget(target: string): Promise<ActionRecord[]> {
    await this.loaded;
    const prefix = `${targetPart(target)}-`;
    const out: ActionRecord[] = [];
    for (const name of [...this.index.keys()].filter((n) => n.startsWith(prefix))) {
      const r = await this.read(name);
      if (r && r.target === target) out.push(r);
    }
    return out.sort((a, b) => b.atMs - a.atMs);
  }

  get size(): { count: number; bytes: number } {
    return { count: this.index.size, bytes: this.bytes };
  }
}
