// The assets a compiled actiond carries (see manifest.ts): found through Bun.embeddedFiles, checked
// against their sha256 and extracted once each to <root>/embedded/<name>-<sha256>.
//
// Extraction writes a temporary file, checks its hash, and link(2)s it to its final name, so a
// half-written asset is never visible and two processes starting at once cannot clash (the second
// link finds the first one's complete file). A verified file gets a stamp of its inode, size, mtime
// and ctime; a later start that finds the same stamp skips re-hashing (any write or chmod changes
// ctime). A file that fails the check is removed and extracted again.
import { chmodSync, closeSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, type Stats } from "node:fs";
import { join } from "node:path";
import { hashFile, startProgress, writeFileAtomically, type Logger } from "../core";
import { MANIFEST_FILE, parseManifest, type AssetEntry, type AssetRole, type PayloadManifest } from "./manifest";

export interface EmbeddedPayload {
  manifest: PayloadManifest;
  /** The embedded file for each asset, by its AssetEntry.file. */
  files: Map<string, Blob>;
}

/** What this executable carries; undefined when running from source (nothing is embedded). */
export async function embeddedPayload(): Promise<EmbeddedPayload | undefined> {
  const files = new Map<string, Blob>();
  for (const blob of Bun.embeddedFiles) files.set((blob as Blob & { name: string }).name, blob);
  const manifest = files.get(MANIFEST_FILE);
  if (!manifest) return undefined;
  return { manifest: parseManifest(await manifest.text()), files };
}

export interface ExtractedAssets {
  /** Extracted paths in manifest order, by role. */
  byRole: Map<AssetRole, string[]>;
  /** The sha256 of each extracted path (checked by this call). */
  digests: Map<string, string>;
  extracted: number;
  reused: number;
  ms: number;
}

/** A temporary file older than this belongs to an extraction that died, not one in progress. */
const STALE_TMP_MS = 10 * 60_000;

/** Makes the assets of `payload` with these roles (default: all) available under <root>/embedded,
 * extracting what is missing or damaged. */
export async function extractAssets(payload: EmbeddedPayload, root: string, log: Logger, roles?: AssetRole[]): Promise<ExtractedAssets> {
  const started = performance.now();
  const dir = join(root, "embedded");
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  removeStaleTemporaries(dir);
  const result: ExtractedAssets = { byRole: new Map(), digests: new Map(), extracted: 0, reused: 0, ms: 0 };
  const missing: { asset: AssetEntry; path: string }[] = [];
  for (const asset of payload.manifest.assets) {
    if (roles && !roles.includes(asset.role)) continue;
    const path = join(dir, `${asset.name}-${asset.sha256}`);
    if (await isIntact(path, asset, log)) result.reused++;
    else missing.push({ asset, path });
    result.byRole.set(asset.role, [...(result.byRole.get(asset.role) ?? []), path]);
    result.digests.set(path, asset.sha256);
  }
  // The first start of an executable unpacks a few hundred MiB: say how it goes.
  const total = missing.reduce((n, m) => n + m.asset.size, 0);
  const progress = missing.length > 0 ? startProgress(`extracting ${missing.length} of this executable's files to ${dir}`, total, log, { unit: "MiB" }) : undefined;
  let done = 0;
  try {
    for (const { asset, path } of missing) {
      const blob = payload.files.get(asset.file);
      if (!blob) throw new Error(`this actiond executable is incomplete: the asset ${asset.file} is missing from it; download it again`);
      progress?.update(done, asset.name);
      const t = performance.now();
      await extract(asset, blob, dir, path);
      done += asset.size;
      progress?.update(done, asset.name);
      log.debug(`extracted ${asset.name} (${(asset.size / 2 ** 20).toFixed(1)} MiB) to ${path} in ${(performance.now() - t).toFixed(0)} ms`);
      result.extracted++;
    }
  } finally {
    progress?.end();
  }
  result.ms = performance.now() - started;
  if (missing.length > 0) log.info(`extracted ${missing.map((m) => m.asset.name).join(", ")} (${(total / 2 ** 20).toFixed(1)} MiB) to ${dir} in ${result.ms.toFixed(0)} ms`);
  return result;
}

/** The extracted file is there and holds what the manifest says. */
async function isIntact(path: string, asset: AssetEntry, log: Logger): Promise<boolean> {
  let st: Stats;
  try {
    st = statSync(path);
  } catch {
    return false;
  }
  const stampPath = `${path}.verified`;
  if (readStamp(stampPath) === stamp(st)) return true;
  const sha256 = st.size === asset.size ? await hashFile("sha256", path) : "(size differs)";
  if (sha256 === asset.sha256) {
    writeFileAtomically(stampPath, stamp(statSync(path)));
    return true;
  }
  log.warn(`${path} is damaged (sha256 ${sha256}, expected ${asset.sha256}): extracting it again`);
  // Only the file that was checked: another process may have put a good one there meanwhile.
  if (statSync(path, { throwIfNoEntry: false })?.ino === st.ino) rmSync(path, { force: true });
  rmSync(stampPath, { force: true });
  return false;
}

async function extract(asset: AssetEntry, blob: Blob, dir: string, path: string): Promise<void> {
  const tmp = join(dir, `.tmp-${asset.name}-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    const data = asset.encoding === "zstd" ? Bun.zstdDecompressSync(new Uint8Array(await blob.arrayBuffer())) : blob;
    await Bun.write(tmp, data);
    const sha256 = await hashFile("sha256", tmp);
    if (sha256 !== asset.sha256) {
      throw new Error(`this actiond executable is damaged: its asset ${asset.name} has sha256 ${sha256}, its manifest says ${asset.sha256}; download it again`);
    }
    const fd = openSync(tmp, "r");
    try {
      fsyncSync(fd); // the content must be on disk before the name says it is complete
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, asset.executable ? 0o555 : 0o444);
    try {
      linkSync(tmp, path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // EEXIST: another process extracted it first; its file is complete (linked only once checked).
      // A filesystem without hard links: rename instead (any file there has the same checked bytes).
      if (code === "EPERM" || code === "ENOTSUP" || code === "EOPNOTSUPP") renameSync(tmp, path);
      else if (code !== "EEXIST") throw err;
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  // Stamped after the temporary name is gone: unlinking it changed the inode's ctime.
  writeFileAtomically(`${path}.verified`, stamp(statSync(path)));
}

function stamp(st: Stats): string {
  return JSON.stringify({ ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs });
}

function readStamp(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function removeStaleTemporaries(dir: string): void {
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(".tmp-")) continue;
    const path = join(dir, name);
    try {
      if (Date.now() - statSync(path).mtimeMs > STALE_TMP_MS) rmSync(path, { force: true });
    } catch {
      // gone already
    }
  }
}
