// Builds the VM guest's kernel from Debian's linux-source with our config fragments:
//   bun vm/build-kernel.ts [--arch x86_64|aarch64] [--force]
// writes build/vm/kernel-<arch> (x86_64: bzImage, for QEMU; aarch64: the raw Image that
// Virtualization.framework needs), kernel-<arch>.config and kernel-<arch>.release (uname -r). A kernel takes minutes to build, so the
// result is kept by input hash (source package, fragments, this script, compiler) in
// $ACTIOND_BUILD_CACHE (default ~/.cache/actiond-build), outside the checkout: a fresh clone on the
// same machine reuses it.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { which } from "bun";
import { archNamed, hostArchName, type Arch } from "../src/core";
import { checkoutAssetPath } from "../src/assets";
import { extractDeb, fetchDebs, resolvePackages } from "../runtimes/recipe/apt";
import { withLock } from "../runtimes/recipe/lock";
import { run } from "../runtimes/recipe/run";

const REPO = resolve(import.meta.dir, "..");
const SOURCE_PACKAGE = "linux-source-6.1";
/** Kernel ARCH=, the image make builds, and the cross-compiler prefix when this host is another arch. */
const KERNEL_ARCH: Record<Arch["name"], { arch: string; target: string; image: string; cross: string; crossPackage: string }> = {
  x86_64: { arch: "x86_64", target: "bzImage", image: "arch/x86/boot/bzImage", cross: "x86_64-linux-gnu-", crossPackage: "gcc-x86-64-linux-gnu" },
  aarch64: { arch: "arm64", target: "Image", image: "arch/arm64/boot/Image", cross: "aarch64-linux-gnu-", crossPackage: "gcc-aarch64-linux-gnu" },
};
/** Tools the build runs, and the Debian package for each. */
const TOOLS: Record<string, string> = { make: "make", bc: "bc", bison: "bison", flex: "flex", tar: "tar", xz: "xz-utils", "dpkg-deb": "dpkg", "apt-get": "apt" };

