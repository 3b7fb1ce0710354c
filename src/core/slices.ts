// Long loops on the event loop (a tree of a million entries, a call naming 200,000 digests) run in
// slices, so that every other call gets its turn between them.

/**
 * A pause for a loop: `const pause = slices(5000)`, then `await pause()` at each step; every
 * `every`th step waits for the event loop to run what else is due (setImmediate: after I/O).
 */
export function slices(every: number): () => Promise<void> | undefined {
  let steps = 0;
  return () => (++steps % every === 0 ? new Promise<void>((resolve) => setImmediate(resolve)) : undefined);
}
