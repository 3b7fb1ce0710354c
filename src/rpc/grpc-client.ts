// protobuf-es service descriptors as grpc-js definitions, for the clients that stay on grpc-js: the
// upstream tier, the serve-vm readiness probe, and the test suites (an independent client).
import { fromBinary, toBinary, type DescService } from "@bufbuild/protobuf";
import type { ServiceDefinition } from "@grpc/grpc-js";

/** A Buffer over the same memory (Buffer.from(Uint8Array) would copy). */
const asBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** Replacements for a method's generic (de)serializers. */
export type MethodCodec = Partial<Pick<ServiceDefinition[string], "requestSerialize" | "requestDeserialize" | "responseSerialize" | "responseDeserialize">>;

/** The request and the response as wire bytes, for a caller that reads and writes them itself. */
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
