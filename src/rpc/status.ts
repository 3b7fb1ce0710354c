// The one place a StatusError becomes a gRPC status on the wire: the code, the message, and the
// google.rpc.Status details in grpc-status-details-bin.
import { Metadata, type ServiceError } from "@grpc/grpc-js";
import { toBinary } from "@bufbuild/protobuf";
import { StatusSchema } from "../gen/google/rpc/status_pb";
import { asStatusError } from "../core";

/** Turns anything thrown by a handler into the ServiceError grpc-js sends. */
export function toServiceError(err: unknown): Partial<ServiceError> {
  const e = asStatusError(err);
  const metadata = new Metadata();
  if (e.details.length > 0) {
    metadata.set("grpc-status-details-bin", Buffer.from(toBinary(StatusSchema, e.toStatus())));
  }
  // google.rpc.Code and grpc-js's status share their numbers.
  return { code: e.code as number, details: e.message, message: e.message, metadata };
}