const say = (msg: string) => console.log(`kernel: ${msg}`);

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { arch: { type: "string" }, force: { type: "boolean", default: false } } });
  const started = performance.now();
  const arch = archNamed(values.arch ?? hostArchName());
  const k = KERNEL_ARCH[arch.name];
  const cross = arch.name === hostArchName() ? "" : k.cross;

  // Everything needed is checked before the long part starts.
  const missing = Object.entries(TOOLS).filter(([tool]) => !which(tool)).map(([tool, pkg]) => `${tool} (${pkg})`);
  if (cross && !which(`${cross}gcc`)) missing.push(`${cross}gcc (${k.crossPackage})`);
  if (!existsSync("/usr/include/gelf.h")) missing.push("libelf headers (libelf-dev)");
  if (missing.length > 0) throw new Error(`the kernel build needs: ${missing.join(", ")}; apt-get install the packages named`);

  const [source] = await resolvePackages([SOURCE_PACKAGE], archNamed(hostArchName()));
  const fragments = ["vm/kernel/common.config", `vm/kernel/${arch.name}.config`];
  const gccVersion = (await run([`${cross}gcc`, "--version"])).split("\n")[0];
  const h = new Bun.CryptoHasher("sha256");
  h.update(JSON.stringify({ arch: arch.name, source: source!.sha256, gccVersion }));
  for (const f of [...fragments, "vm/build-kernel.ts"]) h.update(`\0${f}\0`).update(readFileSync(join(REPO, f)));
  const inputHash = h.digest("hex");

  const cacheRoot = resolve(process.env.ACTIOND_BUILD_CACHE || join(homedir(), ".cache/actiond-build"));
  const cached = join(cacheRoot, "kernel", `${arch.name}-${inputHash.slice(0, 24)}`);
  const kernel = checkoutAssetPath("guest-kernel", { arch: arch.name });
  mkdirSync(dirname(kernel), { recursive: true });
  mkdirSync(join(cacheRoot, "kernel"), { recursive: true });
  await withLock(join(cacheRoot, "kernel", ".lock"), async () => {
    if (values.force || !existsSync(join(cached, "kernel"))) {
      say(`${arch.name}: building from ${source!.file} (inputs ${inputHash.slice(0, 12)}); this takes minutes`);
      await build(arch, cross, source!.file, fragments, cacheRoot, cached);
    } else {
      say(`${arch.name}: up to date in ${cached} (--force rebuilds)`);
    }
  });
  copyFileSync(join(cached, "kernel"), kernel);
  copyFileSync(join(cached, "config"), `${kernel}.config`);
  copyFileSync(join(cached, "release"), `${kernel}.release`);
  const bytes = statSync(kernel).size;
  say(`wrote ${relative(REPO, kernel)} (${(bytes / 2 ** 20).toFixed(1)} MiB, ${readFileSync(join(cached, "release"), "utf8").trim()}) in ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

async function build(arch: Arch, cross: string, debFile: string, fragments: string[], cacheRoot: string, cached: string): Promise<void> {
  const k = KERNEL_ARCH[arch.name];
  const debs = join(cacheRoot, "debs");
  const [source] = await resolvePackages([SOURCE_PACKAGE], archNamed(hostArchName()));
  await fetchDebs([source!], archNamed(hostArchName()), debs);
  const work = mkdtempSync(join(cacheRoot, `.work-${arch.name}-`));
  try {
    await extractDeb(join(debs, debFile), join(work, "deb"));
    const tarball = join(work, "deb/usr/src", `${SOURCE_PACKAGE}.tar.xz`);
    await run(["tar", "-xf", tarball, "-C", work]);
    const src = join(work, SOURCE_PACKAGE);
    // The same sources give the same kernel: no build date, user or host in it.
    const env = {
      ...process.env,
      ARCH: k.arch,
      CROSS_COMPILE: cross,
      KBUILD_BUILD_TIMESTAMP: "1970-01-01 00:00:00 UTC",
      KBUILD_BUILD_USER: "actiond",
      KBUILD_BUILD_HOST: "actiond",
      KBUILD_BUILD_VERSION: "1",
    };
    await run(["make", "allnoconfig"], { cwd: src, env });
    await run(["scripts/kconfig/merge_config.sh", "-m", ".config", ...fragments.map((f) => join(REPO, f))], { cwd: src, env });
    await run(["make", "olddefconfig"], { cwd: src, env });
    checkConfig(readFileSync(join(src, ".config"), "utf8"), fragments);
    const jobs = String(navigator.hardwareConcurrency || 2);
    await run(["make", `-j${jobs}`, k.target], { cwd: src, env });
    const release = (await run(["make", "-s", "kernelrelease"], { cwd: src, env })).trim();
    const staging = `${cached}.tmp`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true });
    copyFileSync(join(src, k.image), join(staging, "kernel"));
    copyFileSync(join(src, ".config"), join(staging, "config"));
    writeFileSync(join(staging, "release"), `${release}\n`);
    rmSync(cached, { recursive: true, force: true });
    await run(["mv", staging, cached]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Every option a fragment sets must have survived olddefconfig (a missing dependency drops it silently). */
function checkConfig(config: string, fragments: string[]): void {
  const have = new Set(config.split("\n").filter((l) => l.startsWith("CONFIG_")));
  const lost: string[] = [];
  for (const f of fragments) {
    for (const line of readFileSync(join(REPO, f), "utf8").split("\n")) {
      if (line.startsWith("CONFIG_") && !have.has(line)) lost.push(`${line} (${f})`);
    }
  }
  if (lost.length > 0) throw new Error(`the kernel configuration lost options the fragments ask for (a dependency is missing):\n  ${lost.join("\n  ")}`);
}

try {
  await main();
} catch (err) {
  console.error(`kernel build failed: ${(err as Error).message}`);
  process.exit(1);
}
