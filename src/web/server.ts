// The status endpoints' HTTP server: Bun's own, on a private Unix socket. The gRPC listener hands
// it each HTTP/1.1 connection from this machine (take()), so the page and the metrics share the
// port Bazel uses; --status-listen adds an address of their own.
import type { Socket } from "node:net";
import type { Logger } from "../core";
import { statusMetrics } from "./metrics";
import { pageResponse } from "./page";
import { logStream } from "./logs";
import { privateHttp } from "./private-http";
import type { StatusSource } from "./snapshot";

export interface StatusWeb {
  /** Serves an HTTP/1.1 connection the gRPC listener took, starting with the bytes it read. */
  take(socket: Socket, first: Buffer): void;
  /** The --status-listen address as bound (its port when 0 was asked), if one was given. */
  readonly listening?: { host: string; port: number };
  close(): void;
}

const INDEX = `actiond status
  /             the status page
  /api/status   what the worker is doing, as JSON (actiond status prints it)
  /api/logs?for=TARGET|ACTION&follow=1   an action's stdout and stderr (actiond logs)
  /api/explain?for=TARGET|ACTION   why its actions missed the cache (actiond explain)
  /metrics      Prometheus metrics
`;

export function startStatusWeb(source: StatusSource, log: Logger, root: string, listen?: { host: string; port: number }): StatusWeb {
  const metrics = statusMetrics(source);
  const fetch = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const pathname = url.pathname;
    if (req.method !== "GET" && req.method !== "HEAD") return new Response("only GET\n", { status: 405 });
    switch (pathname) {
      case "/metrics":
        return new Response(await metrics.text(), { headers: { "content-type": metrics.contentType } });
      case "/api/logs": {
        const logs = source.logs(url.searchParams.get("for") || undefined);
        if (!logs) return new Response(`no action matches ${url.searchParams.get("for") ?? "(any)"}\n`, { status: 404 });
        const follow = url.searchParams.get("follow") === "1";
        let body: ReadableStream<Uint8Array>;
        try {
          body = logStream(logs, follow);
        } catch (err) {
          return new Response(`${(err as Error).message}\n`, { status: 429 });
        }
        return new Response(body, {
          headers: { "content-type": "text/plain; charset=utf-8", "x-action": logs.action, "x-target": encodeURIComponent(logs.target), "cache-control": "no-store" },
        });
      }
      case "/api/explain": {
        const selector = url.searchParams.get("for");
        if (!selector) return new Response("say which: /api/explain?for=TARGET|ACTION\n", { status: 400 });
        return Response.json(await source.explain(selector), { headers: { "cache-control": "no-store" } });
      }
      case "/api/status":
        return Response.json(source.snapshot(), { headers: { "cache-control": "no-store" } });
      case "/":
        return pageResponse();
      default:
        return new Response(`no ${pathname} here\n${INDEX}`, { status: 404 });
    }
  };
  const local = privateHttp(fetch, root, log);
  const own = listen ? Bun.serve({ hostname: listen.host, port: listen.port, fetch }) : undefined;
  if (own) log.info(`status page on http://${listen!.host.includes(":") ? `[${listen!.host}]` : listen!.host}:${own.port ?? listen!.port}/`);
  return {
    take: (socket, first) => local.take(socket, first),
    listening: own && listen ? { host: listen.host, port: own.port ?? listen.port } : undefined,
    close() {
      local.close();
      own?.stop(true);
    },
  };
}
