// Action cache entries on disk: one file per action, written to tmp/ and renamed into place (an
// entry, unlike a blob, is replaced when an action runs again), charged to the same budget as the
// blobs. An entry is the SHA-256 of the serialized ActionResult, then the result: an empty or cut
// file (a power loss before the data reached the disk) would otherwise decode as an empty result,
// a hit with no outputs. This stores and returns entries as they are; whether their blobs are still
// there is CompleteResults' question (cas/action-cache.ts).
import { readFileSync } from "node:fs";
import { rename, unlink } from "node:fs/promises";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { ActionResultSchema, type ActionResult } from "../../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError, errnoCode } from "../../core";
import type { ActionCache } from "../action-cache";
import { formatDigest, type BlobDigest } from "../digest";
import type { BlobFiles } from "./blob-files";
import { storeKey } from "./layout";

const CHECKSUM_BYTES = 32;
/** Entries up to this size are read synchronously; bigger ones (a result listing a million files) are not. */
const READ_AT_ONCE_BYTES = 64 * 1024;

export class DiskActionResults implements ActionCache {
  constructor(private readonly files: BlobFiles) {}

  /** The stored result; undefined when there is none, or when its entry is damaged (then removed). */
  async get(action: BlobDigest): Promise<ActionResult | undefined> {
    const key = storeKey("ac", action);
    // The index knows every entry: a miss (every action's first question in a clean build) touches no file.
    const charged = this.files.space.chargedBytes(key);
    if (charged === undefined) return undefined;
    let bytes: Uint8Array;
    try {
      // Nearly every entry is a few KiB: read at once, it costs less than a trip through the I/O pool.
      bytes = charged <= READ_AT_ONCE_BYTES ? readFileSync(this.files.path(key)) : await Bun.file(this.files.path(key)).bytes();
    } catch (err) {
      if (errnoCode(err) === "ENOENT") {
        this.files.space.forget(key);
        return undefined;
      }
      // Out of descriptors, an I/O error: the entry may be fine; keep it, and let the client retry.
      throw new StatusError(Code.UNAVAILABLE, `cannot read the action cache entry of ${formatDigest(action)}: ${(err as Error).message}`, { cause: err });
    }
    const result = decodeEntry(bytes);
    if (!result) {
      this.files.log.warn(`removing damaged AC entry ${formatDigest(action)} (its checksum does not match)`);
      this.files.space.forget(key);
      await unlink(this.files.path(key)).catch(() => {});
      return undefined;
    }
    this.files.space.use(key);
    return result;
  }

  async put(action: BlobDigest, result: ActionResult): Promise<void> {
    const key = storeKey("ac", action);
    const tmp = this.files.tempPath();
    const entry = encodeEntry(result);
    try {
      await Bun.write(tmp, entry);
      await rename(tmp, this.files.path(key));
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
    this.files.space.replace(key, entry.length);
  }
}

function encodeEntry(result: ActionResult): Uint8Array {
  const payload = toBinary(ActionResultSchema, result);
  const sum = new Bun.CryptoHasher("sha256").update(payload).digest();
  const out = new Uint8Array(CHECKSUM_BYTES + payload.length);
  out.set(sum, 0);
  out.set(payload, CHECKSUM_BYTES);
  return out;
}

/** The result an entry holds, or undefined when its checksum (or its encoding) says it is damaged. */
function decodeEntry(bytes: Uint8Array): ActionResult | undefined {
  if (bytes.length < CHECKSUM_BYTES) return undefined;
  const payload = bytes.subarray(CHECKSUM_BYTES);
  const sum = new Bun.CryptoHasher("sha256").update(payload).digest();
  if (!sum.equals(bytes.subarray(0, CHECKSUM_BYTES))) return undefined;
  try {
    return fromBinary(ActionResultSchema, payload);
  } catch {
    return undefined;
  }
}
