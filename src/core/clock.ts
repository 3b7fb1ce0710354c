// Time as a dependency: the parts of the server that wait (grace periods, expiry, recency) take a
// Clock, so their tests can move time on instead of sleeping through it.

export interface Clock {
  /** Milliseconds since the epoch, like Date.now(). */
  now(): number;
  /** Calls fn once after ms; the returned function cancels it. The timer never keeps the process alive. */
  after(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};
