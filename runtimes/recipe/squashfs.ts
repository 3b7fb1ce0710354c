// Packing the root into a reproducible SquashFS.
import { run } from "./run";

/** The mksquashfs version line: part of the build's inputs, since it decides the bytes. */
export async function mksquashfsVersion(): Promise<string> {
  return (await run(["mksquashfs", "-version"])).split("\n")[0]?.trim() ?? "";
}

/**
 * Same root, same epoch → same bytes: every timestamp is `epoch`, every owner root, no xattrs;
 * mksquashfs sorts directory entries itself and is reproducible by default since 4.4 (said
 * explicitly). zstd for the kernel (CONFIG_SQUASHFS_ZSTD) and squashfuse alike; level 15 and
 * 128 KiB blocks (the defaults): level 19 took twice as long here for 1% less, and bigger blocks
 * save 20% but make each small read decompress more.
 */
export async function makeSquashfs(root: string, out: string, epoch: number): Promise<void> {
  // mksquashfs refuses SOURCE_DATE_EPOCH together with -all-time/-mkfs-time, so it is left out.
  const env = { ...process.env, SOURCE_DATE_EPOCH: undefined };
  await run(
    ["mksquashfs", root, out, "-noappend", "-quiet", "-no-progress", "-comp", "zstd", "-Xcompression-level", "15",
      "-all-root", "-no-xattrs", "-all-time", String(epoch), "-mkfs-time", String(epoch), "-reproducible"],
    { env },
  );
}
