// Hashing, for every digest function actiond serves: one incremental interface, whole buffers, and
// files (read at once when small, streamed when big).
import { createBLAKE3 } from "hash-wasm";

/** The digest functions actiond stores and serves, by their resource-name spelling. */
export type DigestFunctionName = "sha256" | "blake3";

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

/** Files up to this size are read whole; bigger ones are streamed through the hasher. */
const READ_WHOLE_BYTES = 4 * 1024 * 1024;

/** The hash of a file's content. `size`, when known, spares a stat. */
export async function hashFile(fn: DigestFunctionName, path: string, size?: number): Promise<string> {
  const file = Bun.file(path);
  if ((size ?? file.size) <= READ_WHOLE_BYTES) return hashBytes(fn, await file.bytes());
  const hasher = await newHasher(fn);
  for await (const chunk of file.stream()) hasher.update(chunk);
  return hasher.digestHex();
}
