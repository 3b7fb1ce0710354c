// Bridges protobuf-es service descriptors to grpc-js: the service definition (paths, (de)serializers)
// for both our server and our test client, and handler wrappers that turn thrown errors into statuses.
import { fromBinary, toBinary, type DescService } from "@bufbuild/protobuf";
import type {
  ServiceDefinition,
  sendUnaryData,
  ServerUnaryCall,
  ServerReadableStream,
  ServerWritableStream,
} from "@grpc/grpc-js";
import { Code, type Logger } from "../core";
import { toServiceError } from "./status";

/**
 * Counts calls in progress, so shutdown can wait for them: Bun's HTTP/2 reports a session closed
 * as soon as close() is called, so grpc-js's own tryShutdown does not wait for streams in flight.
 */
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

/** A Buffer over the same memory (Buffer.from(Uint8Array) would copy: a 1 MiB Read chunk, twice). */
const asBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** Replacements for a method's generic (de)serializers, where the generic path costs most. */
export type MethodCodec = Partial<Pick<ServiceDefinition[string], "requestSerialize" | "requestDeserialize" | "responseSerialize" | "responseDeserialize">>;

/** The request and the response as wire bytes, for a handler that reads and writes them itself. */
export const WIRE_BYTES: MethodCodec = {
  requestSerialize: (v: Buffer) => v,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (v: Buffer) => v,
  responseDeserialize: (b: Buffer) => b,
};

/** The grpc-js definition of a service; `codecs` replace the (de)serializers of the methods they name. */
export function grpcServiceDefinition(service: DescService, codecs: Record<string, MethodCodec> = {}): ServiceDefinition {
  const def: Record<string, ServiceDefinition[string]> = {};
  for (const m of service.methods) {
    def[m.localName] = {
      path: `/${service.typeName}/${m.name}`,
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      requestSerialize: (v: any) => asBuffer(toBinary(m.input, v)),
      requestDeserialize: (b: Buffer) => fromBinary(m.input, b),
      responseSerialize: (v: any) => asBuffer(toBinary(m.output, v)),
      responseDeserialize: (b: Buffer) => fromBinary(m.output, b),
      originalName: m.name,
      ...codecs[m.localName],
    };
  }
  return def as ServiceDefinition;
}

function counted(env: HandlerEnv, method: string, code: Code): void {
  env.stats?.call(method, Code[code] ?? String(code));
}

function logFailure(env: HandlerEnv, method: string, err: unknown) {
  const log = env.log;
  const e = toServiceError(err);
  counted(env, method, (e.code ?? Code.UNKNOWN) as Code);
  // Clients going away, client mistakes and misses are routine; anything else deserves attention.
  const routine = ([Code.CANCELLED, Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION, Code.OUT_OF_RANGE] as number[]).includes(e.code ?? Code.UNKNOWN);
  (routine ? log.debug : log.warn)(`${method}: ${e.details}`);
  return e;
}

export function unary<Req, Res>(env: HandlerEnv, method: string, fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    env.calls.track(fn(call.request, call)).then(
      (res) => {
        counted(env, method, Code.OK);
        callback(null, res);
      },
      (err) => callback(logFailure(env, method, err)),
    );
  };
}

export function clientStreaming<Req, Res>(env: HandlerEnv, method: string, fn: (call: ServerReadableStream<Req, Res>) => Promise<Res>) {
  return (call: ServerReadableStream<Req, Res>, callback: sendUnaryData<Res>) => {
    env.calls.track(fn(call)).then(
      (res) => {
        counted(env, method, Code.OK);
        callback(null, res);
      },
      (err) => callback(logFailure(env, method, err)),
    );
  };
}

export function serverStreaming<Req, Res>(env: HandlerEnv, method: string, fn: (req: Req, call: ServerWritableStream<Req, Res>) => Promise<void>) {
  return (call: ServerWritableStream<Req, Res>) => {
    env.calls.track(fn(call.request, call)).then(
      () => {
        counted(env, method, Code.OK);
        call.end();
      },
      (err) => {
        const e = logFailure(env, method, err);
        if (!call.cancelled) call.emit("error", e);
      },
    );
  };
}

/** Writes one message to a server stream, waiting while the transport's buffer is full. */
export async function send<Res>(call: ServerWritableStream<unknown, Res>, msg: Res): Promise<void> {
  if (call.write(msg)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      call.off("drain", done);
      call.off("cancelled", done);
      resolve();
    };
    call.on("drain", done);
    call.on("cancelled", done);
  });
}
