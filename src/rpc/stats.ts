// Traffic counters, summarised in the log once a minute while there is traffic, and at shutdown,
// so a user can see the cache at work without debug logging.
import { formatMiB, type Logger } from "../core";
import type { Requester } from "../exec";

/** An action cache lookup, for the status page's recent actions. */
export interface Lookup {
  atMs: number;
  action: string;
  hit: boolean;
  requester?: Requester;
}

const LOOKUPS_KEPT = 300;
const INVOCATIONS_KEPT = 50;

const COUNTERS = ["acHits", "acMisses", "acUpdates", "blobsStored", "bytesStored", "blobsRead", "bytesRead", "assetFetches", "assetHits"] as const;
type Counter = (typeof COUNTERS)[number];
type Counts = Record<Counter, number>;

function zeroCounts(): Counts {
  return Object.fromEntries(COUNTERS.map((c) => [c, 0])) as Counts;
}

export class Stats {
  private readonly now = zeroCounts();
  private readonly reported = zeroCounts();
  /** Calls finished since start, by "Method code" (the gRPC status code's name). */
  private readonly finished = new Map<string, number>();
  private readonly lookups: Lookup[] = [];
  /** Hits and misses by Bazel invocation (tool_invocation_id), the latest few. */
  private readonly invocations = new Map<string, { hits: number; misses: number; lastMs: number }>();

  /** Records an action cache lookup (GetActionResult, or Execute's own) and who made it. */
  lookup(l: Lookup): void {
    this.lookups.push(l);
    if (this.lookups.length > LOOKUPS_KEPT) this.lookups.shift();
    const id = l.requester?.invocation;
    if (!id) return;
    const inv = this.invocations.get(id) ?? { hits: 0, misses: 0, lastMs: 0 };
    this.invocations.delete(id);
    this.invocations.set(id, { hits: inv.hits + (l.hit ? 1 : 0), misses: inv.misses + (l.hit ? 0 : 1), lastMs: l.atMs });
    if (this.invocations.size > INVOCATIONS_KEPT) this.invocations.delete(this.invocations.keys().next().value!);
  }

  /** The latest lookups (oldest first), and hits and misses by invocation (latest last). */
  activity(): { lookups: readonly Lookup[]; invocations: { id: string; hits: number; misses: number; lastMs: number }[] } {
    return { lookups: [...this.lookups], invocations: [...this.invocations].map(([id, v]) => ({ id, ...v })) };
  }

  count(counter: Counter, n = 1): void {
    this.now[counter] += n;
  }

  /** Counts a finished call. */
  call(method: string, code: string): void {
    const key = `${method} ${code}`;
    this.finished.set(key, (this.finished.get(key) ?? 0) + 1);
  }

  /** What happened since start: the counters, and calls by method and code. */
  totals(): { counts: Readonly<Record<Counter, number>>; calls: { method: string; code: string; n: number }[] } {
    const calls = [...this.finished].map(([key, n]) => {
      const [method, code] = key.split(" ") as [string, string];
      return { method, code, n };
    });
    return { counts: { ...this.now }, calls };
  }

  /** Logs what happened since the last report, if anything did. */
  report(log: Logger, label: string, since: Counts = this.reported): void {
    const d = Object.fromEntries(COUNTERS.map((c) => [c, this.now[c] - since[c]])) as Counts;
    if (COUNTERS.every((c) => d[c] === 0)) return;
    log.info(
      `${label}: action cache ${d.acHits} hits, ${d.acMisses} misses, ${d.acUpdates} updates; ` +
        `blobs ${d.blobsStored} stored (${formatMiB(d.bytesStored)}), ${d.blobsRead} read (${formatMiB(d.bytesRead)})` +
        (d.assetFetches + d.assetHits > 0 ? `; assets ${d.assetFetches} downloaded, ${d.assetHits} already known` : ""),
    );
    Object.assign(this.reported, this.now);
  }

  /** Reports every intervalMs while there is traffic; returns a function that stops it. */
  every(log: Logger, intervalMs: number): () => void {
    const timer = setInterval(() => this.report(log, `last ${intervalMs / 1000}s`), intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** Logs the totals since start. */
  reportTotals(log: Logger): void {
    this.report(log, "since start", zeroCounts());
  }
}

