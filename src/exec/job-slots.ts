// At most --jobs actions run at once; the rest wait in line, lower priority values first, then in
// order of arrival (REAPI: a lower ExecutionPolicy.priority runs sooner).
interface Waiter {
  priority: number;
  seq: number;
  grant: (release: () => void) => void;
  signal: AbortSignal;
}

export class JobSlots {
  private running = 0;
  private seq = 0;
  private readonly queue: Waiter[] = [];

  constructor(readonly jobs: number) {}

  /** Resolves with a release function once a slot is free; rejects if signal aborts first. */
  acquire(priority: number, signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { priority, seq: this.seq++, grant: resolve, signal };
      signal.addEventListener(
        "abort",
        () => {
          const i = this.queue.indexOf(waiter);
          if (i >= 0) {
            this.queue.splice(i, 1);
            reject(signal.reason);
          }
        },
        { once: true },
      );
      let at = this.queue.findIndex((w) => w.priority > priority);
      if (at < 0) at = this.queue.length;
      this.queue.splice(at, 0, waiter);
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.jobs && this.queue.length > 0) {
      const next = this.queue.shift()!;
      this.running++;
      let released = false;
      next.grant(() => {
        if (released) return;
        released = true;
        this.running--;
        this.pump();
      });
    }
  }
}
