// What the status endpoints show of `actiond serve`: a snapshot read, when asked, from each
// part's own counters (the store, the executor, the gRPC edge's stats, the upstream tier).
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import pkg from "../../package.json" with { type: "json" };
import { ExecutionStage_Value } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { formatDigest, type DiskStore } from "../cas";
import { followOutput, type Execution, type Executor } from "../exec";
import type { Lookup, Stats } from "../rpc";
import { UPSTREAM_COUNTERS, type UpstreamTier } from "../upstream";
import type { ActionLogs, ExplainedAction, RecentAction, StatusSnapshot, StatusSource } from "../web";

/** The status endpoints' view of this server, read from each part's own counters when asked. */
export function statusSource(root: string, store: DiskStore, executor: Executor, upstream: UpstreamTier | undefined, stats: Stats): StatusSource {
  const started = Date.now();
  return {
    snapshot(lists = true): StatusSnapshot {
      const now = Date.now();
      const known = executor.list();
      const executionsByStage: Record<string, number> = {};
      for (const e of known) {
        const stage = ExecutionStage_Value[e.stage] ?? String(e.stage);
        executionsByStage[stage] = (executionsByStage[stage] ?? 0) + 1;
      }
      const { counts, calls } = stats.totals();
      const activity = lists ? stats.activity() : { lookups: [], invocations: [] };
      const usage = store.usage();
      return {
        version: pkg.version,
        startedAt: new Date(started).toISOString(),
        uptimeSeconds: (now - started) / 1000,
        worker: { root, ...executor.worker },
        executionsByStage,
        executions: (lists ? known : []).map((e) => ({
          name: e.name,
          action: formatDigest(e.action),
          stage: ExecutionStage_Value[e.stage] ?? String(e.stage),
          elapsedSeconds: ((e.finishedMs ?? now) - e.startedMs) / 1000,
          target: e.requester?.target ?? "",
          mnemonic: e.requester?.mnemonic ?? "",
          argv0: e.command?.argv0 ?? "",
          runtime: e.command?.runtime ?? "",
          tail: !e.done && e.liveOutput ? { stdout: tailOf(e.liveOutput.stdout), stderr: tailOf(e.liveOutput.stderr) } : undefined,
        })),
        recent: lists ? recentActions(known, activity.lookups) : [],
        invocations: activity.invocations.reverse().map((i) => ({ id: i.id, hits: i.hits, misses: i.misses, last: new Date(i.lastMs).toISOString() })),
        executed: executor.timings.count,
        failures: { ...executor.failures },
        sharedInputDirs: executor.sharedDirs(),
        phases: executor.timings.percentiles(),
        cache: { ...counts, storedBytes: usage.bytes, maxBytes: usage.maxBytes, storedFiles: usage.files, evictions: usage.evictions },
        calls,
        upstream: upstream && {
          address: upstream.health.address,
          up: upstream.health.usable,
          queued: upstream.pushes.length,
          counts: Object.fromEntries(UPSTREAM_COUNTERS.map((c) => [c, upstream.health.counts[c]])),
        },
      };
    },
    logs: (selector) => actionLogs(executor.list(), store, selector),
    explain: (selector) => explain(executor, selector),
    onAction: (fn) => executor.timings.observe((t) => fn({ ...t })),
  };
}

const RECENT_SHOWN = 300;
/** How much of a running action's stdout and stderr the page shows. */
const TAIL_BYTES = 1024;

