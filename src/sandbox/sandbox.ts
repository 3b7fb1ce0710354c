// Running one command isolated: the seam between execution and the ways to do it. Two kinds:
// the shim/ helper (namespaces, a root built from the runtime and the execroot, uid 65534;
// namespaces.ts) and, with --sandbox=none, straight on the host (host-process.ts).

/** Where the execroot appears inside the sandbox: fixed, so paths baked into outputs repeat. */
export const SANDBOX_EXECROOT = "/execroot";
/** The identity actions run as (nobody/nogroup). */
export const SANDBOX_UID = 65534;

export interface SandboxRun {
  argv: string[];
  env: Record<string, string>;
  /** Host directory with the inputs; it becomes SANDBOX_EXECROOT. */
  execroot: string;
  /**
   * When set, the execroot is the lower layer of an overlay and writes land here: used when the
   * action's uid maps to ours (rootless), so hardlinked CAS files cannot be changed in place.
   */
  overlay?: { upper: string; work: string };
  /**
   * Directories laid out once and shared between actions, each to appear at its path (relative to
   * the execroot, where an empty directory stands for it) under an overlay of the action's own, so
   * the action may write there without changing them. The namespace sandbox only (never given
   * to --sandbox=none, which has no way to mount them).
   */
  sharedDirs?: SharedDir[];
  /** Working directory relative to the execroot ("" for the root). */
  workingDirectory: string;
  /** The runtime's root directory on the host: the action's userland. */
  runtimeRoot: string;
  /** Where the command's stdout goes; the namespace sandbox also writes its helper's arguments beside it. */
  stdoutPath: string;
  stderrPath: string;
  /** A prepared cgroup v2 directory the action runs in, if limits apply. */
  cgroupDir?: string;
  timeoutMs: number;
  signal: AbortSignal;
}

export interface SharedDir {
  /** The prepared directory on the host (never written through the overlay). */
  source: string;
  /** Where it appears, relative to the execroot. */
  path: string;
}

export interface SandboxResult {
  /** The command's exit code, or 128+N when signal N killed it. */
  exitCode: number;
  timedOut: boolean;
  cancelled: boolean;
  /** Set when the sandbox itself could not be set up (a server-side failure, not the action's). */
  setupError?: string;
  /** performance.now() when the command was about to start, and when it ended. */
  startedAt: number;
  readyAt: number;
  endedAt: number;
}

export interface Sandbox {
  readonly kind: "namespaces" | "none";
  /** True when writes must go to an overlay (the action's uid is ours, see SandboxRun.overlay). */
  readonly needsOverlay: boolean;
  run(r: SandboxRun): Promise<SandboxResult>;
}
