// `actiond version`: this build and what it carries (read from the embedded manifest; nothing is extracted).
import pkg from "../../package.json" with { type: "json" };
import { embeddedPayload } from "../assets";

export const VERSION_HELP = `Usage: actiond version

Prints the version of actiond, the Bun runtime and the target it was built for, and each asset the
executable carries (name, size, sha256).
`;

export async function versionText(): Promise<string> {
  const payload = await embeddedPayload();
  const target = payload?.manifest.target ?? `${process.platform}-${process.arch}`;
  const lines = [`actiond ${payload?.manifest.version ?? pkg.version} (bun ${Bun.version}, ${target})`];
  if (!payload) {
    lines.push("assets: none embedded (running from a source checkout; `npm run build` makes the executables)");
    return `${lines.join("\n")}\n`;
  }
  const m = payload.manifest;
  lines.push(`commit: ${m.commit}`, "assets:");
  for (const a of m.assets) lines.push(`  ${a.name.padEnd(26)} ${String(a.size).padStart(10)} bytes  sha256 ${a.sha256}  (${a.role})`);
  for (const x of m.missing) lines.push(`not carried: ${x.role} (${x.reason})`);
  return `${lines.join("\n")}\n`;
}
