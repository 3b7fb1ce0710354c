// Executions in progress and recently finished, by operation name (for WaitExecution and the
// Operations service) and by action (so identical actions in flight run once). An execution runs
// while someone watches it: when the last watcher leaves and nobody re-attaches within a short
// grace period, it is cancelled.
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { ExecuteResponseSchema, ExecutionStage_Value as Stage, type ExecuteResponse } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError, asStatusError, systemClock, type Clock } from "../core";
import { digestKey, type BlobDigest } from "../cas";
import type { ActionTiming } from "./timings";

/** How long a finished execution can still be fetched with WaitExecution. */
export const KEEP_FINISHED_MS = 10 * 60 * 1000;
/** The most finished executions kept (cache hits come by the thousand); the oldest go first. */
export const KEEP_FINISHED_COUNT = 10_000;
/** How long an execution nobody watches waits for a watcher to come back (WaitExecution) before it is cancelled. */
export const ORPHAN_GRACE_MS = 3000;

export type Watcher = (e: Execution) => void;

/** Who asked for an action, from Bazel's RequestMetadata (for the status page; empty when not sent). */
export interface Requester {
  target: string;
  mnemonic: string;
  actionId: string;
  invocation: string;
}

export class Execution {
  stage: Stage = Stage.QUEUED;
  /** Every stage it went through, in order (the last is `stage`). */
  readonly history: Stage[] = [Stage.QUEUED];
  response: ExecuteResponse | undefined;
  private readonly watchers = new Set<Watcher>();
  private readonly controller = new AbortController();
  private cancelOrphan: (() => void) | undefined;
  /** When it was asked for (ms since the epoch). */
  readonly startedMs: number;
  /** When it completed (ms since the epoch). */
  finishedMs: number | undefined;
  /** Who asked first (a merged execution keeps the first asker). */
  requester: Requester | undefined;
  /** Where its stdout and stderr are being written while it runs (the files go when it finishes). */
  liveOutput: { stdout: string; stderr: string } | undefined;
  /** What it runs, for the status page (set when it starts). */
  command: { argv0: string; runtime: string } | undefined;
  /** Where its time went (ms by phase), once it ran. */
  timing: ActionTiming | undefined;
  /** The end of its stderr when it exited non-zero (for the status page). */
  stderrTail: string | undefined;
  /** False for one over before it began (a cached result, a refused action): it has no output to follow. */
  runs = true;
  /**
   * Why it missed the cache, in one line, against the last run recorded for its target (set soon
   * after it starts). Only the line: finished executions stay listed by the thousand, and the
   * details are in the record on disk, which is bounded.
   */
  whyMissed: string | undefined;

  private markEnded!: () => void;
  /** Resolves once it has finished; waiting on it does not keep it alive (watching does). */
  readonly ended = new Promise<void>((resolve) => (this.markEnded = resolve));

  constructor(
    readonly name: string,
    readonly action: BlobDigest,
    private readonly clock: Clock,
  ) {
    this.startedMs = clock.now();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get done(): boolean {
    return this.response !== undefined;
  }

  /** Calls watcher on every change from now on; the returned function detaches it. */
  watch(watcher: Watcher): () => void {
    this.watchers.add(watcher);
    this.cancelOrphan?.();
    this.cancelOrphan = undefined;
    return () => {
      if (!this.watchers.delete(watcher) || this.watchers.size > 0 || this.done) return;
      this.cancelOrphan = this.clock.after(ORPHAN_GRACE_MS, () => this.cancel("nobody waits for this action any more"));
    };
  }

  /** Stops the execution: out of the queue, or its processes killed. */
  cancel(why: string): void {
    this.controller.abort(new StatusError(Code.CANCELLED, why));
  }

  setStage(stage: Stage): void {
    if (stage === this.stage) return;
    this.stage = stage;
    this.history.push(stage);
    this.notify();
  }

  finish(response: ExecuteResponse): void {
    this.cancelOrphan?.();
    this.finishedMs = this.clock.now();
    this.response = response;
    this.setStage(Stage.COMPLETED);
    this.markEnded();
  }

  private notify(): void {
    for (const w of [...this.watchers]) w(this);
  }
}

export class Executions {
  /** By name, in the order they were started (or finished, for those over before they began). */
  private readonly byName = new Map<string, Execution>();
  private readonly inFlight = new Map<string, Execution>();
  private readonly running = new Set<Promise<void>>();
  private finishedCount = 0;
  /** The expiry timer of each finished execution kept, cancelled when it goes earlier (else it would hold it). */
  private readonly expiries = new Map<string, () => void>();

  constructor(private readonly clock: Clock = systemClock) {}

  /**
   * An execution that is over before it began: a cached result ("cached"), or an action refused
   * while being checked ("failed"). It is kept by name like any other.
   */
  finished(kind: "cached" | "failed", action: BlobDigest, response: ExecuteResponse): Execution {
    const e = new Execution(`operations/${kind}-${randomUUID()}`, action, this.clock);
    e.history.splice(0);
    e.runs = false;
    e.finish(response);
    this.byName.set(e.name, e);
    this.keep(e);
    return e;
  }

  /**
   * Joins the identical action already in flight, or starts run for a new execution. Actions with
   * do_not_cache are never merged (REAPI).
   */
  start(action: BlobDigest, mergeable: boolean, run: (e: Execution) => Promise<ExecuteResponse>): Execution {
    const key = digestKey(action);
    const existing = mergeable ? this.inFlight.get(key) : undefined;
    // One being cancelled (its last caller left) is not joined: this caller wants a result.
    if (existing && !existing.signal.aborted) return existing;
    const e = new Execution(`operations/${randomUUID()}`, action, this.clock);
    this.byName.set(e.name, e);
    if (mergeable) this.inFlight.set(key, e);
    const done = run(e)
      .catch((err) => {
        const status = asStatusError(err);
        return create(ExecuteResponseSchema, { status: status.toStatus(), message: status.message });
      })
      .then((response) => {
        if (this.inFlight.get(key) === e) this.inFlight.delete(key);
        e.finish(response);
        this.keep(e);
      });
    this.running.add(done);
    void done.finally(() => this.running.delete(done));
    return e;
  }

  get(name: string): Execution | undefined {
    return this.byName.get(name);
  }

  /** Every execution known by name: running, queued, and finished within the window. */
  list(): Execution[] {
    return [...this.byName.values()];
  }

  /** Forgets an execution's name (it goes on if it runs); false when there was none. */
  forget(name: string): boolean {
    const e = this.byName.get(name);
    if (!e) return false;
    this.byName.delete(name);
    this.expiries.get(name)?.();
    this.expiries.delete(name);
    if (e.done) this.finishedCount--;
    return true;
  }

  /** A finished execution stays findable for KEEP_FINISHED_MS, among the newest KEEP_FINISHED_COUNT. */
  private keep(e: Execution): void {
    this.finishedCount++;
    this.expiries.set(
      e.name,
      this.clock.after(KEEP_FINISHED_MS, () => this.byName.get(e.name) === e && this.forget(e.name)),
    );
    for (const [name, old] of this.byName) {
      if (this.finishedCount <= KEEP_FINISHED_COUNT) break;
      if (old.done) this.forget(name);
    }
  }

  /** Cancels everything and waits until each execution has ended (its processes are gone). */
  async cancelAll(): Promise<void> {
    for (const e of this.byName.values()) if (!e.done) e.cancel("the server is shutting down");
    await Promise.all(this.running);
  }
}
