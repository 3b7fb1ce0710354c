// Where each action's time went (queue, execroot, sandbox start, run, output collection): kept for
// the last few thousand actions, reported as p50/p95 in the log and read by the benchmark.
import type { Logger } from "../core";

export interface ActionTiming {
  queueMs: number;
  execrootMs: number;
  sandboxStartMs: number;
  runMs: number;
  outputMs: number;
}

const PHASES: (keyof ActionTiming)[] = ["queueMs", "execrootMs", "sandboxStartMs", "runMs", "outputMs"];
const KEEP = 5000;

export class ExecTimings {
  private readonly recent: ActionTiming[] = [];
  private total = 0;
  private readonly observers = new Set<(t: ActionTiming) => void>();

  add(t: ActionTiming): void {
    this.total++;
    this.recent.push(t);
    if (this.recent.length > KEEP) this.recent.shift();
    for (const o of this.observers) o(t);
  }

  /** Calls fn with each executed action's timing from now on (the metrics' histograms). */
  observe(fn: (t: ActionTiming) => void): void {
    this.observers.add(fn);
  }

  /** Actions executed since start. */
  get count(): number {
    return this.total;
  }

  /** p50 and p95 of each phase over the kept actions, in milliseconds. */
  percentiles(): Record<keyof ActionTiming, { p50: number; p95: number }> | undefined {
    if (this.recent.length === 0) return undefined;
    const out = {} as Record<keyof ActionTiming, { p50: number; p95: number }>;
    for (const phase of PHASES) {
      const sorted = this.recent.map((t) => t[phase]).sort((a, b) => a - b);
      const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
      out[phase] = { p50: at(0.5), p95: at(0.95) };
    }
    return out;
  }

  private reported = 0;

  /** Logs the summary if actions ran since the last report (for the periodic log). */
  reportIfNew(log: Logger): void {
    if (this.total > this.reported) this.report(log);
  }

  report(log: Logger): void {
    this.reported = this.total;
    const p = this.percentiles();
    if (!p) return;
    const fmt = (k: keyof ActionTiming) => `${k.replace(/Ms$/, "")} ${p[k].p50.toFixed(1)}/${p[k].p95.toFixed(1)}`;
    log.info(`executed ${this.total} actions; ms p50/p95: ${PHASES.map(fmt).join(", ")}`);
  }
}
