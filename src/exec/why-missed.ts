// Why an action missed the cache: what differs between it and the action last executed here for the
// same target, mnemonic and primary output. A record holds what the action cache key is made of
// (the input root's digest, the command, the platform, the action's own fields); the input trees
// are compared through the CAS, descending only where a directory's digest differs, so equal
// subtrees cost nothing and a record stays small.
import { DirectorySchema, type Directory } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { blobDigest, formatDigest, fromWire, type BlobDigest, type DigestFunctionName } from "../cas";
import type { Requester } from "./executions";
import type { MessageCache } from "./message-cache";
import type { PreparedAction } from "./prepare";

/** The most changes of one kind an explanation lists (the count says how many there were). */
export const MAX_LISTED = 100;
/** The most Directory messages one comparison reads. */
const MAX_DIRS_READ = 20_000;

/** What identifies "the same action, another time": the label and mnemonic Bazel sent, and its first output. */
export interface RecordKey {
  target: string;
  mnemonic: string;
  output: string;
}

/** An executed action, as kept for the next comparison. */
export interface ActionRecord extends RecordKey {
  action: string;
  fn: DigestFunctionName;
  /** ms since the epoch, when it was asked for. */
  atMs: number;
  inputRoot: string;
  args: string[];
  env: [string, string][];
  platform: [string, string][];
  outputs: string[];
  workingDirectory: string;
  timeoutMs: number;
  doNotCache: boolean;
  salt: string;
  /** How it ended: its exit code, or why it did not run. */
  exitCode?: number;
  failure?: string;
  /** Why this run missed, against the one before it. */
  why?: MissExplanation;
}

export interface Change {
  /** An input path, an environment variable's name, or an argument's position. */
  name: string;
  before?: string;
  after?: string;
}

export interface MissExplanation {
  /** One line: what differs, or that nothing earlier was known. */
  summary: string;
  /** The run compared against, when one was recorded. */
  previous?: { action: string; at: string; exitCode?: number; failure?: string };
  /** Inputs changed, added (no before) or removed (no after), at most MAX_LISTED; `inputsChanged` counts all. */
  inputs: Change[];
  inputsChanged: number;
  /** Why the inputs could not be compared (an earlier tree gone from the CAS). */
  inputsUnknown?: string;
  /** Arguments that differ, by position ("argv[3]"). */
  args: Change[];
  env: Change[];
  platform: Change[];
  /** The action's other fields: outputs, working directory, timeout, salt, do_not_cache. */
  other: Change[];
}

/** The key an action is recorded under; none when there is nothing to tell it by (no target and no output). */
export function recordKey(requester: Requester | undefined, p: PreparedAction): RecordKey | undefined {
  const output = p.command.outputPaths[0] ?? p.command.outputFiles[0] ?? p.command.outputDirectories[0] ?? "";
  const target = requester?.target ?? "";
  if (target === "" && output === "") return undefined;
  return { target, mnemonic: requester?.mnemonic ?? "", output };
}

export function recordOf(key: RecordKey, p: PreparedAction, atMs: number): ActionRecord {
  const root = p.action.inputRootDigest;
  const props = (p.action.platform ?? p.command.platform)?.properties ?? [];
  const t = p.action.timeout;
  return {
    ...key,
    action: formatDigest(p.digest),
    fn: p.digest.fn,
    atMs,
    inputRoot: root ? `${root.hash}/${root.sizeBytes}` : "",
    args: p.command.arguments,
    env: p.command.environmentVariables.map((v) => [v.name, v.value]),
    platform: props.map((q) => [q.name, q.value]),
    outputs: [...p.command.outputPaths, ...p.command.outputFiles, ...p.command.outputDirectories],
    workingDirectory: p.command.workingDirectory,
    timeoutMs: t ? Number(t.seconds) * 1000 + Math.round(t.nanos / 1e6) : 0,
    doNotCache: p.action.doNotCache,
    salt: Buffer.from(p.action.salt).toString("hex"),
  };
}

const shown = (s: string) => (s.length > 200 ? `${s.slice(0, 200)}…` : s);
/** A change with every part cut to what is shown: a hostile action's 3 KiB paths and huge values stay small. */
const cut = (c: Change): Change => ({ name: shown(c.name), ...(c.before === undefined ? {} : { before: shown(c.before) }), ...(c.after === undefined ? {} : { after: shown(c.after) }) });

