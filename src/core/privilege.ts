// Whether this process is privileged: root with CAP_SYS_ADMIN. It decides the sandbox's shape
// (privileged, or rootless with a user namespace and an overlay), how runtime images can be
// mounted, and who owns stored outputs. A container's root without CAP_SYS_ADMIN (Docker's default)
// cannot create mount namespaces or mount squashfs, so it runs the rootless way, like a plain user.
// Asked once by each command and passed down: nothing reads it from a global.
import { readFileSync } from "node:fs";

const CAP_SYS_ADMIN = 21;

function hasCapSysAdmin(): boolean {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
  return hex !== undefined && ((BigInt(`0x${hex}`) >> BigInt(CAP_SYS_ADMIN)) & 1n) === 1n;
}

export function isPrivileged(): boolean {
  return process.platform === "linux" && process.getuid?.() === 0 && hasCapSysAdmin();
}
