// GetCapabilities: advertise exactly what works: the cache, and execution, at the highest API
// version whose features are all served: 2.11 (output_paths 2.1, Action.platform 2.2,
// compressed-blobs and argv[0] by PATH 2.3, digest_function fields 2.5, BLAKE3 and
// output_directory_format 2.8, inlining on Execute 2.9, ExecuteOperationMetadata.digest_function
// 2.11). Nothing of 2.12 is claimed (split and splice, GITSHA1), though max_cas_blob_size_bytes,
// which older clients ignore, says how big a blob can be here.
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
      maxCasBlobSizeBytes: BigInt(ctx.maxBlobBytes),
      // Absolute symlinks are kept as they are, in inputs and outputs: never followed on the server.
      symlinkAbsolutePathStrategy: SymlinkStrategy.ALLOWED,
      supportedCompressors: [Compressor.ZSTD],
      supportedBatchUpdateCompressors: [Compressor.ZSTD],
    },
    executionCapabilities: {
      // The legacy single value must be what Bazel uses by default; digest_functions lists all.
      digestFunction: DigestFunction.SHA256,
      digestFunctions: [...SUPPORTED_FUNCTIONS],
      execEnabled: true,
      // Any ExecutionPolicy.priority is taken: lower runs sooner.
      executionPriorityCapabilities: { priorities: [{ minPriority: -(2 ** 31), maxPriority: 2 ** 31 - 1 }] },
    },
    lowApiVersion: { major: 2 },
    highApiVersion: { major: 2, minor: 11 },
  });
  return {
    service: Capabilities,
    handlers: {
      getCapabilities: unary(ctx, "GetCapabilities", async () => caps),
    },
  };
}
