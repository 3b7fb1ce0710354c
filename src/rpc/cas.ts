// ContentAddressableStorage: FindMissingBlobs, BatchUpdateBlobs, BatchReadBlobs, GetTree.
// Translates wire messages to typed digests and calls the store; never touches the disk itself.
import { create } from "@bufbuild/protobuf";
import {
  ContentAddressableStorage,
  Compressor_Value as Compressor,
  type BatchReadBlobsRequest,
  type BatchUpdateBlobsRequest,
  type GetTreeRequest,
  type GetTreeResponse,
  BatchReadBlobsResponseSchema,
  BatchUpdateBlobsResponseSchema,
  GetTreeResponseSchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { zstdDecompressSync } from "node:zlib";
import { Code, StatusError, asStatusError, okStatus } from "../core";
import { formatDigest, fromWire, resolveFunction, treePages, type BlobDigest } from "../cas";
import { findMissingOnWire } from "./find-missing";
import type { ServerContext } from "./context";
import { WIRE_BYTES, serverStreaming, unary, type ResponseStream } from "./grpc-service";

/** Batch items handled at once: enough to overlap disk waits, few enough to keep file handles in check. */
const BATCH_PARALLELISM = 16;

/** Like Promise.all over items.map(fn), with at most `limit` calls in flight; results keep their order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export function casService(ctx: ServerContext) {
  const { blobs } = ctx;

  async function batchUpdateBlobs(req: BatchUpdateBlobsRequest) {
    const fn = resolveFunction(req.digestFunction);
    // The limit holds for what the batch carries and for what it stands for once decompressed (its
    // blobs' declared sizes), so a small compressed batch cannot unfold into gigabytes.
    let carried = 0;
    let declared = 0n;
    for (const r of req.requests) {
      carried += r.data.length;
      declared += r.digest && r.digest.sizeBytes > 0n ? r.digest.sizeBytes : 0n;
    }
    const total = Math.max(carried, Number(declared > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : declared));
    if (total > ctx.maxBatchBytes) {
      throw new StatusError(Code.INVALID_ARGUMENT, `batch carries ${total} bytes, over max_batch_total_size_bytes ${ctx.maxBatchBytes}; use ByteStream Write`);
    }
    const responses = await mapLimit(
      req.requests,
      BATCH_PARALLELISM,
      async (r, i) => {
        try {
          const d = fromWire(fn, r.digest, `requests[${i}]`);
          let data = r.data;
          if (r.compressor === Compressor.ZSTD) data = decompressZstd(data, d);
          else if (r.compressor !== Compressor.IDENTITY) {
            throw new StatusError(Code.INVALID_ARGUMENT, `compressor ${Compressor[r.compressor] ?? r.compressor} is not supported`);
          }
          if (await blobs.put(d, data)) {
            ctx.stats.count("blobsStored");
            ctx.stats.count("bytesStored", d.size);
          }
          return { digest: r.digest, status: okStatus() };
        } catch (err) {
          return { digest: r.digest, status: asStatusError(err).toStatus() };
        }
      },
    );
    return create(BatchUpdateBlobsResponseSchema, { responses });
  }

  async function batchReadBlobs(req: BatchReadBlobsRequest) {
    const fn = resolveFunction(req.digestFunction);
    const digests = req.digests.map((d, i) => fromWire(fn, d, `digests[${i}]`));
    const total = digests.reduce((n, d) => n + d.size, 0);
    if (total > ctx.maxBatchBytes) {
      throw new StatusError(Code.INVALID_ARGUMENT, `batch asks for ${total} bytes, over max_batch_total_size_bytes ${ctx.maxBatchBytes}; use ByteStream Read`);
    }
    const responses = await mapLimit(
      digests,
      BATCH_PARALLELISM,
      async (d, i) => {
        const data = await blobs.get(d);
        if (!data) {
          return { digest: req.digests[i], status: new StatusError(Code.NOT_FOUND, `blob ${formatDigest(d)} is not in the CAS`).toStatus() };
        }
        ctx.stats.count("blobsRead");
        ctx.stats.count("bytesRead", data.length);
        return { digest: req.digests[i], data, compressor: Compressor.IDENTITY, status: okStatus() };
      },
    );
    return create(BatchReadBlobsResponseSchema, { responses });
  }

  async function getTree(req: GetTreeRequest, out: ResponseStream<GetTreeResponse>) {
    const fn = resolveFunction(req.digestFunction);
    const root = fromWire(fn, req.rootDigest, "root_digest");
    // Stream every page from the token on; each page but the last names where the next begins.
    for await (const page of treePages(blobs, root, req.pageSize, req.pageToken, ctx.maxBatchBytes)) {
      if (out.cancelled) return;
      await out.send(create(GetTreeResponseSchema, { directories: page.directories, nextPageToken: page.nextPageToken }));
    }
  }

  return {
    service: ContentAddressableStorage,
    codecs: { findMissingBlobs: WIRE_BYTES },
    handlers: {
      findMissingBlobs: unary(ctx, "FindMissingBlobs", (req: Buffer) => findMissingOnWire(blobs, req)),
      batchUpdateBlobs: unary(ctx, "BatchUpdateBlobs", batchUpdateBlobs),
      batchReadBlobs: unary(ctx, "BatchReadBlobs", batchReadBlobs),
      getTree: serverStreaming(ctx, "GetTree", getTree),
    },
  };
}

/** Decompresses at most the blob's declared size: anything that unfolds beyond it is refused, not held. */
function decompressZstd(data: Uint8Array, d: BlobDigest): Uint8Array {
  try {
    return zstdDecompressSync(data, { maxOutputLength: Math.max(1, d.size) });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
      throw new StatusError(Code.INVALID_ARGUMENT, `blob ${formatDigest(d)}: zstd data decompresses to more than the ${d.size} bytes its digest says`);
    }
    throw new StatusError(Code.INVALID_ARGUMENT, `blob ${formatDigest(d)}: zstd data does not decompress: ${(err as Error).message}`);
  }
}
