// The gRPC server side of one client connection: each new stream becomes a call, routed by its
// :path to the handler that serves that method.
import type { Socket } from "node:net";
import { Code } from "../core";
import { GrpcCall } from "./call";
import { H2Connection, MAX_HEADER_LIST_BYTES, type H2Stream } from "./connection";
import { encodeHeaders, type HeaderList } from "./hpack";
import type { MessageBudget } from "./message-budget";

/** Serves one call; it ends the call itself (finish), whatever happens. */
export type CallHandler = (call: GrpcCall) => void;

export interface TransportOptions {
  maxStreams: number;
  idleMs: number;
  /** The handler of a method's path ("/package.Service/Method"), or undefined. */
  route(path: string): CallHandler | undefined;
  onProtocolError(why: string): void;
  /** The server-wide budget big request messages draw on. */
  budget: MessageBudget;
}

/** A plain HTTP response for a request that is not gRPC at all. */
const notGrpc = (status: string) => encodeHeaders([[":status", status]]);

export function serveConnection(socket: Socket, first: Buffer, opts: TransportOptions): H2Connection {
  return new H2Connection(socket, first, {
    maxStreams: opts.maxStreams,
    idleMs: opts.idleMs,
    onProtocolError: opts.onProtocolError,
    onStream(stream: H2Stream, list: HeaderList, over: boolean) {
      const headers = new Map<string, string>();
      for (const [name, value] of list) if (!headers.has(name)) headers.set(name, value);
      if (headers.get(":method") !== "POST") return stream.headers(notGrpc("405"), true);
      if (!headers.get("content-type")?.startsWith("application/grpc")) return stream.headers(notGrpc("415"), true);
      const call = new GrpcCall(stream, headers, opts.budget);
      if (over) return call.finish({ code: Code.RESOURCE_EXHAUSTED, message: `request headers over the ${MAX_HEADER_LIST_BYTES} bytes allowed` });
      const path = headers.get(":path") ?? "";
      const handler = opts.route(path);
      if (!handler) return call.finish({ code: Code.UNIMPLEMENTED, message: `actiond does not serve the method ${path}` });
      handler(call);
    },
  });
}