/** The last TAIL_BYTES of a file being written (its last lines), empty when it is not there. */
function tailOf(path: string): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const size = fstatSync(fd).size;
    const b = Buffer.alloc(Math.min(size, TAIL_BYTES));
    const n = readSync(fd, b, 0, b.length, size - b.length);
    const text = b.subarray(0, n).toString("utf8");
    // From the first whole line, when the start was cut.
    return size > TAIL_BYTES && text.includes("\n") ? text.slice(text.indexOf("\n") + 1) : text;
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Lookups and finished executions, newest first; an execution's phases from its ExecutedActionMetadata. */
function recentActions(executions: Execution[], lookups: readonly Lookup[]): RecentAction[] {
  const ms = (t: Timestamp | undefined) => (t ? Number(t.seconds) * 1000 + t.nanos / 1e6 : undefined);
  const span = (a: Timestamp | undefined, b: Timestamp | undefined) => {
    const x = ms(a);
    const y = ms(b);
    return x !== undefined && y !== undefined ? Math.max(0, y - x) : undefined;
  };
  const out: (RecentAction & { atMs: number })[] = lookups.map((l) => ({
    atMs: l.atMs,
    at: new Date(l.atMs).toISOString(),
    action: l.action,
    target: l.requester?.target ?? "",
    mnemonic: l.requester?.mnemonic ?? "",
    outcome: l.hit ? "hit" : "miss",
  }));
  for (const e of executions) {
    const r = e.response;
    if (!r || r.cachedResult || e.finishedMs === undefined) continue;
    const m = r.result?.executionMetadata;
    const ran = r.result !== undefined && (r.status?.code ?? 0) === 0;
    const phases: Record<string, number> = {};
    const t = e.timing;
    // The runner's own breakdown when it ran; else what its ExecutedActionMetadata says.
    const measured: [string, number | undefined][] = t
      ? [["queue", t.queueMs], ["execroot", t.execrootMs], ["sandbox start", t.sandboxStartMs], ["run", t.runMs], ["outputs", t.outputMs]]
      : [
          ["queue", span(m?.queuedTimestamp, m?.workerStartTimestamp)],
          ["inputs", span(m?.inputFetchStartTimestamp, m?.inputFetchCompletedTimestamp)],
          ["run", span(m?.executionStartTimestamp, m?.executionCompletedTimestamp)],
          ["outputs", span(m?.outputUploadStartTimestamp, m?.outputUploadCompletedTimestamp)],
        ];
    for (const [name, v] of measured) if (v !== undefined) phases[name] = v;
    out.push({
      atMs: e.finishedMs,
      at: new Date(e.finishedMs).toISOString(),
      action: formatDigest(e.action),
      target: e.requester?.target ?? "",
      mnemonic: e.requester?.mnemonic ?? "",
      outcome: ran && r.result!.exitCode === 0 ? "executed" : "failed",
      exitCode: r.result?.exitCode,
      durationMs: e.finishedMs - e.startedMs,
      phases,
      message: ran ? undefined : r.status?.message || r.message,
      stderr: e.stderrTail || undefined,
      why: e.whyMissed,
    });
  }
  out.sort((a, b) => b.atMs - a.atMs);
  return out.slice(0, RECENT_SHOWN).map(({ atMs: _, ...rest }) => rest);
}

/** A target's records; else the execution an action digest (or its start) names, newest first, against its target's record. */
async function explain(executor: Executor, selector: string): Promise<ExplainedAction[]> {
  const byTarget = await executor.records(selector);
  if (byTarget.length > 0 || !/^[0-9a-f]{4,}/.test(selector)) return byTarget;
  const e = executor
    .list()
    .filter((x) => x.whyMissed && (x.action.hash.startsWith(selector) || formatDigest(x.action) === selector))
    .at(-1);
  if (!e) return [];
  const action = formatDigest(e.action);
  const records = await executor.records(e.requester?.target ?? "");
  const own = records.find((r) => r.action === action);
  // Its own record has been replaced by a later run's: the line is all that is left.
  const why = { summary: e.whyMissed!, inputs: [], inputsChanged: 0, args: [], env: [], platform: [], other: [] };
  return [own ?? { target: e.requester?.target ?? "", mnemonic: e.requester?.mnemonic ?? "", output: "", action, atMs: e.startedMs, why }];
}

/** The execution a selector names (a target, or an action digest or its start), running ones first, newest first. */
function actionLogs(executions: Execution[], store: DiskStore, selector: string | undefined): ActionLogs | undefined {
  const matches = (e: Execution) =>
    selector === undefined || e.requester?.target === selector || e.action.hash.startsWith(selector) || formatDigest(e.action) === selector;
  const candidates = executions.filter((e) => matches(e) && (!e.done || e.response?.result !== undefined) && !e.response?.cachedResult);
  const e = candidates.filter((c) => !c.done).at(-1) ?? candidates.at(-1);
  if (!e) return undefined;
  return {
    action: formatDigest(e.action),
    target: e.requester?.target ?? "",
    stream: (follow, signal) => followOutput(e, store.blobs, ["stdout", "stderr"], { follow, signal }),
  };
}
