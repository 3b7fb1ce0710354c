// Binds the services' handlers to the transport: each method's request decoded with its protobuf-es
// schema (or left as bytes where a service reads them itself), its response encoded, thrown errors
// turned into statuses, and every call counted and tracked for a graceful shutdown.
import { fromBinary, toBinary, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { Code, StatusError, type Logger } from "../core";
import type { CallHandler, GrpcCall } from "../transport";
import { toWireStatus } from "./status";

/** Counts calls in progress, so shutdown can wait for them. */
export class CallTracker {
  private active = 0;
  private waiters: (() => void)[] = [];

  track<T>(work: Promise<T>): Promise<T> {
    this.active++;
    return work.finally(() => {
      if (--this.active === 0) this.waiters.splice(0).forEach((w) => w());
    });
  }

  /** Resolves when no call is in progress. */
  idle(): Promise<void> {
    return this.active === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** What the handler wrappers need from the server. */
export interface HandlerEnv {
  log: Logger;
  calls: CallTracker;
  /** Where finished calls are counted, by method and code (the metrics). */
  stats?: { call(method: string, code: string): void };
}

/** How one method's messages become values and back. */
export interface Codec {
  decode(bytes: Buffer): unknown;
  encode(value: unknown): Uint8Array;
}

/** The request and the response as wire bytes, for a handler that reads and writes them itself. */
export const WIRE_BYTES: Codec = { decode: (b) => b, encode: (v) => v as Uint8Array };

/** A handler, waiting for its method's codec. */
export type ServerMethod = (codec: Codec) => CallHandler;

/** A service as the server takes it: its descriptor, its handlers by method, codecs where not generic. */
export interface ServiceBinding {
  service: DescService;
  handlers: Record<string, ServerMethod>;
  codecs?: Record<string, Partial<Codec>>;
}

function schemaCodec(m: DescMethod): Codec {
  return {
    decode: (b) => {
      try {
        return fromBinary(m.input, b);
      } catch (err) {
        throw new StatusError(Code.INVALID_ARGUMENT, `the request does not decode as ${m.input.typeName}: ${(err as Error).message}`);
      }
    },
    encode: (v) => toBinary(m.output, v as never),
  };
}

/** Every method of these services by its path ("/package.Service/Method"). */
export function routes(bindings: ServiceBinding[]): Map<string, CallHandler> {
  const table = new Map<string, CallHandler>();
  for (const b of bindings) {
    for (const m of b.service.methods) {
      const handler = b.handlers[m.localName];
      if (handler) table.set(`/${b.service.typeName}/${m.name}`, handler({ ...schemaCodec(m), ...b.codecs?.[m.localName] }));
    }
  }
  return table;
}

function counted(env: HandlerEnv, method: string, code: Code): void {
  env.stats?.call(method, Code[code] ?? String(code));
}

/** Ends a call with the status of what was thrown, logged at the level it deserves. */
function fail(env: HandlerEnv, call: GrpcCall, method: string, err: unknown): void {
  const status = toWireStatus(err);
  counted(env, method, status.code);
  // Clients going away, client mistakes and misses are routine; anything else deserves attention.
  const routine = [Code.CANCELLED, Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION, Code.OUT_OF_RANGE, Code.DEADLINE_EXCEEDED].includes(status.code);
  (routine || call.cancelled ? env.log.debug : env.log.warn)(`${method}: ${status.message}`);
  call.finish(status);
}

const OK = { code: Code.OK, message: "" };

/** The messages a server-streaming handler sends, encoded. */
export class ResponseStream<Res> {
  constructor(
    readonly call: GrpcCall,
    private readonly codec: Codec,
  ) {}

  /** Sends one message, waiting while the transport's buffer is full. */
  send(msg: Res): Promise<void> {
    return this.call.send(this.codec.encode(msg));
  }

  get cancelled(): boolean {
    return this.call.cancelled;
  }
}

/** Tracks a call's work, then ends the call: OK (after its one response, if it has one), or with the status of what was thrown. */
function settle<T>(env: HandlerEnv, call: GrpcCall, method: string, work: Promise<T>, reply?: (res: T) => Uint8Array): void {
  env.calls.track(work).then(
    (res) => {
      counted(env, method, Code.OK);
      if (reply) void call.send(reply(res));
      call.finish(OK);
    },
    (err) => fail(env, call, method, err),
  );
}

export function unary<Req, Res>(env: HandlerEnv, method: string, fn: (req: Req, call: GrpcCall) => Promise<Res>): ServerMethod {
  return (codec) => (call) => {
    const work = call.only().then((bytes) => fn(codec.decode(bytes) as Req, call));
    settle(env, call, method, work, codec.encode);
  };
}

export function clientStreaming<Req, Res>(env: HandlerEnv, method: string, fn: (requests: AsyncIterable<Req>, call: GrpcCall) => Promise<Res>): ServerMethod {
  return (codec) => (call) => {
    async function* requests() {
      for await (const bytes of call.requests()) yield codec.decode(bytes) as Req;
    }
    settle(env, call, method, fn(requests(), call), codec.encode);
  };
}

export function serverStreaming<Req, Res>(env: HandlerEnv, method: string, fn: (req: Req, out: ResponseStream<Res>) => Promise<void>): ServerMethod {
  return (codec) => (call) => {
    settle(env, call, method, call.only().then((bytes) => fn(codec.decode(bytes) as Req, new ResponseStream<Res>(call, codec))));
  };
}
