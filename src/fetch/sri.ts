// Subresource Integrity values, as Bazel sends a download's checksum (the checksum.sri qualifier):
// "sha256-<base64>", optionally several separated by spaces. As the SRI rules have it, only the
// strongest algorithm given counts, and content matches when it has one of that algorithm's values.

export type SriAlgorithm = "sha256" | "sha384" | "sha512";
const STRENGTH: SriAlgorithm[] = ["sha256", "sha384", "sha512"];

export interface Sri {
  algorithm: SriAlgorithm;
  /** The acceptable hashes, hex. */
  hex: string[];
  /** The value as given, for messages and as a key. */
  text: string;
}

/** Parses an SRI value; undefined when it names no algorithm we check (then it is refused upstream). */
export function parseSri(text: string): Sri | undefined {
  const byAlgorithm = new Map<SriAlgorithm, string[]>();
  for (const token of text.trim().split(/\s+/)) {
    const m = /^(sha256|sha384|sha512)-([A-Za-z0-9+/]+={0,2})(\?.*)?$/.exec(token);
    if (!m) continue;
    const hex = Buffer.from(m[2]!, "base64").toString("hex");
    const algorithm = m[1] as SriAlgorithm;
    byAlgorithm.set(algorithm, [...(byAlgorithm.get(algorithm) ?? []), hex]);
  }
  const strongest = [...STRENGTH].reverse().find((a) => byAlgorithm.has(a));
  return strongest ? { algorithm: strongest, hex: byAlgorithm.get(strongest)!, text: text.trim() } : undefined;
}

/** The SRI form of a hex hash. */
export function sriOf(algorithm: SriAlgorithm, hex: string): string {
  return `${algorithm}-${Buffer.from(hex, "hex").toString("base64")}`;
}
