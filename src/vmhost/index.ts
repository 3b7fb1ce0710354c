// vmhost/: serve-vm's host half. The hypervisor drivers (QEMU, Virtualization.framework) behind one
// interface, chosen by name, and the host's orchestration: listener, proxy, boots, shutdown.
import type { ArchName } from "../core";
import type { HypervisorDriver } from "./driver";
import { qemuDriver, type Accel, type VmTransport } from "./qemu";
import { vzDriver } from "./vz";

export type { GuestConfig, GuestLink, HostPort, HypervisorDriver, RunningGuest } from "./driver";
export { ensureCasImage, guestFiles, type GuestFiles } from "./guest-files";
export { runVmHost, type VmFront, type VmHostOptions, type VmView } from "./host";
export { VHOST_VSOCK, defaultTransport, hostQemu, kvmOpenError, type Accel, type VmTransport } from "./qemu";
export { SerialMux } from "./serial-mux";
export { serveWorkerConfig } from "./worker-config";

export const HYPERVISORS = ["qemu", "vz"] as const;
export type HypervisorName = (typeof HYPERVISORS)[number];

/** The driver named `name`, with what it needs: QEMU's accelerator, guest architecture and transport, VZ's shim. */
export function hypervisorDriver(name: HypervisorName, opts: { accel: Accel; vzShim?: string; arch?: ArchName; transport?: VmTransport }): HypervisorDriver {
  const drivers: Record<HypervisorName, () => HypervisorDriver> = {
    qemu: () => qemuDriver(opts.accel, opts.arch, opts.transport),
    vz: () => vzDriver(opts.vzShim),
  };
  return drivers[name]();
}
