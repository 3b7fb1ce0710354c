// The one place a StatusError becomes a gRPC status on the wire: the code, the message, and the
// google.rpc.Status details for grpc-status-details-bin.
import { toBinary } from "@bufbuild/protobuf";
import { StatusSchema } from "../gen/google/rpc/status_pb";
import { asStatusError } from "../core";
import type { WireStatus } from "../transport";

/** Turns anything thrown by a handler into the status the call ends with. */
export function toWireStatus(err: unknown): WireStatus {
  const e = asStatusError(err);
  // google.rpc.Code and gRPC's status codes share their numbers.
  return { code: e.code, message: e.message, details: e.details.length > 0 ? toBinary(StatusSchema, e.toStatus()) : undefined };
}
