// gRPC status errors that carry google.rpc.Status details (grpc-status-details-bin).
import { status as GrpcCode, Metadata, type ServiceError } from "@grpc/grpc-js";
import { create, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { StatusSchema, type Status } from "../gen/google/rpc/status_pb";
import { PreconditionFailureSchema } from "../gen/google/rpc/error_details_pb";

export { GrpcCode as Code };

/** An error that maps to one gRPC status code, with optional google.rpc detail messages. */
export class StatusError extends Error {
  constructor(
    readonly code: GrpcCode,
    message: string,
    readonly details: { schema: DescMessage; value: MessageShape<DescMessage> }[] = [],
  ) {
    super(message);
  }

  /** The google.rpc.Status form, for per-item statuses and ExecuteResponse.status. */
  toStatus(): Status {
    return create(StatusSchema, {
      code: this.code,
      message: this.message,
      details: this.details.map((d) => anyPack(d.schema, d.value)),
    });
  }
}

/** FAILED_PRECONDITION listing every missing blob as MISSING, the form Bazel re-uploads for. */
export function missingBlobsError(message: string, subjects: string[]): StatusError {
  const failure = create(PreconditionFailureSchema, {
    violations: subjects.map((subject) => ({ type: "MISSING", subject })),
  });
  return new StatusError(GrpcCode.FAILED_PRECONDITION, message, [{ schema: PreconditionFailureSchema, value: failure }]);
}

export function okStatus(): Status {
  return create(StatusSchema, { code: GrpcCode.OK });
}

/** Turns anything thrown by a handler into the ServiceError grpc-js sends. */
export function toServiceError(err: unknown): Partial<ServiceError> {
  const e = asStatusError(err);
  const metadata = new Metadata();
  if (e.details.length > 0) {
    metadata.set("grpc-status-details-bin", Buffer.from(toBinary(StatusSchema, e.toStatus())));
  }
  return { code: e.code, details: e.message, message: e.message, metadata };
}

export function asStatusError(err: unknown): StatusError {
  if (err instanceof StatusError) return err;
  const errno = (err as NodeJS.ErrnoException)?.code;
  if (errno === "ENOSPC" || errno === "EDQUOT") {
    return new StatusError(GrpcCode.RESOURCE_EXHAUSTED, `storage is full: ${(err as Error).message}`);
  }
  return new StatusError(GrpcCode.INTERNAL, `internal error: ${(err as Error)?.message ?? String(err)}`);
}
