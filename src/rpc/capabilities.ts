// GetCapabilities: advertise exactly what works today (cache only: no execution yet).
import { create } from "@bufbuild/protobuf";
import {
  Capabilities,
  Compressor_Value as Compressor,
  ServerCapabilitiesSchema,
  SymlinkAbsolutePathStrategy_Value as SymlinkStrategy,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { SUPPORTED_FUNCTIONS } from "../cas/digest";
import type { ServerContext } from "./context";
import { unary } from "./grpc-service";

export function capabilitiesService(ctx: ServerContext) {
  const caps = create(ServerCapabilitiesSchema, {
    cacheCapabilities: {
      digestFunctions: [...SUPPORTED_FUNCTIONS],
      actionCacheUpdateCapabilities: { updateEnabled: true },
      maxBatchTotalSizeBytes: BigInt(ctx.maxBatchBytes),
      symlinkAbsolutePathStrategy: SymlinkStrategy.DISALLOWED,
      supportedCompressors: [Compressor.ZSTD],
      supportedBatchUpdateCompressors: [Compressor.ZSTD],
    },
    lowApiVersion: { major: 2 },
    // 2.3: digest_function fields and compressed-blobs are real; output_paths waits for execution.
    highApiVersion: { major: 2, minor: 3 },
  });
  return {
    service: Capabilities,
    handlers: {
      getCapabilities: unary(ctx, "GetCapabilities", async () => caps),
    },
  };
}
