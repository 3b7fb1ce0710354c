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
 * Picks the CAS and runtime disks. The CAS disk is the one writable disk: formatted when blank or
 * when the host asks (actiond.format=1), mounted when it holds ext4, refused otherwise, because
 * formatting a disk that holds something else would destroy it.
 */
export function planDisks(disks: Disk[], hostAsksFormat: boolean): DiskPlan {
  const runtimes = disks.filter((d) => d.content === "squashfs");
  if (runtimes.length !== 1) throw new Error(`expected one runtime disk (SquashFS), found ${runtimes.length}: ${describe(disks)}`);
  const writable = disks.filter((d) => !d.readOnly && d.content !== "squashfs");
  if (writable.length !== 1) throw new Error(`expected one writable CAS disk, found ${writable.length}: ${describe(disks)}`);
  const cas = writable[0] as Disk;
  if (hostAsksFormat || cas.content === "blank") return { cas: { device: cas.device, format: true }, runtime: (runtimes[0] as Disk).device };
  if (cas.content !== "ext4") {
    throw new Error(`the CAS disk ${cas.device} holds something that is not ext4; refusing to format it (the host can ask with actiond.format=1, or give a blank image)`);
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

export interface GuestOptions {
  format: boolean;
  /** What to do when the worker exits: start it again, or power the VM off. */
  onWorkerExit: "restart" | "poweroff";
  /** The vsock port the gRPC relay listens on. */
  port: number;
  /** How the host's streams arrive: vsock, or multiplexed over a virtio-serial port (QEMU). */
  link: "vsock" | "serial";
}

/** Reads actiond.format=1, actiond.worker=restart|poweroff, actiond.port=N, actiond.link=vsock|serial
 * from the kernel command line. */
export function parseCmdline(cmdline: string): GuestOptions {
  const words = new Map<string, string>();
  for (const word of cmdline.trim().split(/\s+/)) {
    const eq = word.indexOf("=");
    if (word.startsWith("actiond.") && eq > 0) words.set(word.slice(0, eq), word.slice(eq + 1));
  }
  const port = Number(words.get("actiond.port") ?? 8980);
  if (!Number.isInteger(port) || port <= 0 || port > 0xffffffff) throw new Error(`actiond.port=${words.get("actiond.port")} is not a port`);
  const onExit = words.get("actiond.worker") ?? "restart";
  if (onExit !== "restart" && onExit !== "poweroff") throw new Error(`actiond.worker=${onExit}: expected restart or poweroff`);
  const link = words.get("actiond.link") ?? "vsock";
  if (link !== "vsock" && link !== "serial") throw new Error(`actiond.link=${link}: expected vsock or serial`);
  return { format: words.get("actiond.format") === "1", onWorkerExit: onExit, port, link };
}
