// /api/logs: an action's stdout and stderr as one byte stream. Following a running action, the
// files it writes are read as they grow (a quarter second apart, like tail -f); once it has
// finished, whatever the files had not yet shown comes from the CAS, and the stream ends.
import { open } from "node:fs/promises";
import type { ActionLogs } from "./snapshot";

const FOLLOW_EVERY_MS = 250;
const CHUNK = 64 * 1024;

/** New bytes of path from offset on (none when it is gone: the action finished and its folder went). */
async function readFrom(path: string, offset: number): Promise<Uint8Array> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch {
    return new Uint8Array(0);
  }
  try {
    const parts: Uint8Array[] = [];
    for (let at = offset; ; ) {
      const { bytesRead, buffer } = await fh.read(Buffer.allocUnsafe(CHUNK), 0, CHUNK, at);
      if (bytesRead === 0) break;
      parts.push(buffer.subarray(0, bytesRead));
      at += bytesRead;
    }
    return Buffer.concat(parts);
  } finally {
    await fh.close();
  }
}

export function logStream(logs: ActionLogs, follow: boolean): ReadableStream<Uint8Array> {
  let sentOut = 0;
  let sentErr = 0;
  let done = false;
  void logs.finished.then(() => (done = true));
  // pull() must enqueue or close before it returns: a pull that gives nothing is not called again.
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        const live = logs.live();
        if (follow && !done) {
          if (live) {
            const out = await readFrom(live.stdout, sentOut);
            const err = await readFrom(live.stderr, sentErr);
            sentOut += out.length;
            sentErr += err.length;
            if (out.length > 0) controller.enqueue(out);
            if (err.length > 0) controller.enqueue(err);
            if (out.length + err.length > 0) return;
          }
          // Nothing new yet (or queued, not started): wait for more, or for the end.
          await Promise.race([logs.finished, Bun.sleep(FOLLOW_EVERY_MS)]);
          continue;
        }
        if (!done) {
          // Not following a running action: what it has written so far, then the end.
          for (const path of live ? [live.stdout, live.stderr] : []) {
            const b = await readFrom(path, 0);
            if (b.length > 0) controller.enqueue(b);
          }
          controller.close();
          return;
        }
        const { stdout, stderr } = await logs.final();
        if (stdout.length > sentOut) controller.enqueue(stdout.subarray(sentOut));
        if (stderr.length > sentErr) controller.enqueue(stderr.subarray(sentErr));
        controller.close();
        return;
      }
    },
  });
}
