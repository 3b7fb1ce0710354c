// The request bytes of big messages the whole server holds at once. A call's memory is a few times
// its message (the bytes, what decoding them makes, the answer), so forty connections each sending a
// 16 MiB batch would hold gigabytes; past the budget, a big message waits (its stream's window
// closed, so the client holds the bytes) until calls before it are done with theirs. First come,
// first served: a big message never starves behind a stream of smaller ones.

/** Messages over this size draw on the budget; smaller ones (nearly all) never wait. */
export const BIG_MESSAGE_BYTES = 1024 * 1024;

/**
 * Big messages done with, in bytes, before the collector is asked (without waiting) to run: their
 * buffers, the socket reads they came in and their answers are garbage JavaScriptCore takes its
 * time to notice, and forty 16 MiB batches had the server at +700 MiB for freed memory alone.
 */
const COLLECT_AFTER_BYTES = 64 * 1024 * 1024;

export class MessageBudget {
  private free: number;
  private readonly waiting: { bytes: number; grant: () => void }[] = [];
  private sinceCollection = 0;

  constructor(readonly totalBytes: number) {
    this.free = totalBytes;
  }

  /**
   * Takes `bytes` now (true), or queues `grant`, called once they are free (false). A message larger
   * than the whole budget waits for all of it.
   */
  take(bytes: number, grant: () => void): boolean {
    const want = Math.min(bytes, this.totalBytes);
    if (this.waiting.length === 0 && want <= this.free) {
      this.free -= want;
      return true;
    }
    this.waiting.push({ bytes: want, grant });
    return false;
  }

  /** A wait given up (its call ended): it is granted nothing. */
  forget(grant: () => void): void {
    const i = this.waiting.findIndex((w) => w.grant === grant);
    if (i >= 0) this.waiting.splice(i, 1);
    this.admit();
  }

  /** Bytes taken by take() (the same count) are free again. */
  give(bytes: number): void {
    this.free += Math.min(bytes, this.totalBytes);
    this.sinceCollection += bytes;
    if (this.sinceCollection >= COLLECT_AFTER_BYTES) {
      this.sinceCollection = 0;
      Bun.gc(false);
    }
    this.admit();
  }

  private admit(): void {
    while (this.waiting.length > 0 && this.waiting[0]!.bytes <= this.free) {
      const w = this.waiting.shift()!;
      this.free -= w.bytes;
      w.grant();
    }
  }
}
