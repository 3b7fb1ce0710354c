// What the status endpoints show: a plain snapshot the serving command assembles from each layer's
// own counters when asked (so nothing here reaches into the layers).
import type { ActionRecord } from "../exec";
export interface StatusSnapshot {
  version: string;
  /** ISO time the server started. */
  startedAt: string;
  uptimeSeconds: number;
  worker: { root: string; sandbox: string; jobs: number; runtimes: string[]; cgroups: string; limits: string[]; unbounded: string[] };
  /** Executions known by name: queued, running, or recently finished. */
  executions: {
    name: string;
    action: string;
    stage: string;
    elapsedSeconds: number;
    target: string;
    mnemonic: string;
    /** What it runs: its first argument, in which runtime. */
    argv0: string;
    runtime: string;
    /** While it runs: the last lines it wrote to stdout and stderr. */
    tail?: { stdout: string; stderr: string };
  }[];
  /** The latest actions asked about, newest first: cache lookups and executions. */
  recent: RecentAction[];
  /** Action cache hits and misses by Bazel invocation (tool_invocation_id), newest first. */
  invocations: { id: string; hits: number; misses: number; last: string }[];
  /** Executions known by name, counted by stage. */
  executionsByStage: Record<string, number>;
  /** Actions executed since start. */
  executed: number;
  /** Executions that did not end with a result, by gRPC code (INTERNAL: the sandbox failed; DEADLINE_EXCEEDED: the timeout). */
  failures: Record<string, number>;
  /** Input directories shared between actions (absent when they are not: --shared-input-dirs off, or no overlay here). */
  sharedInputDirs?: { entries: number; nodes: number; bytes: number; laidOut: number; mounted: number };
  /** p50/p95 (ms) of each phase over recent actions, when any ran. */
  phases?: Record<string, { p50: number; p95: number }>;
  cache: {
    acHits: number;
    acMisses: number;
    acUpdates: number;
    blobsStored: number;
    bytesStored: number;
    blobsRead: number;
    bytesRead: number;
    /** The store on disk against --max-cas-size. */
    storedBytes: number;
    maxBytes: number;
    storedFiles: number;
    evictions: number;
  };
  /** Finished calls by method and gRPC code. */
  calls: { method: string; code: string; n: number }[];
  upstream?: { address: string; up: boolean; queued: number; counts: Record<string, number> };
}

export interface RecentAction {
  /** ISO time. */
  at: string;
  action: string;
  target: string;
  mnemonic: string;
  /** hit, miss (a lookup); executed, failed (an execution: failed when it did not run or exited non-zero). */
  outcome: "hit" | "miss" | "executed" | "failed";
  exitCode?: number;
  /** Milliseconds, for executions: in all, and by phase (queue, execroot, sandbox start, run, outputs). */
  durationMs?: number;
  phases?: Record<string, number>;
  /** Why it failed, when it did not run (a refused action, a sandbox error). */
  message?: string;
  /** The end of its stderr, when it exited non-zero. */
  stderr?: string;
  /** For an execution: why it missed the cache, in one line (the details: /api/explain). */
  why?: string;
}

/** An executed action and why it missed (against the run before it), as `actiond explain` prints it. */
export type ExplainedAction = Pick<ActionRecord, "target" | "mnemonic" | "output" | "action" | "atMs" | "exitCode" | "failure" | "why">;

export interface StatusSource {
  /**
   * The snapshot; with lists false, without the per-action lists (executions and recent are
   * empty, executionsByStage still counts them): what /metrics needs, at a fraction of the cost.
   */
  snapshot(lists?: boolean): StatusSnapshot;
  /**
   * The logs of the action `selector` names (a target label, or an action digest or its start;
   * none: the latest), preferring one that runs; undefined when none matches.
   */
  logs(selector: string | undefined): ActionLogs | undefined;
  /**
   * Why actions missed: the records of a target (each mnemonic and output), or of the execution an
   * action digest (or its start) names; newest first.
   */
  explain(selector: string): Promise<ExplainedAction[]>;
  /** Calls fn with each executed action's phase times (ms), for the histograms. */
  onAction(fn: (phases: Record<string, number>) => void): void;
}

/** One action's stdout and stderr, for `actiond logs`: live while it runs, from the CAS after. */
export interface ActionLogs {
  action: string;
  target: string;
  /** Its stdout and stderr from the start: with follow, until it ends (else what there is now). */
  stream(follow: boolean, signal: AbortSignal): AsyncIterable<Uint8Array>;
}
