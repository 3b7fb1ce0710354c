// The executables `npm run build` makes, and what each must carry.
import type { AssetRole } from "../../src/assets";
import type { ArchName } from "../../src/core";

export interface Target {
  /** Our name: dist/actiond-<name>. */
  name: "linux-x64" | "linux-arm64" | "darwin-arm64";
  /** bun build --compile --target. */
  bun: string;
  /** The Linux the actions run on: this machine's, or (darwin) the guest VM's. */
  linuxArch: ArchName;
  /** zig's target for the Linux helpers (static, musl). */
  zigLinux: string;
  /** Roles the VM work will provide for this target; until it does, the manifest lists them as missing. */
  vmRoles: AssetRole[];
}

const VM_REASON = "built without --vm, so serve-vm has no guest to boot";

export const TARGETS: Record<Target["name"], Target> = {
  "linux-x64": { name: "linux-x64", bun: "bun-linux-x64", linuxArch: "x86_64", zigLinux: "x86_64-linux-musl", vmRoles: ["guest-kernel", "guest-initramfs"] },
  "linux-arm64": { name: "linux-arm64", bun: "bun-linux-arm64", linuxArch: "aarch64", zigLinux: "aarch64-linux-musl", vmRoles: ["guest-kernel", "guest-initramfs"] },
  "darwin-arm64": { name: "darwin-arm64", bun: "bun-darwin-arm64", linuxArch: "aarch64", zigLinux: "aarch64-linux-musl", vmRoles: ["guest-kernel", "guest-initramfs", "vz-shim"] },
};

export const MISSING_VM_REASON = VM_REASON;

/** This machine's target (what `npm run build` makes without --all). */
export function hostTarget(): Target {
  const name = `${process.platform}-${process.arch}`;
  const target = TARGETS[name as Target["name"]];
  if (!target) throw new Error(`actiond has no build for this machine (${name}); targets: ${Object.keys(TARGETS).join(", ")}`);
  return target;
}
