// Making a runtime SquashFS image available as a host directory, by the first way that works here:
// the kernel's squashfs (root), squashfuse (FUSE, any user), or unpacking it once with unsquashfs.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readSync, realpathSync, renameSync, rmdirSync, rmSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { which } from "bun";
import { hashFile, mountAt, processAlive, startProgress, type Logger } from "../core";

export type MountMethod = "kernel" | "squashfuse" | "extract";
export const MOUNT_METHODS: readonly MountMethod[] = ["kernel", "squashfuse", "extract"];

export interface AvailableImage {
  /** The image's root directory on the host. */
  root: string;
  method: MountMethod;
  /** Undoes the mount (an extraction is kept for the next start). */
  release(): Promise<void>;
}

/** Fails with a plain message unless `path` is an existing SquashFS file (magic "hsqs"). */
function checkSquashfsImage(path: string): void {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new Error(`runtime image ${path} does not exist (build one with \`bun runtimes/build.ts\`)`);
  }
  if (!st.isFile()) throw new Error(`runtime image ${path} is not a file`);
  const magic = Buffer.alloc(4);
  const fd = openSync(path, "r");
  try {
    readSync(fd, magic, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  if (magic.toString("latin1") !== "hsqs") throw new Error(`runtime image ${path} is not a SquashFS image`);
}

/** Looks `cmd` up on the current PATH (Bun's which() alone keeps the PATH the process started with). */
function onPath(cmd: string): boolean {
  return which(cmd, { PATH: process.env.PATH ?? "" }) !== null;
}

export interface ImageOptions {
  /** Where mounts and extractions live: <root>/runtimes. */
  stateDir: string;
  /** The ways to try, in order. */
  methods: readonly MountMethod[];
  /** Whether this process is privileged: the kernel's squashfs needs it. */
  privileged: boolean;
  log: Logger;
  /** The image's sha256 when this start has already checked it (a compiled actiond's own). */
  knownSha256?: string;
}

/**
 * Tries each method in order and returns the first that works; throws one message listing why
 * each failed and what to install. Mount points and extractions are named by the image's content
 * hash under `stateDir`, so a mount or extraction left by an earlier run of the same image is reused.
 */
export async function makeImageAvailable(image: string, opts: ImageOptions): Promise<AvailableImage> {
  checkSquashfsImage(image);
  const sha = opts.knownSha256 ?? (await hashFile("sha256", image));
  const reasons: string[] = [];
  const log = opts.log;
  for (const method of opts.methods) {
    const attempt = method === "kernel" ? kernelMount : method === "squashfuse" ? fuseMount : extract;
    const got = await attempt(image, sha, opts);
    if (typeof got !== "string") return got;
    reasons.push(`${method}: ${got}`);
    log.debug(`runtime image ${image}: ${method} not used: ${got}`);
  }
  throw new Error(
    `cannot make the runtime image ${image} available as a directory:\n  ${reasons.join("\n  ")}\n` +
      "Run as root, or install squashfuse (apt-get install squashfuse) or squashfs-tools, or unpack the image " +
      "yourself (unsquashfs -d DIR IMAGE) and pass --runtime-root DIR.",
  );
}

/** Each attempt returns the image, or a one-line reason why this method cannot be used here. */
type Attempt = (image: string, sha: string, opts: ImageOptions) => Promise<AvailableImage | string>;

const kernelMount: Attempt = async (image, sha, { stateDir, privileged, log }) => {
  if (!privileged) return "needs root";
  const mnt = mountPoint(stateDir, sha);
  const existing = mountAt(mnt);
  if (existing?.fsType === "squashfs") {
    log.info(`runtime image ${image}: reusing the kernel squashfs mount at ${mnt}`);
  } else if (existing) {
    return `${mnt} already has a ${existing.fsType} mount`;
  } else {
    const failed = await tryRun(["mount", "-t", "squashfs", "-o", "ro,loop,nodev,nosuid", image, mnt]);
    if (failed) {
      removeEmptyDir(mnt);
      return failed;
    }
    log.info(`runtime image ${image}: mounted with the kernel's squashfs at ${mnt}`);
  }
  return { root: mnt, method: "kernel", release: () => unmount(mnt, [["umount", mnt], ["umount", "-l", mnt]], log) };
};

const fuseMount: Attempt = async (image, sha, { stateDir, privileged, log }) => {
  if (!onPath("squashfuse")) return "squashfuse is not installed (apt-get install squashfuse)";
  const mnt = mountPoint(stateDir, sha);
  const release = () => unmount(mnt, [["fusermount3", "-u", mnt], ["fusermount", "-u", mnt], ["umount", mnt], ["fusermount3", "-uz", mnt], ["fusermount", "-uz", mnt]], log);
  const existing = mountAt(mnt);
  if (existing?.fsType.startsWith("fuse") && readable(mnt)) {
    log.info(`runtime image ${image}: reusing the squashfuse mount at ${mnt}`);
    return { root: mnt, method: "squashfuse", release };
  }
  if (existing?.fsType.startsWith("fuse")) await release(); // its daemon died: "Transport endpoint is not connected"
  else if (existing) return `${mnt} already has a ${existing.fsType} mount`;
  // Root's sandboxed actions run as nobody, who may enter a FUSE mount only with allow_other.
  const allowOther = privileged ? ["-o", "allow_other"] : [];
  const failed = await tryRun(["squashfuse", ...allowOther, image, mnt]);
  if (failed) {
    removeEmptyDir(mnt);
    return failed;
  }
  log.info(`runtime image ${image}: mounted with squashfuse at ${mnt}`);
  return { root: mnt, method: "squashfuse", release };
};

const extract: Attempt = async (image, sha, { stateDir, log }) => {
  if (!onPath("unsquashfs")) return "unsquashfs is not installed (apt-get install squashfs-tools)";
  const base = join(stateDir, "extracted");
  const dir = join(base, sha);
  const kept = { root: dir, method: "extract" as const, release: async () => {} };
  // A finished extraction only ever appears by rename, so its presence means it is complete.
  if (existsSync(dir)) {
    log.info(`runtime image ${image}: reusing the extraction at ${dir}`);
    return kept;
  }
  mkdirSync(base, { recursive: true });
  removeDeadTemps(base);
  const tmp = join(base, `.tmp-${sha.slice(0, 16)}-${process.pid}-${crypto.randomUUID().slice(0, 8)}`);
  // unsquashfs draws its own bar on stdout ("[===|] 120/477  25%"): its percentage feeds ours.
  const progress = startProgress(`unpacking the runtime image ${basename(image)}`, 100, log, { unit: "percent" });
  const failed = await tryRun(["unsquashfs", "-no-xattrs", "-d", tmp, image], (out) => {
    const pct = [...out.matchAll(/(\d+)%/g)].at(-1)?.[1];
    if (pct !== undefined) progress.update(Number(pct));
  }).finally(() => progress.end());
  if (failed) {
    rmSync(tmp, { recursive: true, force: true });
    return failed;
  }
  try {
    renameSync(tmp, dir);
    log.info(`runtime image ${image}: unpacked with unsquashfs to ${dir}`);
  } catch (err) {
    // Another process starting at the same moment got there first: use its copy.
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(dir)) throw err;
    log.info(`runtime image ${image}: reusing the extraction at ${dir}`);
  }
  return kept;
};

