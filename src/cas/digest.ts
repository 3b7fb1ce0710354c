// Typed digests. Everything past the RPC edge works with a BlobDigest, which is known to be well
// formed: a supported function, a lowercase hex hash of the right length, a safe size. fromWire()
// is the one place a wire Digest becomes one (digestOnWire() for one read from raw bytes), toWire()
// the one way back.
import { create } from "@bufbuild/protobuf";
import { DigestFunction_Value as DigestFunction, DigestSchema, type Digest } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError, WIRE_LEN, WIRE_VARINT, asInt64, type DigestFunctionName, type WireReader } from "../core";

export { DigestFunction };
export type { DigestFunctionName };

export const SUPPORTED_FUNCTIONS: readonly DigestFunction[] = [DigestFunction.SHA256, DigestFunction.BLAKE3];

export interface BlobDigest {
  readonly fn: DigestFunctionName;
  readonly hash: string;
  readonly size: number;
}

export const EMPTY_HASH: Record<DigestFunctionName, string> = {
  sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  blake3: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
};

export const DIGEST_FUNCTIONS: readonly DigestFunctionName[] = ["sha256", "blake3"];

const HEX64 = /^[0-9a-f]{64}$/;

export function functionValue(name: DigestFunctionName): DigestFunction {
  return name === "sha256" ? DigestFunction.SHA256 : DigestFunction.BLAKE3;
}

/**
 * The function a request means: its digest_function field when set, otherwise SHA-256, the only
 * legacy function we serve (a hash of another length then fails validation with its position).
 */
export function resolveFunction(requested: DigestFunction): DigestFunctionName {
  switch (requested) {
    case DigestFunction.UNKNOWN:
    case DigestFunction.SHA256:
      return "sha256";
    case DigestFunction.BLAKE3:
      return "blake3";
    default:
      throw new StatusError(Code.INVALID_ARGUMENT, `digest function ${DigestFunction[requested] ?? requested} is not supported (use SHA256 or BLAKE3)`);
  }
}

/** Validates a hash and size for the given function; `what` names the field in the message. */
export function blobDigest(fn: DigestFunctionName, hash: string, size: bigint | number, what = "digest"): BlobDigest {
  if (!HEX64.test(hash)) {
    throw new StatusError(Code.INVALID_ARGUMENT, `${what}: hash "${truncate(hash)}" is not 64 lowercase hex digits (${fn})`);
  }
  if (size < 0 || size > Number.MAX_SAFE_INTEGER) {
    throw new StatusError(Code.INVALID_ARGUMENT, `${what}: size_bytes ${size} is out of range`);
  }
  const d: BlobDigest = { fn, hash, size: Number(size) };
  if (d.size === 0 && hash !== EMPTY_HASH[fn]) {
    throw new StatusError(Code.INVALID_ARGUMENT, `${what}: size 0 but hash is not the ${fn} hash of empty content`);
  }
  if (d.size !== 0 && hash === EMPTY_HASH[fn]) {
    throw new StatusError(Code.INVALID_ARGUMENT, `${what}: hash of empty content with size ${d.size}`);
  }
  return d;
}

/** A wire Digest (which must be set) as a BlobDigest of function fn; INVALID_ARGUMENT naming `what` otherwise. */
export function fromWire(fn: DigestFunctionName, d: Digest | undefined, what: string): BlobDigest {
  if (!d) throw new StatusError(Code.INVALID_ARGUMENT, `${what}: no digest given`);
  return blobDigest(fn, d.hash, d.sizeBytes, what);
}

/** A Digest read from its wire bytes (the field `r` is on), checked as fromWire checks. */
export function digestOnWire(r: WireReader, fn: DigestFunctionName, what: string): BlobDigest {
  let hash = "";
  let size = 0;
  while (!r.done) {
    const { field, type } = r.tag();
    if (field === 1 && type === WIRE_LEN) {
      const [s, e] = r.span();
      hash = r.bytes.toString("utf8", s, e);
    } else if (field === 2 && type === WIRE_VARINT) size = asInt64(r.varint());
    else r.skip(type);
  }
  return blobDigest(fn, hash, size, what);
}

export function toWire(d: BlobDigest): Digest {
  return create(DigestSchema, { hash: d.hash, sizeBytes: BigInt(d.size) });
}

export function emptyDigest(fn: DigestFunctionName): BlobDigest {
  return { fn, hash: EMPTY_HASH[fn], size: 0 };
}

export function digestKey(d: BlobDigest): string {
  return `${d.fn}/${d.hash}`;
}

/** hash/size, with the function first unless SHA-256: how resource names and messages spell a digest. */
export function formatDigest(d: BlobDigest): string {
  return `${d.fn === "sha256" ? "" : d.fn + "/"}${d.hash}/${d.size}`;
}

/** The subject of a MISSING violation: blobs/{fn/}{hash}/{size}. */
export function missingSubject(d: BlobDigest): string {
  return `blobs/${formatDigest(d)}`;
}

function truncate(s: string): string {
  return s.length > 80 ? s.slice(0, 77) + "..." : s;
}
