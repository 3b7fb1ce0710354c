// A typed REAPI client over real gRPC, built from the same generated descriptors as the server.
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, type DescMessage, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import {
  ActionCache,
  Capabilities,
  ContentAddressableStorage,
  DigestSchema,
  type Digest,
} from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { ByteStream, type WriteRequest, type ReadResponse, ReadRequestSchema, WriteRequestSchema } from "../../src/gen/google/bytestream/bytestream_pb";
import { StatusSchema, type Status } from "../../src/gen/google/rpc/status_pb";
import { grpcServiceDefinition } from "../../src/rpc";

type Client = grpc.Client & Record<string, any>;

function makeClient(service: DescService, address: string, ownConnection = false): Client {
  const Ctor = grpc.makeGenericClientConstructor(grpcServiceDefinition(service), service.name);
  return new Ctor(address, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
    // grpc-js shares one connection among clients of the same address unless told otherwise.
    ...(ownConnection ? { "grpc.use_local_subchannel_pool": 1 } : {}),
  }) as Client;
}

/** A gRPC failure as the test sees it: code, message and decoded google.rpc.Status details. */
export class RpcError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
    readonly status: Status | undefined,
  ) {
    super(`${grpc.status[code]}: ${details}`);
  }
}

function wrap(err: grpc.ServiceError): RpcError {
  const raw = err.metadata?.get("grpc-status-details-bin")[0];
  const status = raw ? fromBinary(StatusSchema, raw as Buffer) : undefined;
  return new RpcError(err.code, err.details, status);
}

export function digestOf(hash: string, size: number | bigint): Digest {
  return create(DigestSchema, { hash, sizeBytes: BigInt(size) });
}

export function sha256(data: Uint8Array | string): Digest {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  return digestOf(new Bun.CryptoHasher("sha256").update(bytes).digest("hex"), bytes.length);
}

/** A client for any one service: call(method, schema, init) resolves with the response, or rejects with an RpcError. */
export function serviceClient(service: DescService, address: string) {
  const client = makeClient(service, address);
  return {
    call<I extends DescMessage, O = any>(method: string, schema: I, init: MessageInitShape<I>): Promise<O> {
      return new Promise((res, rej) => client[method](create(schema, init), (err: grpc.ServiceError | null, out: O) => (err ? rej(wrap(err)) : res(out))));
    },
    close: () => client.close(),
  };
}

export class ReapiClient {
  readonly cas: Client;
  readonly ac: Client;
  readonly caps: Client;
  readonly bs: Client;

  /** ownConnection: a connection of its own, not the one other clients of the address share. */
  constructor(
    readonly address: string,
    opts: { ownConnection?: boolean } = {},
  ) {
    this.cas = makeClient(ContentAddressableStorage, address, opts.ownConnection);
    this.ac = makeClient(ActionCache, address, opts.ownConnection);
    this.caps = makeClient(Capabilities, address, opts.ownConnection);
    this.bs = makeClient(ByteStream, address, opts.ownConnection);
  }

  close() {
    for (const c of [this.cas, this.ac, this.caps, this.bs]) c.close();
  }

  /** Calls a unary method: unary(this.cas, "findMissingBlobs", Schema, {...}). */
  unary<I extends DescMessage, O = any>(client: Client, method: string, schema: I, init: MessageInitShape<I>): Promise<O> {
    return new Promise((res, rej) =>
      client[method](create(schema, init), (err: grpc.ServiceError | null, out: O) => (err ? rej(wrap(err)) : res(out))),
    );
  }

  /** Calls a server-streaming method and collects every response. */
  collect<I extends DescMessage, O = any>(client: Client, method: string, schema: I, init: MessageInitShape<I>): Promise<O[]> {
    return new Promise((res, rej) => {
      const out: O[] = [];
      const call = client[method](create(schema, init));
      call.on("data", (m: O) => out.push(m));
      call.on("error", (err: grpc.ServiceError) => rej(wrap(err)));
      call.on("end", () => res(out));
    });
  }

  /** ByteStream.Write with the given messages; resolves with committed_size. */
  write(messages: MessageInitShape<typeof WriteRequestSchema>[], opts: { cancelAfter?: number } = {}): Promise<bigint> {
    return new Promise((res, rej) => {
      const call = this.bs.write((err: grpc.ServiceError | null, out: { committedSize: bigint }) =>
        err ? rej(wrap(err)) : res(out.committedSize),
      );
      (async () => {
        for (const [i, m] of messages.entries()) {
          if (opts.cancelAfter === i) {
            await Bun.sleep(100);
            call.cancel();
            return;
          }
          if (!call.write(create(WriteRequestSchema, m) as WriteRequest)) await new Promise((r) => call.once("drain", r));
        }
        call.end();
      })();
    });
  }

  /** Uploads a blob through ByteStream in chunks. */
  upload(resource: string, data: Uint8Array, chunk = 64 * 1024): Promise<bigint> {
    const msgs: MessageInitShape<typeof WriteRequestSchema>[] = [];
    for (let off = 0; off < data.length || msgs.length === 0; off += chunk) {
      const end = Math.min(data.length, off + chunk);
      msgs.push({ resourceName: off === 0 ? resource : "", writeOffset: BigInt(off), data: data.subarray(off, end), finishWrite: end === data.length });
      if (end === data.length) break;
    }
    return this.write(msgs);
  }

  /** ByteStream.Read; returns the concatenated data and the chunk sizes seen (onChunk sees each as it comes). */
  async read(resource: string, offset = 0, limit = 0, onChunk?: (data: Uint8Array) => void): Promise<{ data: Uint8Array; chunks: number[] }> {
    const parts: ReadResponse[] = await new Promise((res, rej) => {
      const out: ReadResponse[] = [];
      const call = this.bs.read(create(ReadRequestSchema, { resourceName: resource, readOffset: BigInt(offset), readLimit: BigInt(limit) }));
      call.on("data", (m: ReadResponse) => {
        out.push(m);
        onChunk?.(m.data);
      });
      call.on("error", (err: grpc.ServiceError) => rej(wrap(err)));
      call.on("end", () => res(out));
    });
    return { data: Buffer.concat(parts.map((p) => p.data)), chunks: parts.map((p) => p.data.length) };
  }
}

export { grpc };
export type { MessageShape };
