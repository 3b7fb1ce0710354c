// assets/: this actiond's own files (helpers, runtime images, the VM guest), carried in a compiled
// executable (the manifest, extraction) or built in a source checkout (one locator by role).
export { builtCheckoutAsset, checkoutAssetPath, type CheckoutAssetOptions } from "./checkout";
export { embeddedPayload, extractAssets, type EmbeddedPayload, type ExtractedAssets } from "./embedded";
export { localAssets, type LocalAssets } from "./local-assets";
export { findManifest, formatManifest, MANIFEST_FILE, MANIFEST_MARKER, parseManifest, type AssetEntry, type AssetRole, type PayloadManifest } from "./manifest";
