// `npm run build [-- --all | --target NAME ...] [--vm]`: compile actiond into standalone executables,
// dist/actiond-<target>, each carrying its assets (sandbox helper, vsock relay, runtime image), plus
// what a release publishes beside them: <binary>.sha256, checksums.txt, install.sh, the macOS
// entitlements, the Homebrew formula and the release notes. Without flags: this machine's target.
// --vm also builds the VM guest (kernel, initramfs) for each target's Linux and embeds it.
import { copyFileSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { requireTools } from "./runtimes/recipe/run";
import { hostTarget, MISSING_VM_REASON, TARGETS, type Target } from "./packaging/build/targets";
import { ensureZig } from "./packaging/build/zig";
import { stagePayload, type AssetSource } from "./packaging/build/payload";
import { archNamed, hashFile } from "./src/core";
import { checkoutAssetPath, type PayloadManifest } from "./src/assets";
import { buildInitramfs } from "./vm/initramfs";
import pkg from "./package.json" with { type: "json" };

const REPO = import.meta.dir;
const DIST = join(REPO, "dist");
const say = (msg: string) => console.log(`build: ${msg}`);
const mib = (n: number) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`);
/** Where the release files are published; install.sh and the formula download from here. */
const RELEASES = "https://github.com/actiond/actiond/releases";

async function main(): Promise<void> {
  const started = performance.now();
  const { values } = parseArgs({
    options: { all: { type: "boolean", default: false }, target: { type: "string", multiple: true }, vm: { type: "boolean", default: false } },
  });
  const targets = values.all ? Object.values(TARGETS) : (values.target?.map(targetNamed) ?? [hostTarget()]);
  const arches = [...new Set(targets.map((t) => t.linuxArch))];

  // Everything the build needs is checked before any work starts (the kernel build checks its own).
  requireTools();
  for (const arch of arches) requireAptArch(arch);
  const zigDir = await ensureZig(REPO, say);

  const commit = gitCommit();
  const meta = (target: string, missing: PayloadManifest["missing"]) => ({ version: pkg.version, commit, target, bun: Bun.version, missing });
  const helpers = new Map<string, AssetSource[]>();
  const guests = new Map<string, AssetSource[]>();
  for (const arch of arches) {
    const linux = linuxTarget(arch);
    const shim = join(REPO, "build/dist/shim", linux.zigLinux);
    await run(["bash", "shim/build.sh", shim], { PATH: `${zigDir}:${process.env.PATH}`, ACTIOND_SHIM_TARGET: linux.zigLinux });
    helpers.set(arch, [
      { name: "actiond-sandbox", role: "sandbox-helper", path: join(shim, "actiond-sandbox"), executable: true },
      { name: "actiond-vsock-relay", role: "vsock-relay", path: join(shim, "actiond-vsock-relay"), executable: true },
    ]);
    await run([process.execPath, "runtimes/build.ts", "--profile", "cc", "--arch", arch]);
    if (!values.vm) continue;
    // The VM guest: its kernel, and an initramfs holding /init and a guest build of actiond (the
    // helpers only: its runtime image is a disk of its own).
    await run([process.execPath, "vm/build-kernel.ts", "--arch", arch]);
    const guestExe = join(REPO, "build/dist/guest", `actiond-guest-${linux.name}`);
    await compile(linux, helpers.get(arch)!, meta(`${linux.name} (VM guest)`, []), guestExe);
    const initramfs = checkoutAssetPath("guest-initramfs", { arch });
    const made = await buildInitramfs({ arch: archNamed(arch), actiond: guestExe, init: join(shim, "actiond-guest-init"), debsDir: join(REPO, "build/runtimes/debs"), out: initramfs });
    say(`initramfs-${arch}: ${mib(made.bytes)} (${made.files} files)`);
    guests.set(arch, [
      { name: `kernel-${arch}`, role: "guest-kernel", path: checkoutAssetPath("guest-kernel", { arch }), executable: false },
      { name: `initramfs-${arch}.gz`, role: "guest-initramfs", path: initramfs, executable: false },
    ]);
  }

  // macOS: the Virtualization.framework shim (a dylib for bun:ffi).
  const vzShim = dirname(checkoutAssetPath("vz-shim"));
  if (targets.some((t) => t.vmRoles.includes("vz-shim"))) {
    await run(["bash", "shim/build.sh", vzShim], { PATH: `${zigDir}:${process.env.PATH}`, ACTIOND_SHIM_TARGET: "aarch64-macos" });
  }

  rmSync(DIST, { recursive: true, force: true });
  mkdirSync(DIST, { recursive: true });
  const built: string[] = [];
  for (const target of targets) {
    const guest = [...(guests.get(target.linuxArch) ?? [])];
    if (target.vmRoles.includes("vz-shim")) guest.push({ name: "libactiond-vz.dylib", role: "vz-shim", path: checkoutAssetPath("vz-shim"), executable: false });
    const sources: AssetSource[] = [
      ...helpers.get(target.linuxArch)!,
      { name: `runtime-cc-${target.linuxArch}.sqfs`, role: "runtime", path: checkoutAssetPath("runtime", { arch: target.linuxArch, profile: "cc" }), executable: false },
      ...guest,
    ];
    const missing = target.vmRoles
      .filter((role) => !guest.some((g) => g.role === role))
      .map((role) => ({ role, reason: MISSING_VM_REASON }));
    const outfile = join(DIST, `actiond-${target.name}`);
    const manifest = await compile(target, sources, meta(target.name, missing), outfile);
    writeFileSync(`${outfile}.sha256`, `${await sha256(outfile)}  ${basename(outfile)}\n`);
    built.push(outfile);
    say(`${basename(outfile)}: ${mib(statSync(outfile).size)}, carrying ${manifest.assets.map((a) => `${a.name} ${mib(a.storedSize)}`).join(", ")}`);
  }

  // The files a release publishes beside the executables.
  copyFileSync(join(REPO, "packaging/install.sh"), join(DIST, "install.sh"));
  copyFileSync(join(REPO, "packaging/macos/actiond.entitlements"), join(DIST, "actiond.entitlements"));
  const darwin = built.find((f) => f.endsWith("darwin-arm64"));
  if (darwin) {
    render("packaging/homebrew/actiond.rb.in", "actiond.rb", {
      VERSION: pkg.version,
      RELEASES,
      SHA256: await sha256(darwin),
      ENTITLEMENTS_SHA256: await sha256(join(DIST, "actiond.entitlements")),
    });
  }
  const published = [...built, join(DIST, "install.sh"), join(DIST, "actiond.entitlements"), ...(darwin ? [join(DIST, "actiond.rb")] : [])];
  const sums = new Map<string, string>();
  for (const f of published) sums.set(f, await sha256(f));
  const checksums = published.map((f) => `${sums.get(f)}  ${basename(f)}\n`).join("");
  writeFileSync(join(DIST, "checksums.txt"), checksums);
  render("packaging/RELEASE-NOTES.md.in", "RELEASE-NOTES.md", {
    VERSION: pkg.version,
    COMMIT: commit,
    BUN: Bun.version,
    RELEASES,
    FILES: published.map((f) => `| ${basename(f)} | ${mib(statSync(f).size)} | \`${sums.get(f)}\` |`).join("\n"),
  });
  say(`done in ${((performance.now() - started) / 1000).toFixed(1)} s: ${published.map((f) => basename(f)).join(", ")}, checksums.txt, RELEASE-NOTES.md in dist/`);
}