/** Differences of two lists of name/value pairs (a name given twice: the last one counts, as in an environment). */
function pairChanges(before: [string, string][], after: [string, string][]): Change[] {
  const a = new Map(before);
  const b = new Map(after);
  const out: Change[] = [];
  for (const [name, v] of b) if (a.get(name) !== v) out.push({ name, before: a.get(name), after: v });
  for (const [name, v] of a) if (!b.has(name)) out.push({ name, before: v });
  return out.slice(0, MAX_LISTED);
}

/** Arguments that differ: the common start and end are equal, what lies between is listed by position. */
function argChanges(before: string[], after: string[]): Change[] {
  let start = 0;
  while (start < before.length && start < after.length && before[start] === after[start]) start++;
  let end = 0;
  while (end < before.length - start && end < after.length - start && before[before.length - 1 - end] === after[after.length - 1 - end]) end++;
  const out: Change[] = [];
  for (let i = start; i < Math.max(before.length, after.length) - end && out.length < MAX_LISTED; i++) {
    const b = i < before.length - end ? before[i] : undefined;
    const a = i < after.length - end ? after[i] : undefined;
    out.push({ name: `argv[${i}]`, before: b === undefined ? undefined : shown(b), after: a === undefined ? undefined : shown(a) });
  }
  return out;
}

interface TreeDiff {
  changes: Change[];
  count: number;
  unknown?: string;
}

/** Compares two input trees through the CAS, entering only directories whose digests differ. */
async function treeChanges(messages: MessageCache, fn: DigestFunctionName, before: string, after: string): Promise<TreeDiff> {
  const out: TreeDiff = { changes: [], count: 0 };
  let reads = 0;
  const add = (c: Change) => {
    out.count++;
    if (out.changes.length < MAX_LISTED) out.changes.push(c);
  };
  const load = async (d: BlobDigest, path: string): Promise<Directory | undefined> => {
    if (++reads > MAX_DIRS_READ) throw new Error(`more than ${MAX_DIRS_READ} directories differ`);
    const dir = await messages.get(DirectorySchema, d);
    if (!dir) throw new Error(`the earlier input directory "${path || "."}" (${formatDigest(d)}) is no longer in the CAS`);
    return dir;
  };
  const parse = (s: string) => {
    const [hash, size] = s.split("/");
    return blobDigest(fn, hash!, BigInt(size!));
  };
  const join = (prefix: string, name: string) => (prefix === "" ? name : `${prefix}/${name}`);
  // Every file below a directory present on one side only, as added or removed.
  const whole = async (d: BlobDigest, prefix: string, side: "before" | "after"): Promise<void> => {
    const dir = await load(d, prefix);
    for (const f of dir!.files) add({ name: join(prefix, f.name), [side]: f.digest ? `${f.digest.hash}/${f.digest.sizeBytes}` : "" });
    for (const s of dir!.symlinks) add({ name: join(prefix, s.name), [side]: `-> ${s.target}` });
    for (const sub of dir!.directories) await whole(fromWire(fn, sub.digest, "directory"), join(prefix, sub.name), side);
  };
  const walk = async (b: BlobDigest, a: BlobDigest, prefix: string): Promise<void> => {
    if (b.hash === a.hash) return;
    const [db, da] = [await load(b, prefix), await load(a, prefix)];
    const entries = (d: Directory) => {
      const m = new Map<string, { kind: "file" | "dir" | "link"; value: string; executable?: boolean; digest?: BlobDigest }>();
      for (const f of d.files) m.set(f.name, { kind: "file", value: `${f.digest?.hash ?? ""}/${f.digest?.sizeBytes ?? 0}`, executable: f.isExecutable });
      for (const s of d.symlinks) m.set(s.name, { kind: "link", value: `-> ${s.target}` });
      for (const sub of d.directories) m.set(sub.name, { kind: "dir", value: "", digest: fromWire(fn, sub.digest, "directory") });
      return m;
    };
    const eb = entries(db!);
    const ea = entries(da!);
    for (const [name, x] of ea) {
      const y = eb.get(name);
      const path = join(prefix, name);
      if (x.kind === "dir") {
        if (y?.kind === "dir") await walk(y.digest!, x.digest!, path);
        else {
          if (y) add({ name: path, before: y.value });
          await whole(x.digest!, path, "after");
        }
      } else if (!y) add({ name: path, after: x.value });
      else if (y.kind === "dir") {
        await whole(y.digest!, path, "before");
        add({ name: path, after: x.value });
      } else if (y.value !== x.value) add({ name: path, before: y.value, after: x.value });
      else if (y.executable !== x.executable) {
        const mode = (executable?: boolean) => `${x.value} (${executable ? "" : "not "}executable)`;
        add({ name: path, before: mode(y.executable), after: mode(x.executable) });
      }
    }
    for (const [name, y] of eb) {
      if (ea.has(name)) continue;
      if (y.kind === "dir") await whole(y.digest!, join(prefix, name), "before");
      else add({ name: join(prefix, name), before: y.value });
    }
  };
  try {
    if (before !== "" && after !== "") await walk(parse(before), parse(after), "");
  } catch (err) {
    out.unknown = (err as Error).message;
  }
  return out;
}

