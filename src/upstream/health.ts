// Whether the upstream is worth asking, and the counters a user reads to see the tier at work.
// A call that fails for want of the upstream (down, slow, overloaded) marks it down for a while,
// growing up to half a minute, so a dead upstream costs one timeout, not one per call; the change is
// logged once each way. Any other refusal is logged once per kind and counted.
import { Code, StatusError, formatMiB, type Clock, type Logger } from "../core";

const FIRST_PAUSE_MS = 1000;
const LONGEST_PAUSE_MS = 30_000;

/** Codes that say the upstream is not there to answer, rather than that it answered no. */
const UNREACHABLE: readonly Code[] = [Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED, Code.CANCELLED, Code.UNKNOWN, Code.INTERNAL, Code.ABORTED];

export const UPSTREAM_COUNTERS = [
  "resultHits",
  "resultMisses",
  "blobsFetched",
  "bytesFetched",
  "corrupt",
  "resultsPushed",
  "blobsPushed",
  "bytesPushed",
  "failedCalls",
  "skippedCalls",
  "droppedPushes",
] as const;
export type UpstreamCounter = (typeof UPSTREAM_COUNTERS)[number];

export class UpstreamHealth {
  readonly counts = Object.fromEntries(UPSTREAM_COUNTERS.map((c) => [c, 0])) as Record<UpstreamCounter, number>;
  private downUntil = 0;
  private pauseMs = FIRST_PAUSE_MS;
  private down = false;
  private readonly refusalsLogged = new Set<string>();
  private readonly waiters: (() => void)[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly address: string,
    private readonly log: Logger,
    private readonly clock: Clock,
  ) {}

  count(counter: UpstreamCounter, n = 1): void {
    this.counts[counter] += n;
  }

  /** True unless a recent call found the upstream unreachable. */
  get usable(): boolean {
    return this.clock.now() >= this.downUntil;
  }

  /** Resolves once the upstream is worth asking again (at once when it is). */
  async untilUsable(): Promise<void> {
    if (this.usable) return;
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /**
   * Runs a call to the upstream; when it fails, or the upstream is down, returns `fallback`
   * instead (a local-only answer), after recording why.
   */
  async ask<T>(what: string, call: () => Promise<T>, fallback: T): Promise<T> {
    if (!this.usable) {
      this.count("skippedCalls");
      return fallback;
    }
    try {
      const out = await call();
      this.answered();
      return out;
    } catch (err) {
      this.failed(what, err);
      return fallback;
    }
  }

  /** Records a success: an upstream that was down is up again. */
  answered(): void {
    if (!this.down) return;
    this.down = false;
    this.pauseMs = FIRST_PAUSE_MS;
    this.log.info(`upstream ${this.address} answers again: using it`);
  }

  /** Records a failed call: marks the upstream down when it did not answer, logs the first of each kind. */
  failed(what: string, err: unknown): void {
    this.count("failedCalls");
    const code = err instanceof StatusError ? err.code : Code.UNKNOWN;
    const message = err instanceof Error ? err.message : String(err);
    if (UNREACHABLE.includes(code)) {
      this.downUntil = this.clock.now() + this.pauseMs;
      this.pauseMs = Math.min(this.pauseMs * 2, LONGEST_PAUSE_MS);
      this.wakeWhenUsable();
      if (!this.down) this.log.warn(`upstream ${this.address} is not answering (${what}: ${message}): serving from the local cache only until it does`);
      this.down = true;
      return;
    }
    const kind = `${what}/${Code[code]}`;
    if (!this.refusalsLogged.has(kind)) {
      this.refusalsLogged.add(kind);
      this.log.warn(`upstream ${this.address} refused ${what} (${message}); going on without it (logged once)`);
    }
  }

  /** Records bytes from the upstream that do not match their digest. */
  corrupt(what: string, message: string): void {
    this.count("corrupt");
    this.log.warn(`upstream ${this.address} sent ${what} whose bytes do not match its digest (${message}); not taken`);
  }

  /** Records an action result from the upstream that is not taken (an output path outside the working directory). */
  refusedResult(action: { hash: string; size: number }, why: string): void {
    this.count("corrupt");
    this.log.warn(`upstream ${this.address} sent a result for action ${action.hash}/${action.size} that is not taken: ${why}`);
  }

  close(): void {
    clearTimeout(this.timer);
    this.waiters.splice(0).forEach((w) => w());
  }

  private wakeWhenUsable(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.waiters.splice(0).forEach((w) => w()), Math.max(0, this.downUntil - this.clock.now()));
    this.timer.unref?.();
  }

  /** One line for the periodic report; empty when nothing happened. */
  summary(queued: number): string {
    const c = this.counts;
    return (
      `upstream ${this.down ? "down" : "up"}: results ${c.resultHits} hits, ${c.resultMisses} misses; ` +
      `${c.blobsFetched} blobs fetched (${formatMiB(c.bytesFetched)}), ${c.corrupt} corrupt; ` +
      `pushed ${c.resultsPushed} results, ${c.blobsPushed} blobs (${formatMiB(c.bytesPushed)}), ${queued} queued, ${c.droppedPushes} dropped; ` +
      `${c.failedCalls} failed calls, ${c.skippedCalls} skipped while down`
    );
  }
}

