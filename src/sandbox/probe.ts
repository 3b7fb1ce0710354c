// Runs `true` in a real sandbox at start, so a host that cannot build one is found then, with what
// usually stops it and what to do, rather than at every action.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SetupError, mountHolding, removeTree, type Logger } from "../core";
import type { Sandbox } from "./sandbox";
import { createWorkFolder } from "./work-folder";

export interface ProbeOptions {
  /** The runtime's root directory, as for an action. */
  runtimeRoot: string;
  /** Where work folders go (the probe's own is removed again). */
  workRoot: string;
  privileged: boolean;
  log: Logger;
}

export async function probeSandbox(sandbox: Sandbox, opts: ProbeOptions): Promise<void> {
  const dir = mkdtempSync(join(opts.workRoot, "probe-"));
  const folder = createWorkFolder(dir, sandbox.needsOverlay);
  try {
    const r = await sandbox.run({
      ...folder,
      argv: ["true"],
      env: { PATH: "/usr/bin:/bin" },
      workingDirectory: "",
      runtimeRoot: opts.runtimeRoot,
      timeoutMs: 30_000,
      signal: new AbortController().signal,
    });
    if (r.setupError !== undefined || r.exitCode !== 0) {
      const why = r.setupError ?? `exit code ${r.exitCode}: ${await Bun.file(folder.stderrPath).text()}`.trim();
      throw new SetupError(`cannot build the action sandbox here: ${why}. ${sandboxHint(opts)}Or pass --sandbox=none to run actions without isolation.`);
    }
  } finally {
    removeTree(dir, opts.log);
  }
}

/**
 * Whether an action can get a shared input directory (an overlay over it, at a path inside its
 * execroot) here: undefined when it can, else why not. Tried with a real run that reads a file
 * from one and writes beside it; an overlay can be refused where namespaces are not (an --root on
 * an overlay filesystem, some containers).
 */
export async function probeSharedDirs(sandbox: Sandbox, opts: ProbeOptions): Promise<string | undefined> {
  const dir = mkdtempSync(join(opts.workRoot, "probe-"));
  const folder = createWorkFolder(dir, sandbox.needsOverlay);
  try {
    const source = join(dir, "shared");
    mkdirSync(source);
    chmodSync(source, 0o777);
    writeFileSync(join(source, "f"), "shared\n", { mode: 0o444 });
    mkdirSync(join(folder.execroot, "s"));
    const r = await sandbox.run({
      ...folder,
      sharedDirs: [{ source, path: "s" }],
      argv: ["/bin/sh", "-c", "read line < s/f && [ \"$line\" = shared ] && echo x > s/g"],
      env: { PATH: "/usr/bin:/bin" },
      workingDirectory: "",
      runtimeRoot: opts.runtimeRoot,
      timeoutMs: 30_000,
      signal: new AbortController().signal,
    });
    if (r.setupError !== undefined) return r.setupError;
    if (r.exitCode !== 0) return `exit code ${r.exitCode}: ${(await Bun.file(folder.stderrPath).text()).trim()}`;
    if (existsSync(join(source, "g"))) return "a write went through the overlay into the shared directory";
    return undefined;
  } finally {
    removeTree(dir, opts.log);
  }
}

/** What usually stops a sandbox in the rootless way, and what to do about it. */
function sandboxHint(opts: ProbeOptions): string {
  if (opts.privileged) return "";
  const hints: string[] = [];
  if (existsSync("/.dockerenv") || existsSync("/run/.containerenv")) {
    hints.push("In a container the sandbox needs user namespaces and its own /proc: start the container with --security-opt seccomp=unconfined --security-opt systempaths=unconfined (on AppArmor hosts also apparmor=unconfined), or --privileged.");
  } else {
    hints.push("Running without root needs unprivileged user namespaces (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0).");
  }
  if (mountHolding(opts.workRoot)?.fsType === "overlay") {
    hints.push(`Rootless sandboxes lay an overlay over the work folders, which cannot be on an overlay filesystem as ${opts.workRoot} is (a container's own filesystem): put --root on a volume or another filesystem.`);
  }
  return `${hints.join(" ")} `;
}
