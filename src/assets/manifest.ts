// What a compiled actiond carries: the manifest the build embeds beside its assets. It is one text
// file starting with a marker, so tests (and people) can find it in an executable without running it.

/** What each asset is for; the rest of actiond asks for assets by role. */
export type AssetRole = "sandbox-helper" | "vsock-relay" | "runtime" | "guest-kernel" | "guest-initramfs" | "vz-shim";

export interface AssetEntry {
  /** The extracted file's name: <root>/embedded/<name>-<sha256>. */
  name: string;
  role: AssetRole;
  /** Size and sha256 of the extracted file. */
  size: number;
  sha256: string;
  /** How it is stored in the executable: zstd when that saves space, else as is. */
  encoding: "zstd" | "none";
  /** The embedded file holding it, and that file's size and sha256. */
  file: string;
  storedSize: number;
  storedSha256: string;
  /** The first 16 stored bytes, hex: where a check that reads the executable finds the asset. */
  storedHead: string;
  /** Extracted with the executable bit. */
  executable: boolean;
}

export interface PayloadManifest {
  version: string;
  commit: string;
  /** linux-x64, linux-arm64, darwin-arm64. */
  target: string;
  bun: string;
  assets: AssetEntry[];
  /** Roles this target should carry that the build had nothing for yet, each with the reason. */
  missing: { role: AssetRole; reason: string }[];
}

/** The embedded file's name, and the first bytes of its content (the JSON follows on the same line). */
export const MANIFEST_FILE = "actiond-payload.manifest";
export const MANIFEST_MARKER = "ACTIOND-PAYLOAD-MANIFEST/1 ";

export function formatManifest(m: PayloadManifest): string {
  return `${MANIFEST_MARKER}${JSON.stringify(m)}\n`;
}

export function parseManifest(text: string): PayloadManifest {
  if (!text.startsWith(MANIFEST_MARKER)) throw new Error(`not an actiond payload manifest (it must start with "${MANIFEST_MARKER.trim()}")`);
  const line = text.slice(MANIFEST_MARKER.length).split("\n", 1)[0] as string;
  return JSON.parse(line) as PayloadManifest;
}

/** Finds the manifest inside an executable's bytes (for checks that must not run the executable).
 * The marker also occurs in the bundled code that reads it, so only an occurrence followed by JSON counts. */
export function findManifest(executable: Uint8Array): PayloadManifest | undefined {
  const bytes = Buffer.from(executable.buffer, executable.byteOffset, executable.byteLength);
  for (let at = bytes.indexOf(MANIFEST_MARKER); at >= 0; at = bytes.indexOf(MANIFEST_MARKER, at + 1)) {
    if (bytes[at + MANIFEST_MARKER.length] !== 0x7b /* { */) continue;
    const end = bytes.indexOf(0x0a, at);
    return parseManifest(bytes.subarray(at, end < 0 ? undefined : end + 1).toString("utf8"));
  }
  return undefined;
}
