// Bazel's RequestMetadata (the `build.bazel.remote.execution.v2.requestmetadata-bin` header on
// every call): which target, mnemonic and invocation a call is for. Only shown, never trusted:
// a header that does not decode is as good as none.
import { fromBinary } from "@bufbuild/protobuf";
import { RequestMetadataSchema } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import type { Requester } from "../exec";

const HEADER = "build.bazel.remote.execution.v2.requestmetadata-bin";
/** Longer fields are cut: they are shown on a page, and kept for the last few hundred calls. */
const FIELD_CHARS = 300;

export function requesterOf(call: { binaryHeader(name: string): Buffer | undefined }): Requester | undefined {
  const raw = call.binaryHeader(HEADER);
  if (!raw || raw.length > 16 * 1024) return undefined;
  try {
    const m = fromBinary(RequestMetadataSchema, raw);
    const cut = (s: string) => (s.length > FIELD_CHARS ? `${s.slice(0, FIELD_CHARS)}…` : s);
    return { target: cut(m.targetId), mnemonic: cut(m.actionMnemonic), actionId: cut(m.actionId), invocation: cut(m.toolInvocationId) };
  } catch {
    return undefined;
  }
}
