// Wires every service into the transport and binds the listener.
import { lstatSync, rmSync } from "node:fs";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { MAX_MESSAGE_BYTES, MessageBudget, serveConnection } from "../transport";
import { actionCacheService } from "./action-cache";
import { Connections, DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from "./connections";
import { byteStreamService } from "./bytestream";
import { capabilitiesService } from "./capabilities";
import { casService } from "./cas";
import { executionService } from "./execution";
import { operationsService } from "./operations";
import { assetServices } from "./asset";
import type { ServerContext } from "./context";
import { routes, type ServiceBinding } from "./grpc-service";

export interface RunningServer {
  port: number;
  /** Stops taking calls, lets those in flight finish for up to graceMs, then cancels the rest. */
  shutdown(graceMs: number): Promise<void>;
}

/** A TCP address, or a Unix socket (the VM guest's worker listens on one, behind the vsock relay). */
export type ListenAddress = { host: string; port: number } | { path: string };

export function listenText(a: ListenAddress): string {
  return "path" in a ? `unix:${a.path}` : `${a.host}:${a.port}`;
}

/** Where HTTP/1.1 connections from this machine go (the status page); without it they are closed. */
export type HttpHandoff = (socket: Socket, first: Buffer) => void;

export async function startServer(ctx: ServerContext, listenAt: ListenAddress, limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS, http?: HttpHandoff): Promise<RunningServer> {
  const bytestream = byteStreamService(ctx);
  const services: ServiceBinding[] = [capabilitiesService(ctx), casService(ctx), bytestream, actionCacheService(ctx), executionService(ctx), operationsService(ctx), ...assetServices(ctx, ctx.fetcher)];
  const table = routes(services);
  const connections = new Connections(limits, ctx.log);
  // Two of the biggest messages at once: past that, big requests (batches, huge FindMissingBlobs) take turns.
  const budget = new MessageBudget(2 * MAX_MESSAGE_BYTES);
  const h2Connection = (socket: Socket, first: Buffer) => {
    const peer = `${socket.remoteAddress ?? "a local socket"}${socket.remotePort ? `:${socket.remotePort}` : ""}`;
    return serveConnection(socket, first, {
      maxStreams: limits.streamsPerConnection,
      idleMs: limits.idleMs,
      route: (path) => table.get(path),
      onProtocolError: (why) => ctx.log.warn(`closed the connection from ${peer}: ${why}`),
      budget,
    });
  };
  const listener = createServer({ noDelay: true }, (socket) => connections.accept(socket, { h2: h2Connection, http }));
  const bound = await new Promise<number>((resolve, reject) => {
    listener.once("error", reject);
    // A socket file left by a server that died would make the bind fail (anything else stays).
    if ("path" in listenAt && lstatSync(listenAt.path, { throwIfNoEntry: false })?.isSocket()) rmSync(listenAt.path);
    listener.listen(listenAt, () => {
      listener.off("error", reject);
      resolve("path" in listenAt ? 0 : (listener.address() as AddressInfo).port);
    });
  });
  return {
    port: bound,
    async shutdown(graceMs) {
      listener.close();
      // GOAWAY to every client: no new calls; those in flight may finish within the grace period.
      for (const conn of connections.served()) conn.drain();
      const deadline = Date.now() + graceMs;
      const timer = (ms: number) => new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), ms).unref());
      if ((await Promise.race([ctx.calls.idle(), timer(graceMs)])) === "timeout") {
        ctx.log.warn(`calls still in flight after ${graceMs} ms; cancelling them`);
      } else {
        // The last responses are on their way; clients hang up once they have them (after GOAWAY).
        const hungUp = Promise.all([...connections.sockets()].map((s) => new Promise((resolve) => s.once("close", resolve))));
        await Promise.race([hungUp, timer(Math.min(1000, Math.max(0, deadline - Date.now())))]);
      }
      for (const conn of [...connections.served()]) conn.destroy();
      bytestream.close();
    },
  };
}
