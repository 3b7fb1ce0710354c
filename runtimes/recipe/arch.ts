// Target architectures. Only the host's is built today; a foreign one would fetch `pkg:<deb>` after
// `dpkg --add-architecture <deb> && apt-get update`, and everything below is already per-arch.
import { hostRuntimeArch } from "../../src/exec/runtime-manifest";

export interface Arch {
  /** Our name, used in image file names and manifests. */
  name: "x86_64" | "aarch64";
  /** Debian's name for it (`apt-get download pkg:<deb>`). */
  deb: string;
  /** The multiarch triplet: libraries live in usr/lib/<triplet>. */
  triplet: string;
  /** ELF e_machine, to catch a package of the wrong architecture. */
  elfMachine: number;
  /** The dynamic loader every executable names in PT_INTERP. */
  loader: string;
}

export const ARCHES: Record<Arch["name"], Arch> = {
  x86_64: { name: "x86_64", deb: "amd64", triplet: "x86_64-linux-gnu", elfMachine: 62, loader: "/lib64/ld-linux-x86-64.so.2" },
  aarch64: { name: "aarch64", deb: "arm64", triplet: "aarch64-linux-gnu", elfMachine: 183, loader: "/lib/ld-linux-aarch64.so.1" },
};

export function hostArch(): Arch {
  const arch = ARCHES[hostRuntimeArch() as Arch["name"]];
  if (!arch) throw new Error(`no runtime recipe for this machine's architecture (${process.arch})`);
  return arch;
}
