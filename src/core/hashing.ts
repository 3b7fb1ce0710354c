// Hashing, for every digest function actiond serves: one incremental interface, whole buffers, and
// files (read at once when small, in slices when big).
import { open } from "node:fs/promises";
import { createBLAKE3 } from "hash-wasm";
import { nextTurn } from "./slices";

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

/** The hash of bytes in memory (one buffer, or pieces in order); big ones a slice at a time, with other calls in between. */
export async function hashBytes(fn: DigestFunctionName, data: Uint8Array | readonly Uint8Array[]): Promise<string> {
  const pieces = data instanceof Uint8Array ? [data] : data;
  if (fn === "sha256" && pieces.length === 1 && pieces[0]!.length <= READ_WHOLE_BYTES) return new Bun.CryptoHasher("sha256").update(pieces[0]!).digest("hex");
  const h = await newHasher(fn);
  let sinceTurn = 0;
  for (const piece of pieces) {
    for (let at = 0; at < piece.length; at += SLICE_BYTES) {
      if (sinceTurn >= SLICE_BYTES) {
        await nextTurn();
        sinceTurn = 0;
      }
      const slice = piece.subarray(at, at + SLICE_BYTES);
      h.update(slice);
      sinceTurn += slice.length;
    }
  }
  return h.digestHex();
}

/** Files up to this size are read whole; bigger ones go through the hasher a slice at a time. */
const READ_WHOLE_BYTES = 4 * 1024 * 1024;
/** A fraction of a millisecond of SHA-256, a few of BLAKE3 (WebAssembly): other calls run between slices. */
const SLICE_BYTES = 256 * 1024;

/**
 * The hash of a file's content. `size`, when known, spares a stat. Big files are read one slice per
 * await (Bun.file().stream() read a 4 GiB output in one go: every other call waited 11 s).
 */
export async function hashFile(fn: DigestFunctionName, path: string, size?: number): Promise<string> {
  const file = Bun.file(path);
  if ((size ?? file.size) <= READ_WHOLE_BYTES) return hashBytes(fn, await file.bytes());
  const hasher = await newHasher(fn);
  const fh = await open(path, "r");
  try {
    const slice = Buffer.allocUnsafe(SLICE_BYTES);
    for (;;) {
      const { bytesRead } = await fh.read(slice, 0, SLICE_BYTES, null);
      if (bytesRead === 0) break;
      hasher.update(slice.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return hasher.digestHex();
}
