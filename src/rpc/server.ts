// Wires every service into one grpc-js server and binds it.
import { Server, ServerCredentials, setLogVerbosity, logVerbosity } from "@grpc/grpc-js";
import { createServer, type AddressInfo } from "node:net";
import { actionCacheService } from "./action-cache";
import { shimConnection } from "./h2-window-shim";
import { byteStreamService } from "./bytestream";
import { capabilitiesService } from "./capabilities";
import { casService } from "./cas";
import type { ServerContext } from "./context";
import { grpcServiceDefinition } from "./grpc-service";

export interface RunningServer {
  port: number;
  /** Stops taking calls, lets those in flight finish for up to graceMs, then cancels the rest. */
  shutdown(graceMs: number): Promise<void>;
}

export async function startServer(ctx: ServerContext, host: string, port: number): Promise<RunningServer> {
  // grpc-js would print its own unstructured errors (e.g. on a busy port); ours say it better.
  setLogVerbosity(logVerbosity.NONE);
  const server = new Server({
    // Batch calls near max_batch_total_size_bytes must fit, with room for protobuf overhead.
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    "grpc.max_send_message_length": 16 * 1024 * 1024,
  });
  const bytestream = byteStreamService(ctx);
  for (const s of [capabilitiesService(ctx), casService(ctx), bytestream, actionCacheService(ctx)]) {
    server.addService(grpcServiceDefinition(s.service), s.handlers as any);
  }
  // Clients connect to our own listener; each socket reaches grpc-js through the flow-control shim.
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const listener = createServer({ noDelay: true }, (socket) => injector.injectConnection(shimConnection(socket)));
  const bound = await new Promise<number>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen({ host, port }, () => {
      listener.off("error", reject);
      resolve((listener.address() as AddressInfo).port);
    });
  });
  return {
    port: bound,
    async shutdown(graceMs) {
      listener.close();
      injector.drain(graceMs);
      const graceful = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      const timer = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), graceMs).unref());
      if ((await Promise.race([graceful, timer])) === "timeout") server.forceShutdown();
      injector.destroy();
      bytestream.close();
    },
  };
}
