// The action cache: one file per action (DiskCas.acPath), written to a temporary file and renamed
// into place, and charged to the same disk budget as the blobs. An entry is only ever served when
// every blob it references is still in the CAS, so eviction turns a hit into a miss, never into a
// broken hit.
import { rename, unlink } from "node:fs/promises";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { ActionResultSchema, type ActionResult, type Digest } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError, missingBlobsError } from "../rpc/status";
import { formatDigest, toBlobDigest, type BlobDigest } from "./digest";
import type { DiskCas } from "./disk-cas";
import { treeFileDigests } from "./tree";
import type { Logger } from "../log";

export class ActionCache {
  constructor(
    private readonly cas: DiskCas,
    private readonly log: Logger,
  ) {}

  /** The stored result, or undefined on a miss (absent, damaged, or referencing evicted blobs). */
  async get(action: BlobDigest): Promise<ActionResult | undefined> {
    const path = this.cas.acPath(action);
    let result: ActionResult;
    try {
      result = decodeEntry(new Uint8Array(await Bun.file(path).arrayBuffer()));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      this.log.warn(`removing damaged AC entry ${formatDigest(action)}: ${(err as Error).message}`);
      this.cas.acRemoved(action);
      await unlink(path).catch(() => {});
      return undefined;
    }
    this.cas.acUsed(action);
    const missing = await this.missingBlobs(action, result).catch(() => ["(unreadable)"]);
    if (missing.length > 0) {
      this.log.debug(`AC entry ${formatDigest(action)} references ${missing.length} evicted blobs; a miss`);
      return undefined;
    }
    return result;
  }

  /** Stores a result after checking that every blob it references is in the CAS. */
  async put(action: BlobDigest, result: ActionResult): Promise<void> {
    const missing = await this.missingBlobs(action, result);
    if (missing.length > 0) {
      throw missingBlobsError(`the action result references ${missing.length} blobs that are not in the CAS`, missing.map((m) => `blobs/${m}`));
    }
    const tmp = join(this.cas.tmpDir, `ac-${randomUUID()}`);
    const entry = encodeEntry(result);
    try {
      await Bun.write(tmp, entry);
      await rename(tmp, this.cas.acPath(action));
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
    this.cas.acStored(action, entry.length);
  }

  /** formatDigest() of each referenced blob that is not in the CAS (the same function as the action). */
  private async missingBlobs(action: BlobDigest, r: ActionResult): Promise<string[]> {
    const direct: BlobDigest[] = [];
    const add = (d: Digest | undefined, what: string) => {
      if (d) direct.push(toBlobDigest(action.fn, d.hash, d.sizeBytes, what));
    };
    for (const f of r.outputFiles) {
      if (!f.digest) throw new StatusError(Code.INVALID_ARGUMENT, `output file "${f.path}" has no digest`);
      add(f.digest, `output file "${f.path}"`);
    }
    add(r.stdoutDigest, "stdout_digest");
    add(r.stderrDigest, "stderr_digest");
    const missing = new Set<string>();
    for (const dir of r.outputDirectories) {
      if (!dir.treeDigest) throw new StatusError(Code.INVALID_ARGUMENT, `output directory "${dir.path}" has no tree_digest`);
      const tree = toBlobDigest(action.fn, dir.treeDigest.hash, dir.treeDigest.sizeBytes, `output directory "${dir.path}"`);
      const files = await treeFileDigests(this.cas, tree);
      if (files) direct.push(...files);
      else missing.add(formatDigest(tree));
    }
    // The empty blob is always in the store, so has() answers for it too.
    for (const d of direct) if (!this.cas.has(d)) missing.add(formatDigest(d));
    return [...missing];
  }
}

/**
 * An entry on disk is the SHA-256 of the serialized ActionResult, then the result. An empty or cut
 * file (a power loss before the data reached the disk) would otherwise decode as an empty result,
 * a hit with no outputs.
 */
function encodeEntry(result: ActionResult): Uint8Array {
  const payload = toBinary(ActionResultSchema, result);
  const sum = new Bun.CryptoHasher("sha256").update(payload).digest();
  const out = new Uint8Array(sum.length + payload.length);
  out.set(sum, 0);
  out.set(payload, sum.length);
  return out;
}

function decodeEntry(bytes: Uint8Array): ActionResult {
  const payload = bytes.subarray(32);
  const sum = new Bun.CryptoHasher("sha256").update(payload).digest();
  if (bytes.length < 32 || !sum.equals(bytes.subarray(0, 32))) throw new Error("checksum mismatch");
  return fromBinary(ActionResultSchema, payload);
}