/** bun build --compile of src/main.ts for `target`, carrying `sources` and their manifest. */
async function compile(target: Target, sources: AssetSource[], meta: Omit<PayloadManifest, "assets">, outfile: string): Promise<PayloadManifest> {
  const { files, manifest } = stagePayload(join(REPO, "build/dist/payload", basename(outfile)), sources, meta);
  // [name].[ext]: embedded files keep their names, which the manifest refers to. The source map is
  // embedded too; bun also writes .map files beside its output, so it compiles into a scratch folder.
  // Bun inlines __dirname of CommonJS modules (grpc-js) as the absolute build path; a fixed value
  // keeps the executable the same from any checkout (grpc-js uses it only for channelz's protos).
  const scratch = join(REPO, "build/dist/compile", basename(outfile));
  rmSync(scratch, { recursive: true, force: true });
  await run([process.execPath, "build", "--compile", `--target=${target.bun}`, "--minify", "--sourcemap", "--asset-naming=[name].[ext]", '--define=__dirname="/actiond"', "src/main.ts", ...files, "--outfile", join(scratch, basename(outfile))]);
  mkdirSync(dirname(outfile), { recursive: true });
  renameSync(join(scratch, basename(outfile)), outfile);
  return manifest;
}

/** The Linux target for an architecture (a VM guest runs the Linux build). */
function linuxTarget(arch: Target["linuxArch"]): Target {
  return arch === "x86_64" ? TARGETS["linux-x64"] : TARGETS["linux-arm64"];
}

function targetNamed(name: string): Target {
  const target = TARGETS[name as Target["name"]];
  if (!target) throw new Error(`unknown --target ${name} (known: ${Object.keys(TARGETS).join(", ")})`);
  return target;
}

/** The runtime image for a foreign architecture needs apt to know it; say how, before any work. */
function requireAptArch(arch: Target["linuxArch"]): void {
  const deb = archNamed(arch).deb;
  const known = [Bun.spawnSync(["dpkg", "--print-architecture"]).stdout.toString(), Bun.spawnSync(["dpkg", "--print-foreign-architectures"]).stdout.toString()];
  if (!known.join("\n").split(/\s+/).includes(deb)) {
    throw new Error(`the ${arch} runtime image is made from Debian's ${deb} packages, which apt does not know here: run (as root) \`dpkg --add-architecture ${deb} && apt-get update\``);
  }
}

function gitCommit(): string {
  const r = Bun.spawnSync(["git", "rev-parse", "HEAD"], { cwd: REPO });
  return r.exitCode === 0 ? r.stdout.toString().trim() : "unknown";
}

/** Each published file is hashed once (the executables are 200 MiB each); they do not change after. */
const digests = new Map<string, Promise<string>>();
function sha256(path: string): Promise<string> {
  if (!digests.has(path)) digests.set(path, hashFile("sha256", path));
  return digests.get(path)!;
}

/** Fills @NAME@ placeholders of a template in packaging/ into dist/<out>. */
function render(template: string, out: string, vars: Record<string, string>): void {
  const text = readFileSync(join(REPO, template), "utf8").replace(/@([A-Z0-9_]+)@/g, (m, name: string) => {
    if (!(name in vars)) throw new Error(`${template}: no value for ${m}`);
    return vars[name] as string;
  });
  writeFileSync(join(DIST, out), text);
}

async function run(cmd: string[], env: Record<string, string> = {}): Promise<void> {
  const proc = Bun.spawn(cmd, { cwd: REPO, env: { ...process.env, ...env }, stdout: "inherit", stderr: "inherit" });
  if ((await proc.exited) !== 0) throw new Error(`${cmd.slice(0, 3).join(" ")} … failed (exit ${proc.exitCode})`);
}

try {
  await main();
} catch (err) {
  console.error(`build failed: ${(err as Error).message}`);
  process.exit(1);
}
