// Builds a runtime image (a read-only root filesystem for actions) from Debian packages:
//   bun runtimes/build.ts [--profile base|cc] [--arch x86_64|aarch64] [--out DIR] [--debs DIR] [--force]
// writes <out>/<profile>-<arch>.sqfs and, beside it, <profile>-<arch>.build.json (what it was built
// from). Skips the work when the recorded inputs (recipe, package list, resolved versions) match.
import { availableParallelism } from "node:os";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { MANIFEST_FILE, type RuntimeManifest } from "../src/runtime";
import { checkoutAssetPath } from "../src/assets";
import { extractDeb, fetchDebs, resolvePackages, type Deb } from "./recipe/apt";
import { archNamed, createLogger, hashFile, hostArchName, startProgress, type Arch } from "../src/core";
import { checkRoot } from "./recipe/check";
import { withLock } from "./recipe/lock";
import { readProfile } from "./recipe/profile";
import { addSystemFiles, mergePackage, newestFileMtime, writeRootFile, type MergeStats } from "./recipe/rootfs";
import { eachLimited, requireTools } from "./recipe/run";
import { makeSquashfs, mksquashfsVersion } from "./recipe/squashfs";

const REPO = resolve(import.meta.dir, "..");
/** Everything whose change must rebuild the image (besides the profile files and the packages). */
const RECIPE_SOURCES = ["runtimes/build.ts", "src/runtime/manifest.ts", "src/core/arch.ts", ...readdirSync(join(REPO, "runtimes/recipe")).sort().map((f) => `runtimes/recipe/${f}`)];

interface BuildRecord {
  inputHash: string;
  image: string;
  imageSha256: string;
  imageBytes: number;
  manifest: RuntimeManifest;
}

