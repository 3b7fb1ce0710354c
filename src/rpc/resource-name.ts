// ByteStream resource names for CAS blobs (reapi-facts §7):
//   read:  {instance/}blobs/{fn/}{hash}/{size}
//          {instance/}compressed-blobs/{compressor}/{fn/}{hash}/{size}
//          {instance/}operations/{id}/stdout|stderr  (a running action's output: its stream names)
//   write: {instance/}uploads/{uuid}/blobs/{fn/}{hash}/{size}{/metadata}
//          {instance/}uploads/{uuid}/compressed-blobs/{compressor}/{fn/}{hash}/{size}{/metadata}
import { Code, StatusError } from "../core";
import { blobDigest, type BlobDigest, type DigestFunctionName } from "../cas";

export type Compression = "identity" | "zstd";

export interface BlobResource {
  instance: string;
  digest: BlobDigest;
  compression: Compression;
  /** For uploads: the client's upload id; "" for reads. */
  uploadId: string;
}

/** Function segments a resource name may carry; legacy functions (SHA-256) carry none. */
const FUNCTION_SEGMENTS: Record<string, DigestFunctionName | null> = {
  blake3: "blake3",
  sha256tree: null,
  gitsha1: null,
};

/** The stream name of an execution's stdout or stderr (ExecuteOperationMetadata.stdout_stream_name). */
export function outputStreamName(operation: string, stream: "stdout" | "stderr"): string {
  return `${operation}/${stream}`;
}

/** An operation's output stream a read names, or undefined when it names something else. */
export function parseOutputStream(name: string): { operation: string; stream: "stdout" | "stderr" } | undefined {
  const m = /(?:^|\/)(operations\/[^/]+)\/(stdout|stderr)$/.exec(name);
  return m ? { operation: m[1]!, stream: m[2] as "stdout" | "stderr" } : undefined;
}

export function parseReadResource(name: string): BlobResource {
  const parts = name.split("/");
  const at = parts.findIndex((p) => p === "blobs" || p === "compressed-blobs");
  if (at < 0) throw bad(name, 'expected "blobs/" or "compressed-blobs/"');
  const r = parseBlobPart(name, parts, at);
  if (r.rest.length > 0) throw bad(name, "unexpected segments after the size");
  return { instance: parts.slice(0, at).join("/"), digest: r.digest, compression: r.compression, uploadId: "" };
}

export function parseWriteResource(name: string): BlobResource {
  const parts = name.split("/");
  const at = parts.indexOf("uploads");
  if (at < 0) throw bad(name, 'expected "uploads/{uuid}/blobs/..."');
  const uploadId = parts[at + 1];
  if (!uploadId) throw bad(name, "missing upload id after uploads/");
  const kind = parts[at + 2];
  if (kind !== "blobs" && kind !== "compressed-blobs") throw bad(name, 'expected "blobs" or "compressed-blobs" after the upload id');
  // Anything after the size is optional metadata, which we ignore.
  const r = parseBlobPart(name, parts, at + 2);
  return { instance: parts.slice(0, at).join("/"), digest: r.digest, compression: r.compression, uploadId };
}

function parseBlobPart(name: string, parts: string[], at: number) {
  let i = at + 1;
  let compression: Compression = "identity";
  if (parts[at] === "compressed-blobs") {
    const c = parts[i++];
    if (c !== "zstd") throw bad(name, `compressor "${c ?? ""}" is not supported (only zstd)`);
    compression = "zstd";
  }
  let fn: DigestFunctionName = "sha256";
  const seg = parts[i];
  if (seg !== undefined && seg in FUNCTION_SEGMENTS) {
    const f = FUNCTION_SEGMENTS[seg];
    if (!f) throw bad(name, `digest function "${seg}" is not supported (use SHA256 or BLAKE3)`);
    fn = f;
    i++;
  }
  const hash = parts[i];
  const sizeText = parts[i + 1];
  if (hash === undefined || sizeText === undefined) throw bad(name, "expected {hash}/{size}");
  if (!/^\d{1,16}$/.test(sizeText)) throw bad(name, `size "${sizeText}" is not a decimal number`);
  if (fn === "sha256" && hash.length !== 64) {
    throw bad(name, `a ${hash.length}-character hash names no digest function actiond serves`);
  }
  const digest = blobDigest(fn, hash, BigInt(sizeText), `resource name "${name}"`);
  return { digest, compression, rest: parts.slice(i + 2) };
}

function bad(name: string, why: string): StatusError {
  return new StatusError(Code.INVALID_ARGUMENT, `malformed resource name "${name}": ${why}`);
}
