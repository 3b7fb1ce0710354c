// Resolving, fetching and unpacking Debian packages with the host's apt configuration.
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Arch } from "../../src/core";
import { run } from "./run";
import { hashFile } from "../../src/core";

export interface Deb {
  name: string;
  version: string;
  /** The file name apt gives it in the cache directory. */
  file: string;
  size: number;
  sha256: string;
}

/** Asks apt which version of each package it would fetch (no download, no network). Fails on any it cannot find. */
export async function resolvePackages(names: string[], arch: Arch): Promise<Deb[]> {
  let out: string;
  try {
    out = await run(["apt-get", "download", "--print-uris", ...names.map((n) => `${n}:${arch.deb}`)]);
  } catch (err) {
    const hint = "check the profile; if the package exists in Debian, the apt lists may be missing: run apt-get update (for a foreign --arch, first dpkg --add-architecture <deb>)";
    throw new Error(`apt cannot resolve the runtime's packages (${hint}):\n${(err as Error).message}`);
  }
  // Each line: 'URI' name_version_arch.deb size SHA256:hex
  const debs: Deb[] = [];
  for (const line of out.split("\n").filter(Boolean)) {
    const m = /^'[^']+' (([^_]+)_([^_]+)_[^_]+\.deb) (\d+) SHA256:([0-9a-f]{64})$/.exec(line);
    if (!m) throw new Error(`unexpected line from apt-get download --print-uris: ${line}`);
    debs.push({ file: m[1] as string, name: m[2] as string, version: decodeURIComponent(m[3] as string), size: Number(m[4]), sha256: m[5] as string });
  }
  // apt skips a package it has nothing to fetch for (e.g. a purely virtual name) without failing.
  const got = new Set(debs.map((d) => d.name));
  const missing = names.filter((n) => !got.has(n));
  if (missing.length > 0) throw new Error(`apt resolved no .deb for: ${missing.join(", ")} (virtual packages must be named by a real package)`);
  if (debs.length !== names.length) throw new Error(`apt returned ${debs.length} .debs for ${names.length} packages: ${debs.map((d) => d.file).join(" ")}`);
  return debs.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** Makes sure every .deb is in `cacheDir` with the hash apt expects; downloads only those missing. Returns how many it fetched. */
export async function fetchDebs(debs: Deb[], arch: Arch, cacheDir: string): Promise<number> {
  mkdirSync(cacheDir, { recursive: true });
  const want: Deb[] = [];
  for (const d of debs) {
    const path = join(cacheDir, d.file);
    if (existsSync(path) && (await hashFile("sha256", path)) === d.sha256) continue;
    rmSync(path, { force: true });
    want.push(d);
  }
  if (want.length === 0) return 0;
  // As root apt would drop to the _apt user, who cannot write here; say so instead of warning.
  const asRoot = process.getuid?.() === 0 ? ["-o", "APT::Sandbox::User=root"] : [];
  await run(["apt-get", "download", "-q", ...asRoot, ...want.map((d) => `${d.name}:${arch.deb}=${d.version}`)], { cwd: cacheDir });
  for (const d of want) {
    const path = join(cacheDir, d.file);
    if (!existsSync(path)) throw new Error(`apt-get download did not produce ${d.file}`);
    const got = await hashFile("sha256", path);
    if (got !== d.sha256) throw new Error(`${d.file}: sha256 ${got}, apt expected ${d.sha256}`);
  }
  return want.length;
}

/** Unpacks one .deb's files (no maintainer scripts run) into `dir`. */
export async function extractDeb(debPath: string, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await run(["dpkg-deb", "--extract", debPath, dir]);
}
