// Where a source checkout keeps what it builds: the one map of build/, by asset role. shim/build.sh,
// runtimes/build.ts and vm/build-kernel.ts write these paths; a server run from source reads them.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { hostArchName } from "../core";
import type { AssetRole } from "./manifest";

/** The checkout's root (this file is src/assets/checkout.ts). */
const CHECKOUT_ROOT = resolve(import.meta.dir, "../..");
const CHECKOUT_BUILD = join(CHECKOUT_ROOT, "build");

export interface CheckoutAssetOptions {
  /** Our architecture name (x86_64, aarch64); default: this machine's. */
  arch?: string;
  /** The runtime profile (base, cc); runtimes only. */
  profile?: string;
}

/** Where the checkout has (or would have, once built) the asset of this role. */
export function checkoutAssetPath(role: AssetRole, opts: CheckoutAssetOptions = {}): string {
  const arch = opts.arch ?? hostArchName();
  switch (role) {
    case "sandbox-helper":
      return join(CHECKOUT_BUILD, "shim", "actiond-sandbox");
    case "vsock-relay":
      return join(CHECKOUT_BUILD, "shim", "actiond-vsock-relay");
    case "runtime":
      return join(CHECKOUT_BUILD, "runtimes", `${opts.profile ?? "base"}-${arch}.sqfs`);
    case "guest-kernel":
      return join(CHECKOUT_BUILD, "vm", `kernel-${arch}`);
    case "guest-initramfs":
      return join(CHECKOUT_BUILD, "vm", `initramfs-${arch}`);
    case "vz-shim":
      return join(CHECKOUT_BUILD, "dist", "shim", "aarch64-macos", "libactiond-vz.dylib");
  }
}

/** The asset's path when the checkout has built it. */
export function builtCheckoutAsset(role: AssetRole, opts: CheckoutAssetOptions = {}): string | undefined {
  const path = checkoutAssetPath(role, opts);
  return existsSync(path) ? path : undefined;
}
