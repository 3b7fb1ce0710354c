// Stages what one executable carries: each asset (zstd-compressed when that saves at least a tenth)
// and the manifest describing them, in a folder whose files `bun build --compile` embeds.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { extname, join } from "node:path";
import { formatManifest, MANIFEST_FILE, type AssetEntry, type AssetRole, type PayloadManifest } from "../../src/assets";

export interface AssetSource {
  name: string;
  role: AssetRole;
  path: string;
  executable: boolean;
}

const sha256 = (data: Uint8Array) => new Bun.CryptoHasher("sha256").update(data).digest("hex");

/** Writes <dir>/<stored files> and <dir>/MANIFEST_FILE; returns every file to embed (manifest first). */
export function stagePayload(dir: string, sources: AssetSource[], meta: Omit<PayloadManifest, "assets">): { files: string[]; manifest: PayloadManifest } {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const assets: AssetEntry[] = [];
  const files: string[] = [];
  for (const src of sources) {
    const data = new Uint8Array(readFileSync(src.path));
    // A quick trial first: SquashFS images are compressed already, and level 19 on them takes long.
    const worthIt = Bun.zstdCompressSync(data, { level: 3 }).length < data.length * 0.9;
    const stored = worthIt ? Bun.zstdCompressSync(data, { level: 19 }) : data;
    // Embedded files keep their names ([name].[ext]), so each needs an extension.
    const file = worthIt ? `${src.name}.zst` : extname(src.name) ? src.name : `${src.name}.bin`;
    writeFileSync(join(dir, file), stored);
    files.push(join(dir, file));
    assets.push({
      name: src.name,
      role: src.role,
      size: data.length,
      sha256: sha256(data),
      encoding: worthIt ? "zstd" : "none",
      file,
      storedSize: stored.length,
      storedSha256: sha256(stored),
      storedHead: Buffer.from(stored.subarray(0, 16)).toString("hex"),
      executable: src.executable,
    });
  }
  const manifest: PayloadManifest = { ...meta, assets };
  const manifestPath = join(dir, MANIFEST_FILE);
  writeFileSync(manifestPath, formatManifest(manifest));
  return { files: [manifestPath, ...files], manifest };
}
