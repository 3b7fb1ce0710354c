// --sandbox=none: no isolation at all, for hosts where no sandbox can be built and actions are trusted.
import { join } from "node:path";
import type { Sandbox, SandboxResult, SandboxRun } from "./sandbox";
import { supervise } from "./supervise";

/** --sandbox=none: the command runs on the host, in the execroot, as the server's user. */
export class HostProcess implements Sandbox {
  readonly kind = "none";
  readonly needsOverlay = false;

  run(r: SandboxRun): Promise<SandboxResult> {
    // setsid makes the command a process group leader, so the whole tree can be killed at once.
    return supervise(["setsid", ...r.argv], r, { helper: false, cwd: join(r.execroot, r.workingDirectory) });
  }
}
