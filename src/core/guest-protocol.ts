// What the VM host (vmhost/, serve-vm) and the guest (guest/, --guest-init) agree on: the guest's
// ports, how the host's streams reach it, the shutdown request, and the kernel command line that
// carries the host's choices. Neither side imports the other; both import this.

/** The guest's gRPC port (vsock, or a stream of the serial multiplexer); its control port is the next. */
export const GUEST_GRPC_PORT = 8980;
export const controlPort = (grpcPort: number) => grpcPort + 1;
/**
 * The host's services, as ports the guest connects to (vsock ports of the host, CID 2, or streams the
 * guest opens over the serial multiplexer): downloads for the Remote Asset API; the worker's flags
 * (a WorkerConfig, as one JSON text, then the end); and the relay to a team's cache (--upstream).
 */
export const HOST_DOWNLOADS_PORT = 8990;
export const HOST_CONFIG_PORT = 8991;
export const HOST_UPSTREAM_PORT = 8992;
/** Where the guest's worker reaches the host's relay to the upstream: `--upstream unix:` this. */
export const GUEST_UPSTREAM_SOCKET = "/run/actiond-upstream.sock";

/** What the host asks of the guest's worker beyond its defaults: flags not fit for the kernel command
 * line, which every process in the guest (actions too) can read: an upstream's tokens. */
export interface WorkerConfig {
  args: string[];
}
/** The name serve-vm gives the virtio-serial port that carries the multiplexed streams (QEMU). */
export const MUX_PORT_NAME = "actiond.mux";
/** Sent on the control port: stop the worker, unmount the disks, power off. The guest answers "ok". */
export const SHUTDOWN_COMMAND = "shutdown";

export interface GuestBoot {
  /** The vsock (or multiplexer) port the guest's gRPC relay listens on. */
  port: number;
  /** How the host's streams arrive: vsock, or multiplexed over a virtio-serial port (QEMU without vhost-vsock). */
  link: "vsock" | "serial";
  /** How the guest's /init ends the VM: a reboot (QEMU with -no-reboot exits on it; needs no ACPI) or a power-off. */
  off: "reboot" | "poweroff";
  /** The host's clock at boot (Unix seconds), for a guest with no real-time clock (arm64: QEMU's virt, VZ). */
  time?: number;
}

/** The kernel command line for a guest, with the console device the hypervisor provides. */
export function guestKernelCmdline(console: string, boot: GuestBoot): string {
  const time = boot.time === undefined ? "" : ` actiond.time=${Math.floor(boot.time)}`;
  return `console=${console} init=/init panic=-1 actiond.off=${boot.off} actiond.port=${boot.port} actiond.link=${boot.link}${time}`;
}

/** Reads what guestKernelCmdline wrote (actiond.off is read by shim/guest-init.c, the guest's /init). */
export function parseGuestCmdline(cmdline: string): Omit<GuestBoot, "off"> {
  const words = new Map<string, string>();
  for (const word of cmdline.trim().split(/\s+/)) {
    const eq = word.indexOf("=");
    if (word.startsWith("actiond.") && eq > 0) words.set(word.slice(0, eq), word.slice(eq + 1));
  }
  const port = Number(words.get("actiond.port") ?? GUEST_GRPC_PORT);
  if (!Number.isInteger(port) || port <= 0 || port > 0xffffffff) throw new Error(`actiond.port=${words.get("actiond.port")} is not a port`);
  const link = words.get("actiond.link") ?? "vsock";
  if (link !== "vsock" && link !== "serial") throw new Error(`actiond.link=${link}: expected vsock or serial`);
  const time = words.has("actiond.time") ? Number(words.get("actiond.time")) : undefined;
  if (time !== undefined && !(Number.isInteger(time) && time > 0)) throw new Error(`actiond.time=${words.get("actiond.time")} is not a time (Unix seconds)`);
  return time === undefined ? { port, link } : { port, link, time };
}

/** What serve-vm's host tells of its guest (/api/vm): the status page shows it, even while the guest boots. */
export interface VmState {
  state: "booting" | "ready" | "rebooting" | "stopping";
  /** Since when (ISO time). */
  since: string;
  how: string;
  cpus: number;
  memoryMib: number;
  /** Boots so far, and how many of them after the guest stopped on its own. */
  boots: number;
  restarts: number;
  /** Seconds the latest boot took to answer, once it has. */
  readySeconds?: number;
  /** Connections waiting for it to come up. */
  waiting: number;
  console: string;
  /** The console log's last lines. */
  consoleTail: string[];
}

