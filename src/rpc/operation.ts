// An Execution as a google.longrunning.Operation: its name, ExecuteOperationMetadata (stage,
// action digest, digest function) on every message, and when done the ExecuteResponse in
// `response` (never in `error`: REAPI puts an action's failure in ExecuteResponse.status).
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import {
  ExecuteOperationMetadataSchema,
  ExecuteResponseSchema,
  ExecutionStage_Value as Stage,
  type ExecuteResponse,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { OperationSchema, type Operation } from "../gen/google/longrunning/operations_pb";
import { functionValue, toWire } from "../cas";
import type { Execution } from "../exec";
import { outputStreamName } from "./resource-name";

/** The operation at `stage`; done, with `response`, when one is given. */
export function operationAt(e: Execution, stage: Stage, response?: ExecuteResponse): Operation {
  const op = create(OperationSchema, {
    name: e.name,
    metadata: anyPack(
      ExecuteOperationMetadataSchema,
      create(ExecuteOperationMetadataSchema, {
        stage,
        actionDigest: toWire(e.action),
        digestFunction: functionValue(e.action.fn),
        // An action that runs here can be followed as it writes (ByteStream Read of these names).
        ...(e.runs ? { stdoutStreamName: outputStreamName(e.name, "stdout"), stderrStreamName: outputStreamName(e.name, "stderr") } : {}),
      }),
    ),
    done: response !== undefined,
  });
  if (response) op.result = { case: "response", value: anyPack(ExecuteResponseSchema, response) };
  return op;
}

/** The operation as the execution stands now. */
export function operationNow(e: Execution): Operation {
  return e.response ? operationAt(e, Stage.COMPLETED, e.response) : operationAt(e, e.stage);
}
