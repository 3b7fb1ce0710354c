// Processor architectures, every spelling of them in one table: Node's (process.arch), ours (image
// and file names, manifests), Debian's, the ELF and loader facts the runtime recipe checks, the
// aliases the ISA platform property may use, and QEMU's executable and console for the guest.

export type ArchName = "x86_64" | "aarch64";

export interface Arch {
  /** Our name, used in file names (cc-x86_64.sqfs, kernel-aarch64) and manifests. */
  name: ArchName;
  /** Node's process.arch. */
  node: "x64" | "arm64";
  /** Debian's name (`apt-get download pkg:<deb>`, `dpkg --add-architecture`). */
  deb: string;
  /** The multiarch triplet: libraries live in usr/lib/<triplet>. */
  triplet: string;
  /** ELF e_machine, to catch a package or helper of the wrong architecture. */
  elfMachine: number;
  /** The dynamic loader every glibc executable names in PT_INTERP. */
  loader: string;
  /** Values of the ISA platform property that mean this architecture. */
  isa: readonly string[];
  /** QEMU for a guest of this architecture: executable, Debian package, machine, serial console. */
  qemu: { binary: string; debianPackage: string; machine: string; console: string };
}

const ARCHES: Record<ArchName, Arch> = {
  x86_64: {
    name: "x86_64",
    node: "x64",
    deb: "amd64",
    triplet: "x86_64-linux-gnu",
    elfMachine: 62,
    loader: "/lib64/ld-linux-x86-64.so.2",
    isa: ["x86-64", "x86_64", "amd64"],
    qemu: { binary: "qemu-system-x86_64", debianPackage: "qemu-system-x86", machine: "q35", console: "ttyS0" },
  },
  aarch64: {
    name: "aarch64",
    node: "arm64",
    deb: "arm64",
    triplet: "aarch64-linux-gnu",
    elfMachine: 183,
    loader: "/lib/ld-linux-aarch64.so.1",
    isa: ["arm-a64", "aarch64", "arm64"],
    qemu: { binary: "qemu-system-aarch64", debianPackage: "qemu-system-arm", machine: "virt", console: "ttyAMA0" },
  },
};

/** The architecture named `name` (ours: x86_64, aarch64); the message lists the known ones. */
export function archNamed(name: string): Arch {
  const arch = ARCHES[name as ArchName];
  if (!arch) throw new Error(`unknown architecture ${name} (known: ${Object.keys(ARCHES).join(", ")})`);
  return arch;
}

/** This process's architecture, or undefined on one actiond has no table row for. */
export function hostArch(): Arch | undefined {
  return Object.values(ARCHES).find((a) => a.node === process.arch);
}

/** Our name for this process's architecture (process.arch itself where we have none). */
export function hostArchName(): string {
  return hostArch()?.name ?? process.arch;
}
