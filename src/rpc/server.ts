// Wires every service into one grpc-js server and binds it.
import { lstatSync, rmSync } from "node:fs";
import { Server, ServerCredentials, setLogVerbosity, logVerbosity } from "@grpc/grpc-js";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { actionCacheService } from "./action-cache";
import { Connections, DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from "./connections";
import { byteStreamService } from "./bytestream";
import { capabilitiesService } from "./capabilities";
import { casService } from "./cas";
import { executionService } from "./execution";
import { operationsService } from "./operations";
import { assetServices } from "./asset";
import type { ServerContext } from "./context";
import { grpcServiceDefinition } from "./grpc-service";

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
  // grpc-js would print its own unstructured errors (e.g. on a busy port); ours say it better.
  setLogVerbosity(logVerbosity.NONE);
  const server = new Server({
    // Batch calls near max_batch_total_size_bytes must fit, with room for protobuf overhead.
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    "grpc.max_send_message_length": 16 * 1024 * 1024,
    // Channelz (grpc-js's introspection service, which we do not serve) costs CPU on every call.
    "grpc.enable_channelz": 0,
    "grpc.max_concurrent_streams": limits.streamsPerConnection,
    "grpc.max_connection_idle_ms": limits.idleMs,
  });
  const bytestream = byteStreamService(ctx);
  for (const s of [capabilitiesService(ctx), casService(ctx), bytestream, actionCacheService(ctx), executionService(ctx), operationsService(ctx), ...assetServices(ctx, ctx.fetcher)]) {
    server.addService(grpcServiceDefinition(s.service, "codecs" in s ? s.codecs : {}), s.handlers as any);
  }
  // Clients connect to our own listener; each socket reaches grpc-js through the flow-control shim.
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const connections = new Connections(limits, ctx.log);
  const listener = createServer({ noDelay: true }, (socket) => connections.accept(socket, { h2: (conn) => injector.injectConnection(conn), http }));
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
      injector.drain(graceMs);
      const deadline = Date.now() + graceMs;
      const timer = (ms: number) => new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), ms).unref());
      if ((await Promise.race([ctx.calls.idle(), timer(graceMs)])) === "timeout") {
        ctx.log.warn(`calls still in flight after ${graceMs} ms; cancelling them`);
      } else {
        // The last responses are on their way; clients hang up once they have them (after GOAWAY).
        const hungUp = Promise.all([...connections.sockets()].map((s) => new Promise((resolve) => s.once("close", resolve))));
        await Promise.race([hungUp, timer(Math.min(1000, Math.max(0, deadline - Date.now())))]);
      }
      server.forceShutdown();
      injector.destroy();
      bytestream.close();
    },
  };
}
