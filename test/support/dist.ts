// The executables `npm run build` leaves in dist/. Suites that need them skip when they are absent,
// unless ACTIOND_REQUIRE_DIST=1 (CI builds them first), when they fail instead.
import { chmodSync, copyFileSync, existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { REPO } from "./server";

export const DIST = join(REPO, "dist");
const REQUIRED = process.env.ACTIOND_REQUIRE_DIST === "1";

export function distBinary(target: string): string {
  return join(DIST, `actiond-${target}`);
}

/** True when `suite` must skip for want of dist/actiond-<target>; warns with the reason. */
export function skipWithoutDist(suite: string, targets: string[]): boolean {
  const missing = targets.filter((t) => !existsSync(distBinary(t)));
  if (missing.length === 0 || REQUIRED) return false;
  console.warn(`SKIP ${suite}: ${missing.map((t) => `dist/actiond-${t}`).join(", ")} not built (npm run build -- --all; ACTIOND_REQUIRE_DIST=1 makes this a failure)`);
  return true;
}

/** This machine's target name, as the build names it. */
export const HOST_TARGET = `${process.platform}-${process.arch}`;

/** This machine's executable copied alone into an empty folder any user can enter. */
export function aloneCopy(): { dir: string; exe: string } {
  const dir = mkdtempSync(join(tmpdir(), "actiond-alone-"));
  chmodSync(dir, 0o755);
  const exe = join(dir, basename(distBinary(HOST_TARGET)));
  copyFileSync(distBinary(HOST_TARGET), exe);
  chmodSync(exe, 0o755);
  return { dir, exe };
}

/** The environment a user's bare shell would give it: no Bun, no checkout, no tools of ours. */
export const BARE_ENV = { PATH: "/usr/bin:/bin" };
