// The QEMU driver (Linux hosts): boots the guest with its two disks, a console log, and a
// virtio-serial port carrying the host's streams (SerialMux), and no network device. KVM when
// /dev/kvm opens and QEMU can use it, software emulation (TCG) otherwise.
import { closeSync, existsSync, openSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { which, type Subprocess } from "bun";
import { archNamed, guestKernelCmdline, hostArchName, MUX_PORT_NAME, type Arch } from "../core";
import type { GuestConfig, HypervisorDriver, RunningGuest } from "./driver";
import { SerialMux } from "./serial-mux";

export type Accel = "auto" | "kvm" | "tcg";

/** QEMU for a guest of this machine's architecture: its executable, Debian package, machine and console. */
export function hostQemu(): Arch["qemu"] {
  return archNamed(hostArchName()).qemu;
}

/** QEMU for a guest of `arch`: another architecture than this machine's only in software emulation. */
export function qemuDriver(accel: Accel, arch: string = hostArchName()): HypervisorDriver {
  const qemu = archNamed(arch).qemu;
  const foreign = arch !== hostArchName();
  return {
    name: "qemu",
    unavailable: () => {
      if (!which(qemu.binary)) return `serve-vm needs QEMU here: ${qemu.binary} is not on PATH (apt-get install ${qemu.debianPackage})`;
      if (foreign && accel === "kvm") return `--accel kvm cannot run an ${arch} guest on this ${hostArchName()} machine (--accel tcg or auto emulates it)`;
      return undefined;
    },
    boot: (cfg) => bootGuest(cfg, foreign ? "tcg" : accel, arch),
  };
}

/** Why /dev/kvm cannot be opened for use (missing, no permission, no module), or undefined when it can. */
export function kvmOpenError(): NodeJS.ErrnoException | undefined {
  try {
    closeSync(openSync("/dev/kvm", "r+"));
    return undefined;
  } catch (err) {
    return err as NodeJS.ErrnoException;
  }
}

function qemuArgs(cfg: GuestConfig, accel: "kvm" | "tcg", arch: string, muxSocket: string, consoleLog: string): string[] {
  const qemu = archNamed(arch).qemu;
  return [
    "-machine", `${qemu.machine},accel=${accel}`,
    "-cpu", accel === "kvm" ? "host" : "max",
    "-m", String(cfg.memoryMib),
    "-smp", String(cfg.cpus),
    "-nodefaults", "-display", "none", "-monitor", "none",
    // A guest that reboots has ended: /init reboots instead of powering off, which needs no ACPI.
    "-no-reboot",
    "-kernel", cfg.kernel,
    "-initrd", cfg.initramfs,
    "-append", guestKernelCmdline(qemu.console, { off: "reboot", port: cfg.guestPort, link: "serial", time: Date.now() / 1000 }),
    "-serial", `file:${consoleLog}`,
    "-drive", `file=${cfg.casImage},if=virtio,format=raw,cache=writeback,discard=unmap`,
    "-drive", `file=${cfg.runtimeImage},if=virtio,format=raw,readonly=on`,
    "-device", "virtio-serial-pci",
    "-chardev", `socket,id=mux,path=${muxSocket},server=on,wait=off`,
    "-device", `virtserialport,chardev=mux,name=${MUX_PORT_NAME}`,
    "-device", "virtio-rng-pci",
  ];
}

/** Starts QEMU and connects to the guest's multiplexed port: with KVM when /dev/kvm opens and QEMU
 * can use it (a nested or partial KVM may refuse the CPU), else in software emulation. */
async function bootGuest(cfg: GuestConfig, accel: Accel, arch: string): Promise<RunningGuest> {
  // The previous boot's console stays beside the new one.
  const consoleLog = join(cfg.stateDir, "console.log");
  if (existsSync(consoleLog)) renameSync(consoleLog, `${consoleLog}.1`);
  if (accel !== "auto") return start(cfg, accel, arch);
  if (kvmOpenError()) return start(cfg, "tcg", arch);
  try {
    return await start(cfg, "kvm", arch);
  } catch (err) {
    const kvmFailure = (err as Error).message.split("\n")[0];
    return { ...(await start(cfg, "tcg", arch)), warning: `QEMU could not use KVM here (${kvmFailure}); the guest runs in software emulation, much slower` };
  }
}

async function start(cfg: GuestConfig, accel: "kvm" | "tcg", arch: string): Promise<RunningGuest> {
  const binary = archNamed(arch).qemu.binary;
  const qemu = which(binary) ?? binary;
  const muxSocket = join(cfg.stateDir, "mux.sock");
  const consoleLog = join(cfg.stateDir, "console.log");
  // Each attempt's console starts empty: the KVM check reads it.
  rmSync(consoleLog, { force: true });
  // QEMU's own messages go to a file: nobody reads a pipe once the guest runs.
  const qemuLog = join(cfg.stateDir, "qemu.log");
  const proc = Bun.spawn([qemu, ...qemuArgs(cfg, accel, arch, muxSocket, consoleLog)], { stdin: "ignore", stdout: "ignore", stderr: Bun.file(qemuLog) });
  const lastError = () => readFileSync(qemuLog, "utf8").trim().split("\n").at(-1) || undefined;
  const exited = proc.exited;
  let port: Socket | undefined;
  for (let i = 0; i < 200 && !port; i++) {
    if (proc.exitCode !== null) break;
    if (existsSync(muxSocket)) port = await connectUnix(muxSocket).catch(() => undefined);
    if (!port) await Bun.sleep(50);
  }
  if (!port) {
    proc.kill("SIGKILL");
    const code = await exited;
    throw new Error(`QEMU (${accel}) did not start: ${lastError() ?? `exit ${code}`}`);
  }
  // A nested or partial KVM can start QEMU and then run nothing: the kernel's first line shows it runs.
  if (accel === "kvm" && !(await printsWithin(consoleLog, KVM_FIRST_LINE_MS, proc))) {
    proc.kill("SIGKILL");
    await exited;
    port.destroy();
    throw new Error(`the guest printed nothing within ${KVM_FIRST_LINE_MS / 1000} s under KVM`);
  }
  const mux = new SerialMux(port);
  return {
    link: { join: (client, p) => mux.join(client, p), request: (p, text) => mux.request(p, text) },
    console: consoleLog,
    how: `QEMU, ${accel === "kvm" ? "KVM" : "software emulation"}${arch === hostArchName() ? "" : `, ${arch}`}`,
    exited,
    kill: () => proc.kill("SIGKILL"),
    running: () => proc.exitCode === null,
    failure: () => (proc.exitCode === null ? undefined : `QEMU exit ${proc.exitCode}${lastError() ? `: ${lastError()}` : ""}`),
  };
}

const KVM_FIRST_LINE_MS = 15_000;

async function printsWithin(consoleLog: string, ms: number, proc: Subprocess): Promise<boolean> {
  for (const deadline = Date.now() + ms; Date.now() < deadline && proc.exitCode === null; await Bun.sleep(100)) {
    if (existsSync(consoleLog) && statSync(consoleLog).size > 0) return true;
  }
  return false;
}

function connectUnix(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}
