// Target architectures. A foreign one (--arch) fetches `pkg:<deb>`, which apt resolves only after
// `dpkg --add-architecture <deb> && apt-get update`; nothing in the recipe runs the packages' programs.
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
  return archNamed(hostRuntimeArch());
}

/** The recipe for --arch NAME; a name we have no recipe for says which ones we have. */
export function archNamed(name: string): Arch {
  const arch = ARCHES[name as Arch["name"]];
  if (!arch) throw new Error(`no runtime recipe for --arch ${name} (known: ${Object.keys(ARCHES).join(", ")})`);
  return arch;
}
