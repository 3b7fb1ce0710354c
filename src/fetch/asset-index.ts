// What the Remote Asset API knows: which blob a URI (with its qualifiers) resolved to, and which
// blob has a given checksum.sri. One small file per key under <root>/assets/, written whole (temp
// file, rename), so a restart keeps them and a crash leaves none half-written. A record is only a
// pointer: the blob itself lives in the CAS, and a record whose blob was evicted is a miss.
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { errnoCode, writeFileAtomically, type Logger } from "../core";
import type { BlobDigest } from "../cas";

export interface AssetRecord {
  digest: BlobDigest;
  /** The URI it was fetched from or pushed for. */
  uri: string;
  /** When it was fetched (or pushed), ms since the epoch: for oldest_content_accepted. */
  atMs: number;
  /** When it stops being served (PushBlob's expire_at), if ever. */
  expireAtMs?: number;
}

export class AssetIndex {
  private readonly dir: string;

  constructor(root: string, private readonly log: Logger) {
    this.dir = join(root, "assets");
    mkdirSync(this.dir, { recursive: true });
  }

  get(key: string): AssetRecord | undefined {
    let text: string;
    try {
      text = readFileSync(this.path(key), "utf8");
    } catch (err) {
      if (errnoCode(err) === "ENOENT") return undefined;
      throw err;
    }
    try {
      const r = JSON.parse(text) as AssetRecord;
      if (typeof r.digest?.hash !== "string" || typeof r.digest.size !== "number" || typeof r.atMs !== "number") throw new Error("fields missing");
      return r;
    } catch (err) {
      this.log.warn(`ignoring a damaged asset record (${(err as Error).message}): ${this.path(key)}`);
      return undefined;
    }
  }

  put(key: string, record: AssetRecord): void {
    writeFileAtomically(this.path(key), JSON.stringify({ ...record, key }));
  }

  /** Records are named by the SHA-256 of their key: keys hold URIs of any length and any characters. */
  private path(key: string): string {
    return join(this.dir, new Bun.CryptoHasher("sha256").update(key).digest("hex"));
  }
}
