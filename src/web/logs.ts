// /api/logs: an action's stdout and stderr as one byte stream, followed while it runs when asked.
import type { ActionLogs } from "./snapshot";

export function logStream(logs: ActionLogs, follow: boolean): ReadableStream<Uint8Array> {
  const stop = new AbortController();
  const chunks = logs.stream(follow, stop.signal)[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await chunks.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel() {
      stop.abort();
      await chunks.return?.(undefined);
    },
  });
}