/** What differs between the earlier run (if any) and this one. */
export async function explainMiss(messages: MessageCache, previous: ActionRecord | undefined, now: ActionRecord, skippedLookup: boolean): Promise<MissExplanation> {
  const empty: MissExplanation = { summary: "", inputs: [], inputsChanged: 0, args: [], env: [], platform: [], other: [] };
  if (skippedLookup) empty.other.push({ name: "skip_cache_lookup", after: "true" });
  if (!previous) return { ...empty, summary: skippedLookup ? "asked to run again (skip_cache_lookup)" : "first run here (nothing earlier is recorded for this target, mnemonic and output)" };
  const at = new Date(previous.atMs).toISOString();
  const e: MissExplanation = { ...empty, previous: { action: previous.action, at, exitCode: previous.exitCode, failure: previous.failure } };
  if (previous.action === now.action) {
    const why = previous.failure
      ? `it did not run then (${shown(previous.failure)})`
      : previous.exitCode !== undefined && previous.exitCode !== 0
        ? `it exited ${previous.exitCode}, and failures are not cached`
        : previous.doNotCache
          ? "it has do_not_cache set"
          : skippedLookup
            ? "asked to run again (skip_cache_lookup)"
            : "its result is no longer in the action cache (evicted, or it was never stored)";
    return { ...e, summary: `the same action ran at ${at}: ${why}` };
  }
  if (previous.fn !== now.fn) e.other.push({ name: "digest function", before: previous.fn, after: now.fn });
  const tree = previous.fn === now.fn && previous.inputRoot !== now.inputRoot ? await treeChanges(messages, now.fn, previous.inputRoot, now.inputRoot) : { changes: [], count: 0 };
  e.inputs = tree.changes.map(cut);
  e.inputsChanged = tree.count;
  e.inputsUnknown = tree.unknown;
  e.args = argChanges(previous.args, now.args);
  e.env = pairChanges(previous.env, now.env).map(cut);
  e.platform = pairChanges(previous.platform, now.platform).map(cut);
  const field = (name: string, before: string, after: string) => before !== after && e.other.push({ name, before: shown(before), after: shown(after) });
  field("outputs", previous.outputs.join(" "), now.outputs.join(" "));
  field("working_directory", previous.workingDirectory, now.workingDirectory);
  field("timeout", `${previous.timeoutMs} ms`, `${now.timeoutMs} ms`);
  field("salt", previous.salt, now.salt);
  field("do_not_cache", String(previous.doNotCache), String(now.doNotCache));
  e.summary = summarize(e);
  return e;
}

function summarize(e: MissExplanation): string {
  const parts: string[] = [];
  const names = (cs: Change[]) => cs.slice(0, 3).map((c) => c.name).join(", ") + (cs.length > 3 ? ", …" : "");
  if (e.inputsChanged > 0) parts.push(`${e.inputsChanged} input${e.inputsChanged === 1 ? "" : "s"} changed (${names(e.inputs)})`);
  else if (e.inputsUnknown) parts.push(`the inputs changed (${e.inputsUnknown})`);
  if (e.args.length > 0) parts.push(`arguments changed (${names(e.args)})`);
  if (e.env.length > 0) parts.push(`environment changed (${names(e.env)})`);
  if (e.platform.length > 0) parts.push(`platform changed (${names(e.platform)})`);
  if (e.other.length > 0) parts.push(`${names(e.other)} changed`);
  return parts.length > 0 ? parts.join("; ") : "the action differs in nothing recorded here";
}
