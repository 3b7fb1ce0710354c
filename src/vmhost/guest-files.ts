// The files a guest boots from: the ones the user named, else those this executable carries, else
// a checkout's build/ (npm run build -- --vm); and the guest's CAS disk, created sparse on first use.
import { closeSync, existsSync, ftruncateSync, openSync, statSync } from "node:fs";
import { SetupError, hostArchName, type Logger } from "../core";
import { builtCheckoutAsset, embeddedPayload, extractAssets } from "../assets";

export interface GuestFiles {
  kernel: string;
  initramfs: string;
  runtimeImage: string;
  /** The Virtualization.framework shim, when this executable carries one (macOS). */
  vzShim?: string;
}

export async function guestFiles(given: Partial<Omit<GuestFiles, "vzShim">>, root: string, log: Logger, arch: string = hostArchName()): Promise<GuestFiles> {
  let carried: Partial<GuestFiles>;
  const payload = await embeddedPayload();
  // An executable carries its own architecture's guest; another's is named with the flags.
  if (payload && arch !== hostArchName()) carried = {};
  else if (payload) {
    const assets = await extractAssets(payload, root, log, ["guest-kernel", "guest-initramfs", "runtime", "vz-shim"]);
    const first = (role: Parameters<typeof assets.byRole.get>[0]) => assets.byRole.get(role)?.[0];
    carried = { kernel: first("guest-kernel"), initramfs: first("guest-initramfs"), runtimeImage: first("runtime"), vzShim: first("vz-shim") };
  } else {
    carried = {
      kernel: builtCheckoutAsset("guest-kernel", { arch }),
      initramfs: builtCheckoutAsset("guest-initramfs", { arch }),
      runtimeImage: builtCheckoutAsset("runtime", { profile: "cc", arch }),
      vzShim: builtCheckoutAsset("vz-shim"),
    };
  }
  const files = { kernel: given.kernel ?? carried.kernel, initramfs: given.initramfs ?? carried.initramfs, runtimeImage: given.runtimeImage ?? carried.runtimeImage };
  const missing = Object.entries(files).filter(([, v]) => !v).map(([k]) => k);
  if (missing.length > 0) {
    const how = payload
      ? arch === hostArchName()
        ? "this build does not carry them (built without --vm)"
        : `this executable carries the ${hostArchName()} guest only`
      : `build them with \`npm run build -- ${arch === hostArchName() ? "--vm" : "--all --vm"}\``;
    throw new SetupError(`serve-vm needs a guest ${missing.join(", ")}: ${how}, or pass --kernel, --initramfs, --runtime-image`);
  }
  for (const [what, path] of Object.entries(files)) if (!existsSync(path!)) throw new SetupError(`serve-vm: the ${what} ${path} does not exist`);
  return { ...(files as Omit<GuestFiles, "vzShim">), vzShim: carried.vzShim };
}

/** Creates the CAS disk as a sparse file; the guest formats it on first boot. */
export function ensureCasImage(path: string, sizeMib: number, log: Logger): void {
  if (existsSync(path)) {
    log.info(`CAS disk ${path} (${(statSync(path).size / 2 ** 20).toFixed(0)} MiB)`);
    return;
  }
  const fd = openSync(path, "wx", 0o600);
  try {
    ftruncateSync(fd, sizeMib * 2 ** 20);
  } finally {
    closeSync(fd);
  }
  log.info(`CAS disk ${path} created (${sizeMib} MiB, sparse); the guest formats it on first boot`);
}
