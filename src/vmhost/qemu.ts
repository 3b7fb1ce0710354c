// The QEMU driver (Linux hosts): boots the guest with its two disks, a console log, and the host's
// streams over virtio-vsock (vhost-device-vsock, through vhost-user: the shape VZ gives) or a
// virtio-serial port (SerialMux), and no network device. KVM when
// /dev/kvm opens and QEMU can use it, software emulation (TCG) otherwise.
import { closeSync, existsSync, openSync, readFileSync, renameSync, rmSync, statSync, symlinkSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { which, type Subprocess } from "bun";
import { archNamed, guestKernelCmdline, hostArchName, MUX_PORT_NAME, type Arch } from "../core";
import type { GuestConfig, GuestLink, HostPort, HypervisorDriver, RunningGuest } from "./driver";
import { hybridVsockLink } from "./hybrid-vsock";
import { SerialMux } from "./serial-mux";

export type Accel = "auto" | "kvm" | "tcg";

/** QEMU for a guest of this machine's architecture: its executable, Debian package, machine and console. */
export function hostQemu(): Arch["qemu"] {
  return archNamed(hostArchName()).qemu;
}

export type VmTransport = "auto" | "vsock" | "serial";

/** The vhost-user vsock device (rust-vmm's vhost-device-vsock), when it is on PATH. */
export const VHOST_VSOCK = "vhost-device-vsock";

/** How the host's streams reach a QEMU guest when not told: virtio-vsock through vhost-device-vsock where it is installed, else the serial multiplexer. */
export function defaultTransport(): "vsock" | "serial" {
  return which(VHOST_VSOCK) ? "vsock" : "serial";
}

/**
 * QEMU for a guest of `arch` (another architecture than this machine's only in software emulation),
 * its streams over virtio-vsock (vhost-device-vsock, the shape VZ gives) or a multiplexed serial port.
 */
export function qemuDriver(accel: Accel, arch: string = hostArchName(), transport: VmTransport = "auto"): HypervisorDriver {
  const qemu = archNamed(arch).qemu;
  const foreign = arch !== hostArchName();
  const link = transport === "auto" ? defaultTransport() : transport;
  return {
    name: "qemu",
    unavailable: () => {
      if (!which(qemu.binary)) return `serve-vm needs QEMU here: ${qemu.binary} is not on PATH (apt-get install ${qemu.debianPackage})`;
      if (foreign && accel === "kvm") return `--accel kvm cannot run an ${arch} guest on this ${hostArchName()} machine (--accel tcg or auto emulates it)`;
      if (link === "vsock" && !which(VHOST_VSOCK)) return `--vm-transport vsock needs ${VHOST_VSOCK} on PATH (cargo install vhost-device-vsock), or --vm-transport serial`;
      return undefined;
    },
    boot: (cfg) => bootGuest(cfg, { accel: foreign ? "tcg" : accel, arch, link }),
  };
}

interface BootChoice {
  accel: Accel;
  arch: string;
  link: "vsock" | "serial";
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

/** Where QEMU's sockets are: the serial multiplexer's, or vhost-device-vsock's control socket. */
interface LinkSockets {
  mux?: string;
  vhostUser?: string;
}

function qemuArgs(cfg: GuestConfig, accel: "kvm" | "tcg", choice: BootChoice, sockets: LinkSockets, consoleLog: string): string[] {
  const qemu = archNamed(choice.arch).qemu;
  const link =
    choice.link === "vsock"
      ? [
          // vhost-user shares the guest's memory with the device process: a shared memfd backend.
          "-object", `memory-backend-memfd,id=mem,size=${cfg.memoryMib}M,share=on`,
          "-numa", "node,memdev=mem",
          "-chardev", `socket,id=vsock,path=${sockets.vhostUser}`,
          "-device", "vhost-user-vsock-pci,chardev=vsock",
        ]
      : [
          "-device", "virtio-serial-pci",
          "-chardev", `socket,id=mux,path=${sockets.mux},server=on,wait=off`,
          "-device", `virtserialport,chardev=mux,name=${MUX_PORT_NAME}`,
        ];
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
    "-append", guestKernelCmdline(qemu.console, { off: "reboot", port: cfg.guestPort, link: choice.link, time: Date.now() / 1000 }),
    "-serial", `file:${consoleLog}`,
    "-drive", `file=${cfg.casImage},if=virtio,format=raw,cache=writeback,discard=unmap`,
    "-drive", `file=${cfg.runtimeImage},if=virtio,format=raw,readonly=on`,
    ...link,
    "-device", "virtio-rng-pci",
  ];
}

/** Starts QEMU and connects to the guest's multiplexed port: with KVM when /dev/kvm opens and QEMU
 * can use it (a nested or partial KVM may refuse the CPU), else in software emulation. */
async function bootGuest(cfg: GuestConfig, choice: BootChoice): Promise<RunningGuest> {
  // The previous boot's console stays beside the new one.
  const consoleLog = join(cfg.stateDir, "console.log");
  if (existsSync(consoleLog)) renameSync(consoleLog, `${consoleLog}.1`);
  if (choice.accel !== "auto") return start(cfg, choice.accel, choice);
  if (kvmOpenError()) return start(cfg, "tcg", choice);
  try {
    return await start(cfg, "kvm", choice);
  } catch (err) {
    const kvmFailure = (err as Error).message.split("\n")[0];
    return { ...(await start(cfg, "tcg", choice)), warning: `QEMU could not use KVM here (${kvmFailure}); the guest runs in software emulation, much slower` };
  }
}

async function start(cfg: GuestConfig, accel: "kvm" | "tcg", choice: BootChoice): Promise<RunningGuest> {
  const binary = archNamed(choice.arch).qemu.binary;
  const qemu = which(binary) ?? binary;
  const consoleLog = join(cfg.stateDir, "console.log");
  // Each attempt's console starts empty: the KVM check reads it.
  rmSync(consoleLog, { force: true });
  const vsock = choice.link === "vsock" ? await startVhostVsock(cfg.stateDir, cfg.hostPorts) : undefined;
  const sockets: LinkSockets = vsock ? { vhostUser: vsock.vhostUser } : { mux: join(cfg.stateDir, "mux.sock") };
  // QEMU's own messages go to a file: nobody reads a pipe once the guest runs.
  const qemuLog = join(cfg.stateDir, "qemu.log");
  const proc = Bun.spawn([qemu, ...qemuArgs(cfg, accel, choice, sockets, consoleLog)], { stdin: "ignore", stdout: "ignore", stderr: Bun.file(qemuLog) });
  const lastError = () => readFileSync(qemuLog, "utf8").trim().split("\n").at(-1) || undefined;
  const exited = proc.exited.then((code) => {
    vsock?.stop();
    return code;
  });
  const fail = async (why: string): Promise<never> => {
    proc.kill("SIGKILL");
    await exited;
    throw new Error(why);
  };
  let mux: SerialMux | undefined;
  let port: Socket | undefined;
  if (sockets.mux) {
    for (let i = 0; i < 200 && !port; i++) {
      if (proc.exitCode !== null) break;
      if (existsSync(sockets.mux)) port = await connectUnix(sockets.mux).catch(() => undefined);
      if (!port) await Bun.sleep(50);
    }
    if (!port) return fail(`QEMU (${accel}) did not start: ${lastError() ?? `exit ${proc.exitCode}`}`);
    mux = new SerialMux(port, cfg.hostPorts);
  }
  // A nested or partial KVM can start QEMU and then run nothing: the kernel's first line shows it runs.
  if (accel === "kvm" && !(await printsWithin(consoleLog, KVM_FIRST_LINE_MS, proc))) {
    port?.destroy();
    return fail(`the guest printed nothing within ${KVM_FIRST_LINE_MS / 1000} s under KVM`);
  }
  const link: GuestLink = mux ? { join: (client, p) => mux.join(client, p), request: (p, text) => mux.request(p, text) } : hybridVsockLink(vsock!.uds);
  return {
    link,
    console: consoleLog,
    how: `QEMU, ${accel === "kvm" ? "KVM" : "software emulation"}${choice.arch === hostArchName() ? "" : `, ${choice.arch}`}${choice.link === "vsock" ? ", vsock" : ""}`,
    exited,
    kill: () => proc.kill("SIGKILL"),
    running: () => proc.exitCode === null,
    failure: () => (proc.exitCode === null ? undefined : `QEMU exit ${proc.exitCode}${lastError() ? `: ${lastError()}` : ""}`),
  };
}

/**
 * Starts vhost-device-vsock for one boot: QEMU connects to its control socket (vhostUser), and the
 * host reaches the guest's ports through its hybrid socket (uds). A connection the guest makes to
 * host port N, it makes to `<uds>_N`: there, a link to the socket serving N. It goes when the guest has.
 */
async function startVhostVsock(stateDir: string, hostPorts: readonly HostPort[]): Promise<{ vhostUser: string; uds: string; stop(): void }> {
  const vhostUser = join(stateDir, "vhost-vsock.sock");
  const uds = join(stateDir, "vsock.sock");
  for (const p of [vhostUser, uds, ...hostPorts.map((h) => `${uds}_${h.port}`)]) rmSync(p, { force: true });
  for (const h of hostPorts) symlinkSync(h.path, `${uds}_${h.port}`);
  const log = join(stateDir, "vhost-vsock.log");
  const proc = Bun.spawn([which(VHOST_VSOCK) ?? VHOST_VSOCK, "--guest-cid", "3", "--socket", vhostUser, "--uds-path", uds], { stdin: "ignore", stdout: Bun.file(log), stderr: Bun.file(log) });
  for (let i = 0; i < 200 && !existsSync(vhostUser); i++) {
    if (proc.exitCode !== null) break;
    await Bun.sleep(25);
  }
  if (!existsSync(vhostUser)) {
    proc.kill("SIGKILL");
    throw new Error(`${VHOST_VSOCK} did not start: ${readFileSync(log, "utf8").trim().split("\n").at(-1) ?? `exit ${proc.exitCode}`}`);
  }
  return { vhostUser, uds, stop: () => proc.kill("SIGKILL") };
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
