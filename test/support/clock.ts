// A clock a test moves by hand: the server's waits (grace periods, expiry, recency) happen when the
// test says, not after real time. Implements src/core's Clock.
import type { Clock } from "../../src/core";

export class ManualClock implements Clock {
  private at: number;
  private timers: { due: number; seq: number; fn: () => void }[] = [];
  private seq = 0;

  constructor(start = Date.now()) {
    this.at = start;
  }

  now(): number {
    return this.at;
  }

  after(ms: number, fn: () => void): () => void {
    const timer = { due: this.at + ms, seq: this.seq++, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t !== timer);
    };
  }

  /** Moves time on by ms, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const until = this.at + ms;
    for (;;) {
      const next = this.timers.filter((t) => t.due <= until).sort((a, b) => a.due - b.due || a.seq - b.seq)[0];
      if (!next) break;
      this.timers = this.timers.filter((t) => t !== next);
      this.at = next.due;
      next.fn();
    }
    this.at = until;
  }

  /** Timers not yet fired. */
  get pending(): number {
    return this.timers.length;
  }
}
