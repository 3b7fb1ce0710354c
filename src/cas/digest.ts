// Digest functions and typed digests. Everything past the RPC edge works with a BlobDigest, which is
// known to be well formed: a supported function, a lowercase hex hash of the right length, a safe size.
import { createBLAKE3 } from "hash-wasm";
import { DigestFunction_Value as DigestFunction } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { StatusError, Code } from "../rpc/status";

export { DigestFunction };

/** The digest functions actiond stores and serves, by their resource-name spelling. */
export type DigestFunctionName = "sha256" | "blake3";

export const SUPPORTED_FUNCTIONS: readonly DigestFunction[] = [DigestFunction.SHA256, DigestFunction.BLAKE3];

export interface BlobDigest {
  readonly fn: DigestFunctionName;
  readonly hash: string;
  readonly size: number;
}

/** An incremental hasher with one interface for every digest function. */
export interface Hasher {
  update(data: Uint8Array): void;
  digestHex(): string;
}

/** SHA-256 is built into Bun; BLAKE3 comes from hash-wasm (which compiles its module once). */
export async function newHasher(fn: DigestFunctionName): Promise<Hasher> {
  if (fn === "sha256") {
    const h = new Bun.CryptoHasher("sha256");
    return { update: (d) => void h.update(d), digestHex: () => h.digest("hex") };
  }
  const h = await createBLAKE3();
  h.init();
  return { update: (d) => void h.update(d), digestHex: () => h.digest("hex") };
}

export async function hashBytes(fn: DigestFunctionName, data: Uint8Array): Promise<string> {
  if (fn === "sha256") return new Bun.CryptoHasher("sha256").update(data).digest("hex");
  const h = await newHasher(fn);
  h.update(data);
  return h.digestHex();
}

export const EMPTY_HASH: Record<DigestFunctionName, string> = {
  sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  blake3: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
};

const HEX64 = /^[0-9a-f]{64}$/;

export function functionName(fn: DigestFunction): DigestFunctionName {
  switch (fn) {
    case DigestFunction.SHA256:
      return "sha256";
    case DigestFunction.BLAKE3:
      return "blake3";
    default:
      throw new StatusError(
        Code.INVALID_ARGUMENT,
        `digest function ${DigestFunction[fn] ?? fn} is not supported (use SHA256 or BLAKE3)`,
      );
  }
}

export function functionValue(name: DigestFunctionName): DigestFunction {
  return name === "sha256" ? DigestFunction.SHA256 : DigestFunction.BLAKE3;
}

/**
 * The function a request means: its digest_function field when set, otherwise SHA-256, the only
 * legacy function we serve (a hash of another length then fails validation with its position).
 */
export function resolveFunction(requested: DigestFunction): DigestFunctionName {
  return requested === DigestFunction.UNKNOWN ? "sha256" : functionName(requested);
}

/** Validates a wire digest (hash string, int64 size) for the given function. */
export function toBlobDigest(fn: DigestFunctionName, hash: string, size: bigint | number, what = "digest"): BlobDigest {
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

export function digestKey(d: BlobDigest): string {
  return `${d.fn}/${d.hash}`;
}

export function formatDigest(d: BlobDigest): string {
  return `${d.fn === "sha256" ? "" : d.fn + "/"}${d.hash}/${d.size}`;
}

function truncate(s: string): string {
  return s.length > 80 ? s.slice(0, 77) + "..." : s;
}
