// The guest's decisions about its disks, as pure functions (tested without a VM): what a disk
// holds, whether the CAS disk is mounted, formatted or refused, and the mount table.

export type DiskContent = "blank" | "ext4" | "squashfs" | "other";

/** How many leading bytes identify a disk: ext4's superblock sits at 1024..2047. */
export const HEAD_BYTES = 64 * 1024;
const EXT4_MAGIC_OFFSET = 1024 + 0x38;

/** What the first HEAD_BYTES of a disk say it holds. */
export function identifyDisk(head: Uint8Array): DiskContent {
  if (head.length >= 4 && head[0] === 0x68 && head[1] === 0x73 && head[2] === 0x71 && head[3] === 0x73) return "squashfs"; // "hsqs"
  if (head.length > EXT4_MAGIC_OFFSET + 1 && head[EXT4_MAGIC_OFFSET] === 0x53 && head[EXT4_MAGIC_OFFSET + 1] === 0xef) return "ext4";
  if (head.every((b) => b === 0)) return "blank";
  return "other";
}

export interface Disk {
  /** /dev/vda … */
  device: string;
  readOnly: boolean;
  content: DiskContent;
}

export interface DiskPlan {
  /** The writable disk for /cas, and whether to format it first. */
  cas: { device: string; format: boolean };
  /** The read-only runtime image disk for /runtimes. */
  runtime: string;
}

/**
 * Picks the CAS and runtime disks. The CAS disk is the one writable disk: formatted when blank,
 * mounted when it holds ext4, refused otherwise, because formatting a disk that holds something
 * else would destroy it.
 */
export function planDisks(disks: Disk[]): DiskPlan {
  const runtimes = disks.filter((d) => d.content === "squashfs");
  if (runtimes.length !== 1) throw new Error(`expected one runtime disk (SquashFS), found ${runtimes.length}: ${describe(disks)}`);
  const writable = disks.filter((d) => !d.readOnly && d.content !== "squashfs");
  if (writable.length !== 1) throw new Error(`expected one writable CAS disk, found ${writable.length}: ${describe(disks)}`);
  const cas = writable[0] as Disk;
  if (cas.content === "blank") return { cas: { device: cas.device, format: true }, runtime: (runtimes[0] as Disk).device };
  if (cas.content !== "ext4") {
    throw new Error(`the CAS disk ${cas.device} holds something that is not ext4; refusing to format it (give serve-vm another --cas-image, or delete this one: serve-vm then creates a blank one)`);
  }
  return { cas: { device: cas.device, format: false }, runtime: (runtimes[0] as Disk).device };
}

function describe(disks: Disk[]): string {
  return disks.length === 0 ? "no disks" : disks.map((d) => `${d.device} (${d.content}${d.readOnly ? ", read-only" : ""})`).join(", ");
}

export interface Mount {
  source: string;
  target: string;
  fstype: string;
  flags: number;
  data?: string;
}

// <sys/mount.h>
export const MS_RDONLY = 1;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MS_NOEXEC = 8;

/** What --guest-init mounts (after /init's /proc, /sys and /dev), in order. */
export function guestMounts(plan: DiskPlan): Mount[] {
  return [
    { source: "cgroup2", target: "/sys/fs/cgroup", fstype: "cgroup2", flags: MS_NOSUID | MS_NODEV | MS_NOEXEC },
    { source: "tmpfs", target: "/tmp", fstype: "tmpfs", flags: MS_NOSUID | MS_NODEV, data: "mode=1777" },
    { source: "tmpfs", target: "/run", fstype: "tmpfs", flags: MS_NOSUID | MS_NODEV, data: "mode=0755" },
    { source: plan.cas.device, target: "/cas", fstype: "ext4", flags: MS_NOSUID | MS_NODEV },
    { source: plan.runtime, target: "/runtimes", fstype: "squashfs", flags: MS_RDONLY | MS_NODEV },
  ];
}