/** Temp extractions of processes that are gone (killed mid-extraction). */
function removeDeadTemps(base: string): void {
  for (const name of readdirSync(base)) {
    const pid = Number(/^\.tmp-[0-9a-f]+-(\d+)-/.exec(name)?.[1]);
    if (pid && !processAlive(pid)) rmSync(join(base, name), { recursive: true, force: true });
  }
}

function mountPoint(stateDir: string, sha: string): string {
  const mnt = join(stateDir, "mnt", sha.slice(0, 16));
  mkdirSync(mnt, { recursive: true });
  return realpathSync(mnt); // as /proc/self/mountinfo spells it
}

function readable(dir: string): boolean {
  try {
    readdirSync(dir);
    return true;
  } catch {
    return false;
  }
}

/** Undefined when the command succeeded, else its first line of complaint; onStdout sees its output as it comes. */
async function tryRun(cmd: string[], onStdout?: (text: string) => void): Promise<string | undefined> {
  let proc;
  try {
    proc = Bun.spawn(cmd, { stdin: "ignore", stdout: onStdout ? "pipe" : "ignore", stderr: "pipe" });
  } catch (err) {
    return `${cmd[0]}: ${(err as Error).message}`;
  }
  const reading = (async () => {
    if (!onStdout || !(proc.stdout instanceof ReadableStream)) return;
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) onStdout(decoder.decode(chunk, { stream: true }));
  })();
  const [err, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited, reading]);
  if (code === 0) return undefined;
  return `${cmd[0]} exited ${code}: ${err.trim().split("\n")[0] ?? ""}`;
}

/** Tries each unmount command until the mount is gone, then removes the empty mount point. */
async function unmount(mnt: string, commands: string[][], log: Logger): Promise<void> {
  for (const cmd of commands) {
    if (!mountAt(mnt)) break;
    if (!onPath(cmd[0] as string)) continue;
    const failed = await tryRun(cmd);
    if (failed) log.debug(`runtime: ${cmd.join(" ")}: ${failed}`);
  }
  if (mountAt(mnt)) {
    log.warn(`runtime: could not unmount ${mnt}; it stays mounted`);
    return;
  }
  removeEmptyDir(mnt);
  log.debug(`runtime: unmounted ${mnt}`);
}

/** Removes a mount point we no longer use, if it is still an empty directory. */
function removeEmptyDir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // not empty, or already gone: leave it
  }
}
