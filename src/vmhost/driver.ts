// The hypervisor seam: what serve-vm needs of a VMM, and the drivers by name (qemu.ts, vz.ts).
//
// The contract, in call order: serve-vm picks a driver by name and asks unavailable() once (a
// driver that cannot run on this host says why, before anything is started). Then boot() for each
// boot of the guest: it resolves once the hypervisor runs and the link to the guest's ports exists,
// not once the guest answers (the host checks that itself, through the link). boot() is called
// again only after the previous guest's `exited` resolved. kill() may be called at any time and
// more than once; a clean stop is the shutdown request on the guest's control port.
import type { Duplex } from "node:stream";

export interface GuestConfig {
  kernel: string;
  initramfs: string;
  runtimeImage: string;
  casImage: string;
  memoryMib: number;
  cpus: number;
  /** Where the console log and the driver's sockets go. */
  stateDir: string;
  /** The gRPC port in the guest (its control port is the next one). */
  guestPort: number;
  /** The host's services: each connection the guest makes to host port `port` reaches the Unix socket `path` here. */
  hostPorts: HostPort[];
}

export interface HostPort {
  port: number;
  path: string;
}

/** "A stream to guest port N", whatever carries it (the serial multiplexer, or vsock). */
export interface GuestLink {
  /** Joins `client` (a socket created with allowHalfOpen, or any duplex stream) to `port` in the guest. */
  join(client: Duplex, port: number): void;
  /** Sends `text` to `port`, half-closes, and resolves with the guest's whole answer. */
  request(port: number, text: string): Promise<string>;
}

export interface RunningGuest {
  link: GuestLink;
  /** The guest's console log. */
  console: string;
  /** How it runs, for the log: "QEMU, KVM", "Virtualization.framework", … */
  how: string;
  /** Something the user should know about how it runs (QEMU could not use KVM here, say). */
  warning?: string;
  /** Resolves with the hypervisor's exit code once the guest has stopped. */
  exited: Promise<number>;
  /** Stops the guest at once. */
  kill(): void;
  running(): boolean;
  /** Why the guest stopped, when the hypervisor says (QEMU's last error line, or VZ's error). */
  failure(): string | undefined;
}

export interface HypervisorDriver {
  readonly name: string;
  /** Why this driver cannot run on this host (a missing executable, the wrong OS), or undefined when it can. */
  unavailable(): string | undefined;
  boot(cfg: GuestConfig): Promise<RunningGuest>;
}
