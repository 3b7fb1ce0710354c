// The executor's bookkeeping in-process, on a clock the test moves: identical actions merged, an
// execution nobody watches cancelled after the grace period (and not if someone comes back), a
// finished one findable for a while; and the job slots' order.
import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { ExecuteResponseSchema, type ExecuteResponse } from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Executions, KEEP_FINISHED_COUNT, KEEP_FINISHED_MS, ORPHAN_GRACE_MS, type Execution } from "../../src/exec/executions";
import { JobSlots } from "../../src/exec/job-slots";
import type { BlobDigest } from "../../src/cas";
import { ManualClock } from "../support/clock";

const action = (n: number): BlobDigest => ({ fn: "sha256", hash: n.toString(16).padStart(64, "0"), size: n });

/** An execution whose run ends when the test says (or when it is cancelled). */
function controlled() {
  let finish!: (r: ExecuteResponse) => void;
  let started = 0;
  const run = (e: Execution) => {
    started++;
    return new Promise<ExecuteResponse>((resolve, reject) => {
      finish = resolve;
      e.signal.addEventListener("abort", () => reject(e.signal.reason));
    });
  };
  return { run, finish: (r = create(ExecuteResponseSchema)) => finish(r), started: () => started };
}

const settled = (e: Execution) => new Promise<void>((resolve) => (e.done ? resolve() : e.watch(() => e.done && resolve())));

describe("executions", () => {
  test("identical actions in flight run once; do_not_cache ones never merge", async () => {
    const executions = new Executions(new ManualClock());
    const c = controlled();
    const a = executions.start(action(1), true, c.run);
    const b = executions.start(action(1), true, c.run);
    expect(b).toBe(a);
    const alone = executions.start(action(1), false, c.run);
    expect(alone).not.toBe(a);
    expect(c.started()).toBe(2);
    alone.cancel("test over");
    a.cancel("test over");
  });

  test("one nobody watches is cancelled once the grace period is over, and not before", async () => {
    const clock = new ManualClock();
    const executions = new Executions(clock);
    const c = controlled();
    const e = executions.start(action(2), true, c.run);
    const unwatch = e.watch(() => {});
    unwatch();
    clock.advance(ORPHAN_GRACE_MS - 1);
    expect(e.signal.aborted).toBe(false);
    clock.advance(1);
    expect(e.signal.aborted).toBe(true);
    await settled(e);
    expect(e.response?.status?.message).toContain("nobody waits for this action any more");
    // Cancelled, it is not joined: the next caller gets a new execution.
    expect(executions.start(action(2), true, c.run)).not.toBe(e);
  });

  test("a watcher that comes back within the grace period keeps it running", async () => {
    const clock = new ManualClock();
    const executions = new Executions(clock);
    const c = controlled();
    const e = executions.start(action(3), true, c.run);
    e.watch(() => {})();
    clock.advance(ORPHAN_GRACE_MS / 2);
    const unwatch = e.watch(() => {});
    clock.advance(10 * ORPHAN_GRACE_MS);
    expect(e.signal.aborted).toBe(false);
    c.finish();
    await settled(e);
    expect(e.response?.status).toBeUndefined();
    unwatch();
  });

  test("a finished execution is found by name for KEEP_FINISHED_MS, then forgotten", async () => {
    const clock = new ManualClock();
    const executions = new Executions(clock);
    const c = controlled();
    const e = executions.start(action(4), true, c.run);
    c.finish();
    await settled(e);
    expect(executions.get(e.name)).toBe(e);
    clock.advance(KEEP_FINISHED_MS - 1);
    expect(executions.get(e.name)).toBe(e);
    clock.advance(1);
    expect(executions.get(e.name)).toBeUndefined();
  });

  test("one pushed out by the newest KEEP_FINISHED_COUNT is let go at once: its expiry timer does not hold it for 10 minutes", async () => {
    const clock = new ManualClock();
    const executions = new Executions(clock);
    for (let i = 0; i < KEEP_FINISHED_COUNT + 5; i++) executions.finished("cached", action(i), create(ExecuteResponseSchema, {}));
    expect(executions.list().length).toBe(KEEP_FINISHED_COUNT);
    // One timer per execution kept, none for those forgotten (each held its execution until it fired).
    expect(clock.pending).toBe(KEEP_FINISHED_COUNT);
  });
});

describe("job slots", () => {
  test("at most `jobs` run; the rest go by priority (lower first), then in order of arrival", async () => {
    const slots = new JobSlots(1);
    const never = new AbortController().signal;
    const order: string[] = [];
    const first = await slots.acquire(0, never);
    const waiting = (["b:5", "c:-1", "d:5", "e:3"] as const).map(async (name) => {
      const release = await slots.acquire(Number(name.split(":")[1]), never);
      order.push(name.split(":")[0]!);
      release();
    });
    expect(order).toEqual([]);
    first();
    await Promise.all(waiting);
    expect(order).toEqual(["c", "e", "b", "d"]);
  });

  test("one that is cancelled while waiting leaves the line", async () => {
    const slots = new JobSlots(1);
    const never = new AbortController().signal;
    const first = await slots.acquire(0, never);
    const cancel = new AbortController();
    const gone = slots.acquire(0, cancel.signal);
    const next = slots.acquire(0, never);
    cancel.abort(new Error("left"));
    await expect(gone).rejects.toThrow("left");
    first();
    (await next)();
  });
});
