// Long loops on the event loop (a tree of a million entries, a call naming 200,000 digests) run in
// slices, so that every other call gets its turn between them.

/** Resolves on the event loop's next turn, after the I/O and timers that are due. */
export const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A pause for a loop: `const pause = slices(5000)`, then `await pause()` at each step; every
 * `every`th step waits for the event loop to run what else is due (setImmediate: after I/O).
 */
export function slices(every: number): () => Promise<void> | undefined {
  let steps = 0;
  return () => (++steps % every === 0 ? nextTurn() : undefined);
}

/**
 * A pause for a loop of filesystem calls, whose cost no count predicts (a mkdir took 20 µs on one
 * disk and 200 µs on another): `await pause()` at each step waits for the event loop's next turn
 * once `ms` have passed since the last one.
 */
export function timeSlices(ms: number): () => Promise<void> | undefined {
  let since = performance.now();
  return () => {
    const now = performance.now();
    if (now - since < ms) return undefined;
    return nextTurn().then(() => void (since = performance.now()));
  };
}

/**
 * Sorts like Array.prototype.sort, in slices: runs of a few thousand sorted at once, then merged
 * pairwise with a pause every few thousand steps (a million entries sorted at once held the event
 * loop for seconds).
 */
export async function sortInSlices<T>(items: T[], compare: (a: T, b: T) => number): Promise<T[]> {
  const RUN = 4096;
  const pause = slices(8192);
  let runs: T[][] = [];
  for (let at = 0; at < items.length; at += RUN) {
    runs.push(items.slice(at, at + RUN).sort(compare));
    await pause();
  }
  while (runs.length > 1) {
    const merged: T[][] = [];
    for (let i = 0; i < runs.length; i += 2) {
      const a = runs[i]!;
      const b = runs[i + 1];
      if (!b) {
        merged.push(a);
        continue;
      }
      const out: T[] = [];
      let x = 0;
      let y = 0;
      while (x < a.length && y < b.length) {
        out.push(compare(b[y]!, a[x]!) < 0 ? b[y++]! : a[x++]!);
        await pause();
      }
      while (x < a.length) out.push(a[x++]!);
      while (y < b.length) out.push(b[y++]!);
      merged.push(out);
    }
    runs = merged;
  }
  return runs[0] ?? [];
}
