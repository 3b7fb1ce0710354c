// Errors with a status: a google.rpc code, a message that says what was wrong, optional google.rpc
// detail messages, and the error that caused it. Storage and execution throw these without knowing
// how they travel; rpc/ alone turns them into gRPC statuses on the wire.
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code } from "../gen/google/rpc/code_pb";
import { PreconditionFailureSchema } from "../gen/google/rpc/error_details_pb";
import { StatusSchema, type Status } from "../gen/google/rpc/status_pb";

export { Code };

export interface StatusDetail {
  schema: DescMessage;
  value: MessageShape<DescMessage>;
}

export class StatusError extends Error {
  readonly details: readonly StatusDetail[];

  constructor(
    readonly code: Code,
    message: string,
    opts: { details?: StatusDetail[]; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.details = opts.details ?? [];
  }

  /** The google.rpc.Status form: per-item statuses in batch replies, ExecuteResponse.status. */
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
  return new StatusError(Code.FAILED_PRECONDITION, message, { details: [{ schema: PreconditionFailureSchema, value: failure }] });
}

export function okStatus(): Status {
  return create(StatusSchema, { code: Code.OK });
}

/** Anything thrown, as a StatusError: a full disk is RESOURCE_EXHAUSTED, the rest INTERNAL; the original is its cause. */
export function asStatusError(err: unknown): StatusError {
  if (err instanceof StatusError) return err;
  const errno = (err as NodeJS.ErrnoException)?.code;
  const message = (err as Error)?.message ?? String(err);
  if (errno === "ENOSPC" || errno === "EDQUOT") return new StatusError(Code.RESOURCE_EXHAUSTED, `storage is full: ${message}`, { cause: err });
  return new StatusError(Code.INTERNAL, `internal error: ${message}`, { cause: err });
}

/** The errno code of a failed system call (ENOENT, EEXIST, …), or undefined for other errors. */
export function errnoCode(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * A problem with this machine or with how actiond was started, which the user must fix (a missing
 * helper, a host where no sandbox can be built, a busy port): one line saying what to do, exit 1.
 */
export class SetupError extends Error {}
