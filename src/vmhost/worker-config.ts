// The host's config port: the guest's init asks it once per boot for the worker's flags (a
// WorkerConfig as JSON, then the end of the stream). Flags go this way, not on the kernel command
// line, because every process in the guest, actions too, can read /proc/cmdline.
import { createServer } from "node:net";
import { chmodSync, rmSync } from "node:fs";
import type { WorkerConfig } from "../core";

export async function serveWorkerConfig(path: string, config: WorkerConfig): Promise<{ close(): void }> {
  rmSync(path, { force: true });
  const text = JSON.stringify(config);
  const server = createServer((socket) => {
    socket.on("error", () => {});
    socket.end(text);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  // It may carry an upstream's tokens: this user only.
  chmodSync(path, 0o600);
  return {
    close() {
      server.close();
      rmSync(path, { force: true });
    },
  };
}
