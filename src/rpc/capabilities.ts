// GetCapabilities: advertise exactly what works: the cache, and execution.
import { create } from "@bufbuild/protobuf";
import {
  Capabilities,
  Compressor_Value as Compressor,
  ServerCapabilitiesSchema,
  SymlinkAbsolutePathStrategy_Value as SymlinkStrategy,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { DigestFunction, SUPPORTED_FUNCTIONS } from "../cas";
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
    executionCapabilities: {
      // The legacy single value must be what Bazel uses by default; digest_functions lists all.
      digestFunction: DigestFunction.SHA256,
      digestFunctions: [...SUPPORTED_FUNCTIONS],
      execEnabled: true,
    },
    lowApiVersion: { major: 2 },
    // 2.3: output_paths (2.1), Action.platform (2.2), compressed-blobs and argv[0] via PATH (2.3).
    highApiVersion: { major: 2, minor: 3 },
  });
  return {
    service: Capabilities,
    handlers: {
      getCapabilities: unary(ctx, "GetCapabilities", async () => caps),
    },
  };
}
