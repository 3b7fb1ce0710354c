// A gRPC proxy in front of a real cache that lies: it passes every REAPI call through, and either
// flips one byte of each blob it returns (ByteStream Read chunks, BatchReadBlobs data: the digests
// no longer match), or points each output file of the action results it returns outside the
// working directory. An upstream tier in front of it must notice.
import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, type DescService } from "@bufbuild/protobuf";
import {
  ActionCache,
  ActionResultSchema,
  BatchReadBlobsResponseSchema,
  Capabilities,
  ContentAddressableStorage,
} from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { ByteStream } from "../../src/gen/google/bytestream/bytestream_pb";
import { WIRE_BYTES, grpcServiceDefinition } from "../../src/rpc";

export interface CorruptingProxy {
  readonly address: string;
  readonly url: string;
  /** Blobs (or chunks, or results) it has damaged so far. */
  readonly flipped: number;
  close(): Promise<void>;
}

const SERVICES: DescService[] = [Capabilities, ContentAddressableStorage, ActionCache, ByteStream];
const id = (b: Buffer) => b;

export type Lie = "bytes" | "paths";

export async function startCorruptingProxy(target: string, lie: Lie = "bytes"): Promise<CorruptingProxy> {
  const upstream = new grpc.Client(target, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": 64 * 2 ** 20 });
  const server = new grpc.Server({ "grpc.max_receive_message_length": 64 * 2 ** 20 });
  let flipped = 0;
  const damage = (path: string, msg: Buffer): Buffer => {
    if (lie === "paths") {
      if (!path.endsWith("/GetActionResult")) return msg;
      const r = fromBinary(ActionResultSchema, msg);
      for (const f of r.outputFiles) f.path = `../../${f.path}`;
      flipped++;
      return Buffer.from(toBinary(ActionResultSchema, r));
    }
    if (path.endsWith("ByteStream/Read") && msg.length > 2) {
      // A ReadResponse is one field, data: its last byte is the blob's.
      const out = Buffer.from(msg);
      out[out.length - 1]! ^= 0x01;
      flipped++;
      return out;
    }
    if (path.endsWith("/BatchReadBlobs")) {
      const res = fromBinary(BatchReadBlobsResponseSchema, msg);
      for (const r of res.responses) {
        if (r.data.length === 0) continue;
        r.data = Uint8Array.from(r.data);
        r.data[0]! ^= 0x01;
        flipped++;
      }
      return Buffer.from(toBinary(BatchReadBlobsResponseSchema, res));
    }
    return msg;
  };
  for (const service of SERVICES) {
    const def = grpcServiceDefinition(service, Object.fromEntries(service.methods.map((m) => [m.localName, WIRE_BYTES])));
    const handlers: grpc.UntypedServiceImplementation = {};
    for (const [name, m] of Object.entries(def)) {
      if (!m.requestStream && !m.responseStream) {
        handlers[name] = (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
          upstream.makeUnaryRequest(m.path, id, id, call.request, (err, res) => cb(err, res && damage(m.path, res)));
      } else if (m.responseStream && !m.requestStream) {
        handlers[name] = (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
          const up = upstream.makeServerStreamRequest(m.path, id, id, call.request);
          up.on("data", (res: Buffer) => call.write(damage(m.path, res)));
          up.on("end", () => call.end());
          up.on("error", (err) => call.emit("error", err));
          call.on("cancelled", () => up.cancel());
        };
      } else if (m.requestStream && !m.responseStream) {
        handlers[name] = (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
          const up = upstream.makeClientStreamRequest(m.path, id, id, (err, res) => cb(err, res));
          call.on("data", (req: Buffer) => up.write(req));
          call.on("end", () => up.end());
        };
      }
    }
    server.addService(def, handlers);
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    address: `127.0.0.1:${port}`,
    url: `grpc://127.0.0.1:${port}`,
    get flipped() {
      return flipped;
    },
    async close() {
      server.forceShutdown();
      upstream.close();
    },
  };
}
