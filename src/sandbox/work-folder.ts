// The layout of one action's work folder, the same for real actions and the start-up probe:
//   execroot/       the inputs; SANDBOX_EXECROOT inside
//   upper/, overlay-work/   the overlay's layers, when writes must not reach the execroot (rootless)
//   stdout, stderr  the command's output
import { mkdirSync } from "node:fs";
import { join } from "node:path";

export interface WorkFolder {
  execroot: string;
  overlay?: { upper: string; work: string };
  stdoutPath: string;
  stderrPath: string;
}

/** Creates the folders of a work folder under dir (stdout and stderr come later). */
export function createWorkFolder(dir: string, withOverlay: boolean): WorkFolder {
  const execroot = join(dir, "execroot");
  mkdirSync(execroot, { recursive: true });
  const overlay = withOverlay ? { upper: join(dir, "upper"), work: join(dir, "overlay-work") } : undefined;
  if (overlay) {
    mkdirSync(overlay.upper);
    mkdirSync(overlay.work);
  }
  return { execroot, overlay, stdoutPath: join(dir, "stdout"), stderrPath: join(dir, "stderr") };
}
