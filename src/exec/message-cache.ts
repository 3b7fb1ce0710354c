// Decoded Action, Command and Directory messages by digest. They are immutable (content-addressed)
// and the same few recur in every action (Bazel's tool directories, shared input trees), so each is
// read from disk, verified and decoded once instead of per action. Bounded by encoded size, LRU.
import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, StatusError } from "../core";
import { digestKey, formatDigest, type BlobDigest, type BlobStore } from "../cas";

/** Encoded bytes of the messages kept. */
const MAX_BYTES = 64 * 1024 * 1024;

export class MessageCache {
  private readonly entries = new Map<string, { message: unknown; size: number }>();
  private bytes = 0;

  constructor(private readonly blobs: BlobStore) {}

  /**
   * The decoded message, or undefined when the blob is not in the CAS; INVALID_ARGUMENT if it is not
   * one. `precheck` sees the encoded bytes first (when not cached) and may refuse them undecoded.
   */
  async get<D extends DescMessage>(schema: D, d: BlobDigest, precheck?: (bytes: Uint8Array) => void): Promise<MessageShape<D> | undefined> {
    const key = `${schema.typeName}:${digestKey(d)}`;
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit.message as MessageShape<D>;
    }
    const bytes = await this.blobs.get(d);
    if (!bytes) return undefined;
    precheck?.(bytes);
    let message: MessageShape<D>;
    try {
      message = fromBinary(schema, bytes);
    } catch {
      throw new StatusError(Code.INVALID_ARGUMENT, `blob ${formatDigest(d)} is not a ${schema.name} message`);
    }
    this.entries.set(key, { message, size: bytes.length });
    this.bytes += bytes.length;
    for (const [k, e] of this.entries) {
      if (this.bytes <= MAX_BYTES) break;
      this.entries.delete(k);
      this.bytes -= e.size;
    }
    return message;
  }
}
