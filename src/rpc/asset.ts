// The Remote Asset API (build.bazel.remote.asset.v1): Fetch.FetchBlob and Push.PushBlob over the
// fetcher. A failure at the origin (not found, refused, a checksum that does not match, a timeout)
// comes back in FetchBlobResponse.status, naming the URI and the reason; a request actiond cannot
// serve is an RPC error. Directories are not fetched or pushed (UNIMPLEMENTED).
import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  Fetch,
  FetchBlobResponseSchema,
  Push,
  PushBlobResponseSchema,
  type FetchBlobRequest,
  type FetchBlobResponse,
  type PushBlobRequest,
  type PushBlobResponse,
} from "../gen/build/bazel/remote/asset/v1/remote_asset_pb";
import { Code, StatusError, okStatus } from "../core";
import { fromWire, functionValue, resolveFunction, toWire } from "../cas";
import { FetchFailure, type Fetcher } from "../fetch";
import type { ServerContext } from "./context";
import { unary, type ServiceBinding } from "./grpc-service";

/** How long a download may take when the request sets no timeout. */
const DEFAULT_FETCH_TIMEOUT_MS = 5 * 60_000;

export function assetServices(ctx: ServerContext, fetcher: Fetcher) {
  async function fetchBlob(req: FetchBlobRequest): Promise<FetchBlobResponse> {
    const fn = resolveFunction(req.digestFunction);
    const timeoutMs = req.timeout ? Number(req.timeout.seconds) * 1000 + req.timeout.nanos / 1e6 : DEFAULT_FETCH_TIMEOUT_MS;
    if (!(timeoutMs > 0)) throw new StatusError(Code.INVALID_ARGUMENT, "timeout must be positive");
    const oldestAcceptedMs = req.oldestContentAccepted ? timestampDate(req.oldestContentAccepted).getTime() : undefined;
    try {
      const got = await fetcher.fetch({ uris: req.uris, qualifiers: req.qualifiers, fn, timeoutMs, oldestAcceptedMs });
      ctx.stats.count(got.from === "known" ? "assetHits" : "assetFetches");
      return create(FetchBlobResponseSchema, { status: okStatus(), uri: got.uri, blobDigest: toWire(got.digest), digestFunction: functionValue(fn) });
    } catch (err) {
      if (!(err instanceof FetchFailure)) throw err;
      return create(FetchBlobResponseSchema, { status: new StatusError(err.code, err.message).toStatus(), uri: err.uri, digestFunction: functionValue(fn) });
    }
  }

  async function pushBlob(req: PushBlobRequest): Promise<PushBlobResponse> {
    const digest = fromWire(resolveFunction(req.digestFunction), req.blobDigest, "blob_digest");
    const expireAtMs = req.expireAt ? timestampDate(req.expireAt).getTime() : undefined;
    await fetcher.push({ uris: req.uris, qualifiers: req.qualifiers, digest, expireAtMs });
    return create(PushBlobResponseSchema);
  }

  const unimplemented = (what: string) => async () => {
    throw new StatusError(Code.UNIMPLEMENTED, `${what} is not served: actiond fetches and pushes blobs only (FetchBlob, PushBlob)`);
  };

  const services: ServiceBinding[] = [
    { service: Fetch, handlers: { fetchBlob: unary(ctx, "FetchBlob", fetchBlob), fetchDirectory: unary(ctx, "FetchDirectory", unimplemented("FetchDirectory")) } },
    { service: Push, handlers: { pushBlob: unary(ctx, "PushBlob", pushBlob), pushDirectory: unary(ctx, "PushDirectory", unimplemented("PushDirectory")) } },
  ];
  return services;
}
