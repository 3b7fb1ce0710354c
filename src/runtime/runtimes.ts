// The runtimes actions can run in: each a read-only root filesystem (glibc, bash, coreutils …) that
// the sandbox binds into every action's root. They come from images (--runtime-image, SquashFS
// built by runtimes/build.ts) or from directories (--runtime-root). The action's `libc` platform
// property picks one.
import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { hostArchName, type Logger } from "../core";
import { makeImageAvailable, MOUNT_METHODS, type AvailableImage, type MountMethod } from "./images";
import { probeLibc, readManifest } from "./manifest";

export interface Runtime {
  /** The manifest's name ("base", "cc"), or "custom" for a directory without one. */
  name: string;
  /** "glibc2.36", or "unknown" when a directory has no recognisable glibc. */
  libc: string;
  arch: string;
  /** Host directory holding usr/, etc/, … */
  root: string;
  /** The image file or directory it came from. */
  source: string;
  /** How an image was made available ("directory" for --runtime-root). */
  method: MountMethod | "directory";
}

export interface RuntimeSet {
  runtimes: Runtime[];
  /** The first one given: what an action gets without a `libc` property. */
  default: Runtime;
  /** "" or undefined → the default; else the first runtime whose libc or name equals it; else undefined. */
  pick(libc: string | undefined): Runtime | undefined;
  /** Unmounts what openRuntimes mounted (extractions stay for the next start). */
  close(): Promise<void>;
}

export interface OpenRuntimesOptions {
  images: string[];
  roots: string[];
  /** Where mounts and extractions live: <root>/runtimes. */
  stateDir: string;
  /** Whether this process is privileged (the kernel's squashfs needs it). */
  privileged: boolean;
  log: Logger;
  /** The ways to try for images, in order (default: kernel, squashfuse, extract). */
  methods?: readonly MountMethod[];
  /** sha256 of images this start has already checked, by path, so they are not hashed again. */
  digests?: ReadonlyMap<string, string>;
}

/** Opens images first, then directories, in the order given; the first is the default. */
export async function openRuntimes(opts: OpenRuntimesOptions): Promise<RuntimeSet> {
  if (opts.images.length + opts.roots.length === 0) throw new Error("no runtime given: pass --runtime-image FILE or --runtime-root DIR");
  const runtimes: Runtime[] = [];
  const held: AvailableImage[] = [];
  const close = async () => {
    for (const h of held.splice(0).reverse()) await h.release();
  };
  try {
    for (const image of opts.images) {
      const source = resolve(image);
      const available = await makeImageAvailable(source, {
        stateDir: opts.stateDir,
        methods: opts.methods ?? MOUNT_METHODS,
        privileged: opts.privileged,
        log: opts.log,
        knownSha256: opts.digests?.get(source),
      });
      held.push(available);
      runtimes.push(describe(available.root, source, available.method));
    }
    for (const dir of opts.roots) {
      const root = resolve(dir);
      if (!existsSync(root) || !statSync(root).isDirectory()) throw new Error(`runtime root ${dir} is not a directory`);
      runtimes.push(describe(root, root, "directory"));
    }
  } catch (err) {
    await close();
    throw err;
  }
  for (const r of runtimes) {
    opts.log.info(`runtime ${r.name}: ${r.libc}, ${r.arch}, at ${r.root}${r.root === r.source ? "" : ` (from ${r.source})`}`);
    if (r.arch !== hostArchName()) opts.log.warn(`runtime ${r.name} is for ${r.arch}, this machine is ${hostArchName()}: its programs will not run here`);
  }
  const first = runtimes[0] as Runtime;
  return {
    runtimes,
    default: first,
    pick: (libc) => (libc ? runtimes.find((r) => r.libc === libc || r.name === libc) : first),
    close,
  };
}

/** Name, libc and arch from the root's manifest; without one, "custom" and whatever glibc it holds. */
function describe(root: string, source: string, method: Runtime["method"]): Runtime {
  const manifest = readManifest(root);
  if (manifest) return { name: manifest.name, libc: manifest.libc, arch: manifest.arch, root, source, method };
  const probed = probeLibc(root);
  return { name: "custom", libc: probed?.libc ?? "unknown", arch: probed?.arch ?? hostArchName(), root, source, method };
}
