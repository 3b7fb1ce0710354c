// Bun's HTTP server on a private Unix socket, fed connections a TCP listener has already accepted
// and told apart by their first bytes (take()): how the status endpoints share the gRPC port.
import { connect, type Socket } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "../core";

/** HTTP/1.1 connections at once (they come from this machine only, and are not counted by --max-connections). */
export const MAX_HTTP_CONNECTIONS = 256;

export interface PrivateHttp {
  /** Serves an HTTP/1.1 connection the listener took, starting with the bytes it read. */
  take(socket: Socket, first: Buffer): void;
  close(): void;
}

/** A private folder for the socket: under the system's temporary folder, else under `fallback` (the root). */
function privateDir(fallback: string): string {
  try {
    return mkdtempSync(join(tmpdir(), "actiond-status-"));
  } catch {
    return mkdtempSync(join(fallback, "status-"));
  }
}

export function privateHttp(fetch: (req: Request) => Response | Promise<Response>, root: string, log: Logger): PrivateHttp {
  const dir = privateDir(root);
  const path = join(dir, "http.sock");
  let server: ReturnType<typeof Bun.serve> | undefined;
  let open = 0;
  try {
    // A followed action may be quiet for longer than Bun's idle limit (at most 255 s per request):
    // none on this server. Bun takes idleTimeout for a Unix socket too; its types do not say so.
    server = Bun.serve({ unix: path, fetch, idleTimeout: 0 } as unknown as Parameters<typeof Bun.serve>[0]);
  } catch (err) {
    // Not worth failing the server for: gRPC goes on, the page is not there.
    log.info(`the status endpoints are not served on the gRPC port: ${(err as Error).message}`);
  }
  return {
    take(socket, first) {
      if (!server) return void socket.destroy();
      if (open >= MAX_HTTP_CONNECTIONS) {
        const body = `actiond: ${open} status connections are open already; close some (actiond logs -f followers?)\n`;
        socket.on("error", () => {});
        socket.end(`HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
        return;
      }
      open++;
      socket.once("close", () => open--);
      const inner = connect(path);
      inner.write(first);
      socket.pipe(inner);
      inner.pipe(socket);
      socket.resume();
      const close = () => {
        socket.destroy();
        inner.destroy();
      };
      socket.on("error", close);
      inner.on("error", close);
      socket.on("close", close);
      inner.on("close", close);
    },
    close() {
      server?.stop(true);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
