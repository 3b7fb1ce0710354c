// Where this actiond's native helpers and runtime images are: extracted from the executable when it
// is a compiled one, or the checkout's build/ folder when it runs from source.
import { join } from "node:path";
import type { Logger } from "../core";
import { builtCheckoutAsset } from "./checkout";
import { embeddedPayload, extractAssets } from "./embedded";
import type { PayloadManifest } from "./manifest";

export interface LocalAssets {
  origin: "embedded" | "checkout";
  /** The sandbox helper, if built or carried. */
  helper?: string;
  relay?: string;
  /** Runtime images actions get when the user names none. */
  runtimeImages: string[];
  /** sha256 of the carried files, checked at extraction (so nobody hashes them again this start). */
  digests?: ReadonlyMap<string, string>;
  /** A compiled executable's manifest (what it carries, and what it lacks). */
  manifest?: PayloadManifest;
}

export async function localAssets(root: string, log: Logger): Promise<LocalAssets> {
  const payload = await embeddedPayload();
  if (!payload) {
    const image = builtCheckoutAsset("runtime", { profile: "base" });
    return { origin: "checkout", helper: builtCheckoutAsset("sandbox-helper"), relay: builtCheckoutAsset("vsock-relay"), runtimeImages: image ? [image] : [] };
  }
  // serve needs these; the VM guest's files are serve-vm's to extract.
  const assets = await extractAssets(payload, root, log, ["sandbox-helper", "vsock-relay", "runtime"]);
  log.info(`embedded assets ready in ${assets.ms.toFixed(1)} ms (${assets.extracted} extracted, ${assets.reused} already there) under ${join(root, "embedded")}`);
  return {
    origin: "embedded",
    helper: assets.byRole.get("sandbox-helper")?.[0],
    relay: assets.byRole.get("vsock-relay")?.[0],
    runtimeImages: assets.byRole.get("runtime") ?? [],
    digests: assets.digests,
    manifest: payload.manifest,
  };
}
