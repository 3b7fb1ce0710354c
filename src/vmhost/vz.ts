// The Virtualization.framework driver (macOS, Apple silicon): shim/vz.c loaded with bun:ffi boots
// the guest and relays Unix sockets to its vsock ports, so the rest of serve-vm sees the same
// "stream to guest port N" as with QEMU; the guest's connections to the host's ports it joins to
// the Unix sockets of cfg.hostPorts.
//
// NOT RUN: written and type-checked on Linux; no session has had a Mac to run it on.
import { dlopen, FFIType } from "bun:ffi";
import { connect } from "node:net";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { controlPort, guestKernelCmdline } from "../core";
import type { GuestConfig, GuestLink, HypervisorDriver, RunningGuest } from "./driver";

const ERR_BYTES = 512;

function load(dylib: string) {
  return dlopen(dylib, {
    actiond_vz_start: {
      args: [FFIType.cstring, FFIType.cstring, FFIType.cstring, FFIType.cstring, FFIType.cstring, FFIType.cstring, FFIType.u64, FFIType.u32, FFIType.ptr, FFIType.u64],
      returns: FFIType.ptr,
    },
    actiond_vz_state: { args: [FFIType.ptr], returns: FFIType.i32 },
    actiond_vz_error: { args: [FFIType.ptr], returns: FFIType.cstring },
    actiond_vz_force_stop: { args: [FFIType.ptr], returns: FFIType.void },
    actiond_vz_relay: { args: [FFIType.ptr, FFIType.u32, FFIType.cstring, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
    actiond_vz_listen: { args: [FFIType.ptr, FFIType.u32, FFIType.cstring, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  });
}

const cstr = (s: string) => Buffer.from(`${s}\0`);
const message = (buf: Buffer) => buf.toString("utf8", 0, Math.max(0, buf.indexOf(0)));

/** `dylib`: the shim this executable carries (libactiond-vz.dylib), if it carries one. */
export function vzDriver(dylib: string | undefined): HypervisorDriver {
  return {
    name: "vz",
    unavailable: () => {
      if (process.platform !== "darwin") return "serve-vm --hypervisor vz needs macOS (Virtualization.framework); on Linux use --hypervisor qemu";
      if (!dylib) return "serve-vm --hypervisor vz: this build carries no Virtualization.framework shim (libactiond-vz.dylib)";
      return undefined;
    },
    boot: (cfg) => bootVzGuest(cfg, dylib!),
  };
}

async function bootVzGuest(cfg: GuestConfig, dylib: string): Promise<RunningGuest> {
  const vz = load(dylib).symbols;
  const err = Buffer.alloc(ERR_BYTES);
  const consoleLog = join(cfg.stateDir, "console.log");
  const cmdline = guestKernelCmdline("hvc0", { off: "poweroff", port: cfg.guestPort, link: "vsock", time: Date.now() / 1000 });
  const vm = vz.actiond_vz_start(
    cstr(cfg.kernel), cstr(cfg.initramfs), cstr(cmdline), cstr(cfg.casImage), cstr(cfg.runtimeImage), cstr(consoleLog),
    BigInt(cfg.memoryMib) * 2n ** 20n, cfg.cpus, err, ERR_BYTES,
  );
  if (!vm) throw new Error(`Virtualization.framework: ${message(err)}`);
  // One Unix socket per guest port; every connection to it is a new vsock stream.
  const sockets = new Map<number, string>();
  for (const port of [cfg.guestPort, controlPort(cfg.guestPort)]) {
    const path = join(cfg.stateDir, `vsock-${port}.sock`);
    if (vz.actiond_vz_relay(vm, port, cstr(path), err, ERR_BYTES) !== 0) throw new Error(`Virtualization.framework relay: ${message(err)}`);
    sockets.set(port, path);
  }
  // The other way: the guest's connections to the host's services.
  for (const h of cfg.hostPorts) {
    if (vz.actiond_vz_listen(vm, h.port, cstr(h.path), err, ERR_BYTES) !== 0) throw new Error(`Virtualization.framework listener: ${message(err)}`);
  }
  const exited = new Promise<number>((resolve) => {
    const timer = setInterval(() => {
      const state = vz.actiond_vz_state(vm);
      if (state >= 2) {
        clearInterval(timer);
        resolve(state === 2 ? 0 : 1);
      }
    }, 250);
  });
  const link: GuestLink = {
    join(client: Duplex, port: number) {
      const path = sockets.get(port);
      if (!path) return void client.destroy();
      const guest = connect({ path, allowHalfOpen: true });
      client.pipe(guest);
      guest.pipe(client);
      guest.on("error", () => client.destroy());
      client.on("error", () => guest.destroy());
      client.on("close", () => guest.destroy());
    },
    request(port: number, text: string) {
      return new Promise((resolve, reject) => {
        const path = sockets.get(port);
        if (!path) return reject(new Error(`no relay for guest port ${port}`));
        const chunks: Buffer[] = [];
        const s = connect({ path, allowHalfOpen: true }, () => s.end(text));
        s.on("data", (d: Buffer) => chunks.push(d));
        s.on("end", () => resolve(Buffer.concat(chunks).toString()));
        s.on("error", reject);
      });
    },
  };
  return {
    link,
    console: consoleLog,
    how: "Virtualization.framework",
    exited,
    kill: () => vz.actiond_vz_force_stop(vm),
    running: () => vz.actiond_vz_state(vm) < 2,
    failure: () => (vz.actiond_vz_state(vm) === 3 ? String(vz.actiond_vz_error(vm)) : undefined),
  };
}