const say = (msg: string) => console.log(`runtime: ${msg}`);
/** Progress lines go where `say` writes when there is no terminal to draw on. */
const progressLog = { ...createLogger("info"), info: (msg: string) => console.log(msg) };
const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { profile: { type: "string", default: "base" }, arch: { type: "string" }, out: { type: "string" }, debs: { type: "string" }, force: { type: "boolean", default: false } },
  });
  const started = performance.now();
  process.umask(0o022); // modes in the image must not depend on the caller's umask
  requireTools();
  const arch = archNamed(values.arch ?? hostArchName());
  const profile = values.profile as string;
  const defaultImage = checkoutAssetPath("runtime", { arch: arch.name, profile });
  const out = resolve(values.out ?? dirname(defaultImage));
  const debsDir = resolve(values.debs ?? join(out, "debs"));
  const image = join(out, basename(defaultImage));
  const recordFile = join(out, `${profile}-${arch.name}.build.json`);
  mkdirSync(out, { recursive: true });

  const { packages, files: profileFiles } = readProfile(profile, arch.name);
  const debs = await resolvePackages(packages, arch);
  const inputHash = await hashInputs(profile, arch, profileFiles, debs);
  say(`${profile}-${arch.name}: ${debs.length} packages resolved, inputs ${inputHash.slice(0, 12)}`);

  await withLock(join(out, ".build.lock"), async () => {
    const old = readRecord(recordFile);
    if (!values.force && old?.inputHash === inputHash && (await imageMatches(image, old))) {
      say(`up to date: ${relative(process.cwd(), image)} (${mib(old.imageBytes)}), nothing to do (--force rebuilds)`);
      return;
    }
    say(old ? "inputs changed or image missing: rebuilding" : "no previous build: building");
    const downloading = startProgress("runtime: fetching packages", undefined, progressLog);
    const fetched = await fetchDebs(debs, arch, debsDir).finally(() => downloading.end());
    say(`debs: ${fetched} downloaded, ${debs.length - fetched} from the cache ${relative(process.cwd(), debsDir)}`);

    // Holding the lock, any staging directory left here is from a build that was killed.
    for (const name of readdirSync(out)) if (name.startsWith(".staging-")) rmSync(join(out, name), { recursive: true, force: true });
    const staging = mkdtempSync(join(out, `.staging-${profile}-${arch.name}-`));
    try {
      const manifest = await assembleRoot(staging, profile, arch, debs, debsDir);
      const tmpImage = join(staging, "image.sqfs");
      await makeSquashfs(join(staging, "root"), tmpImage, manifest.sourceDateEpoch);
      renameSync(tmpImage, image);
      const record: BuildRecord = { inputHash, image: relative(out, image), imageSha256: await hashFile("sha256", image), imageBytes: statSync(image).size, manifest };
      writeFileSync(recordFile, `${JSON.stringify(record, null, 2)}\n`);
      say(`wrote ${relative(process.cwd(), image)}: ${mib(record.imageBytes)}, sha256 ${record.imageSha256.slice(0, 16)}…, ${manifest.libc}`);
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  });
  say(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/** Unpacks, merges, prunes, adds the system files and the manifest, and checks the result. */
async function assembleRoot(staging: string, profile: string, arch: Arch, debs: Deb[], debsDir: string): Promise<RuntimeManifest> {
  const unpacked = join(staging, "pkgs"), root = join(staging, "root");
  mkdirSync(root, { mode: 0o755 });
  const unpacking = startProgress("runtime: unpacking packages", debs.length, progressLog);
  let done = 0;
  await eachLimited(debs, availableParallelism(), async (d) => {
    await extractDeb(join(debsDir, d.file), join(unpacked, d.name));
    unpacking.update(++done, d.name);
  }).finally(() => unpacking.end());
  const owners = new Map<string, string>();
  const stats: MergeStats = { files: 0, pruned: 0 };
  for (const d of debs) mergePackage(join(unpacked, d.name), d.name, root, arch, owners, stats);
  say(`unpacked ${debs.length} packages: ${stats.files} files and links kept, ${stats.pruned} doc/locale/… paths pruned`);

  const libc6 = debs.find((d) => d.name === "libc6");
  const glibc = libc6 && /^(?:\d+:)?(\d+\.\d+)/.exec(libc6.version)?.[1];
  if (!glibc) throw new Error("the profile must include libc6 (its version names the runtime's libc)");
  const envEpoch = Number(process.env.SOURCE_DATE_EPOCH);
  const manifest: RuntimeManifest = {
    name: profile,
    libc: `glibc${glibc}`,
    arch: arch.name,
    debian: debianRelease(),
    packages: Object.fromEntries(debs.map((d) => [d.name, d.version])),
    // Without SOURCE_DATE_EPOCH, the newest file in the packages: changes only when they do.
    sourceDateEpoch: Number.isInteger(envEpoch) && envEpoch > 0 ? envEpoch : newestFileMtime(root),
  };
  addSystemFiles(root);
  writeRootFile(root, MANIFEST_FILE, `${JSON.stringify(manifest, null, 2)}\n`);

  const required = [
    arch.loader, "/bin/sh", "/bin/bash", "/usr/bin/awk", "/usr/bin/env",
    ...(debs.some((d) => d.name === "g++") ? ["/usr/bin/cc", "/usr/bin/c++", "/usr/bin/as", "/usr/bin/ld"] : []),
    ...debs.map((d) => `/usr/share/doc/${d.name}/copyright`), // license compliance: one per package shipped
  ];
  const check = checkRoot(root, arch, required);
  if (check.problems.length > 0) {
    throw new Error(`the image is incomplete (${check.problems.length} problems; add the packages to runtimes/profiles/${profile}.txt):\n  ${check.problems.join("\n  ")}`);
  }
  say(`checked ${check.elfFiles} ELF files: every interpreter and DT_NEEDED library is in the image`);
  return manifest;
}

/** sha256 over the recipe's sources, the profile files, the resolved .debs and the mksquashfs version. */
async function hashInputs(profile: string, arch: Arch, profileFiles: string[], debs: Deb[]): Promise<string> {
  const h = new Bun.CryptoHasher("sha256");
  h.update(JSON.stringify({ profile, arch: arch.name, mksquashfs: await mksquashfsVersion(), debs: debs.map((d) => [d.file, d.sha256]) }));
  for (const f of [...RECIPE_SOURCES.map((s) => join(REPO, s)), ...profileFiles]) {
    h.update(`\0${relative(REPO, f)}\0`);
    h.update(readFileSync(f));
  }
  return h.digest("hex");
}

function readRecord(path: string): BuildRecord | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as BuildRecord;
  } catch {
    return undefined;
  }
}

/** The image on disk is the one the record describes (not replaced or damaged since). */
async function imageMatches(image: string, record: BuildRecord): Promise<boolean> {
  try {
    return statSync(image).size === record.imageBytes && (await hashFile("sha256", image)) === record.imageSha256;
  } catch {
    return false;
  }
}

/** The packages come from the host's apt sources, so the host's Debian release is theirs. */
function debianRelease(): string {
  const osRelease = readFileSync("/etc/os-release", "utf8");
  const id = /^ID=(.*)$/m.exec(osRelease)?.[1]?.replace(/"/g, "");
  const version = /^VERSION_ID=(.*)$/m.exec(osRelease)?.[1]?.replace(/"/g, "");
  if (id !== "debian" || !version) throw new Error(`the runtime recipe takes its packages from Debian's apt; this host is ${id ?? "unknown"} ${version ?? ""}`);
  return version;
}

try {
  await main();
} catch (err) {
  console.error(`runtime build failed: ${(err as Error).message}`);
  process.exit(1);
}
