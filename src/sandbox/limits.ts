// The bounds every action runs under, whether it asks for limits or not (serve's --action-memory,
// --action-pids, --action-tmp-size): where cgroup v2 is delegated, memory and processes are cgroup
// limits (cgroups.ts), and an action's platform may ask for less, never for more; where it is not,
// the helper bounds processes with RLIMIT_NPROC and nothing bounds memory. /tmp and /dev/shm are
// sized tmpfs either way. describeActionLimits says which of these hold here, for the log and doctor.
import { totalmem } from "node:os";
import { formatSize, type Logger } from "../core";
import type { ResourceLimits } from "./cgroups";

export interface ActionBounds {
  /** The most memory one action may use: its cgroup's memory.max (cgroups only). */
  memoryBytes: number;
  /** The most processes and threads one action may have: pids.max, else RLIMIT_NPROC. */
  pids: number;
  /** What each of an action's /tmp and /dev/shm may hold (tmpfs size=); they are RAM. */
  tmpBytes: number;
}

const MiB = 2 ** 20;
const roundToMiB = (bytes: number) => Math.max(MiB, Math.floor(bytes / MiB) * MiB);

/**
 * Half the RAM. A fixed size would be no bound on a small machine and too small for a large link
 * on a big one; half leaves the server (and an action beside it) room when one action runs away,
 * and the kernel kills that action, not the server.
 */
export function defaultActionMemory(total = totalmem()): number {
  return roundToMiB(total / 2);
}

/**
 * 4096 processes and threads: far more than a compile or a test needs (a JVM has a few dozen
 * threads), and a fork bomb stops at an eighth of Linux's default pid_max (32768).
 */
export const DEFAULT_ACTION_PIDS = 4096;

/**
 * An eighth of the RAM for each of /tmp and /dev/shm (they live in memory): the kernel's default is
 * half the RAM for each, so two of them could take it all. Outputs and big scratch files belong in
 * the execroot, which is on disk.
 */
export function defaultActionTmpSize(total = totalmem()): number {
  return roundToMiB(total / 8);
}

export function defaultActionBounds(): ActionBounds {
  return { memoryBytes: defaultActionMemory(), pids: DEFAULT_ACTION_PIDS, tmpBytes: defaultActionTmpSize() };
}

/**
 * The cgroup limits of one action: what its platform asked for, at most the server's bounds, which
 * apply when it asks for nothing. `above` names what it asked beyond a bound (and did not get).
 */
export function boundedLimits(asked: ResourceLimits, bounds: ActionBounds): { limits: ResourceLimits; above: string[] } {
  const above: string[] = [];
  if (asked.memoryBytes !== undefined && asked.memoryBytes > bounds.memoryBytes) above.push(`memory ${formatSize(asked.memoryBytes)} (--action-memory is ${formatSize(bounds.memoryBytes)})`);
  if (asked.pids !== undefined && asked.pids > bounds.pids) above.push(`${asked.pids} pids (--action-pids is ${bounds.pids})`);
  return {
    limits: {
      memoryBytes: Math.min(asked.memoryBytes ?? bounds.memoryBytes, bounds.memoryBytes),
      pids: Math.min(asked.pids ?? bounds.pids, bounds.pids),
      cpuCores: asked.cpuCores,
    },
    above,
  };
}

export interface LimitsReport {
  /** Each bound that holds here, in words. */
  applies: string[];
  /** What cannot be bounded here, and why. */
  unbounded: string[];
}

/**
 * Which bounds hold for actions in the namespace sandbox here. `cgroupsUnavailable`: why cgroup v2
 * limits cannot be applied (undefined when they can); `privileged`: root mode, where every action
 * runs as uid 65534 of the host (which RLIMIT_NPROC counts as one).
 */
export function describeActionLimits(bounds: ActionBounds, opts: { cgroupsUnavailable?: string; privileged: boolean }): LimitsReport {
  const tmp = `/tmp and /dev/shm: at most ${formatSize(bounds.tmpBytes)} each (tmpfs size=, --action-tmp-size)`;
  if (opts.cgroupsUnavailable === undefined) {
    return {
      applies: [
        `memory: at most ${formatSize(bounds.memoryBytes)} per action, no swap (cgroup memory.max, --action-memory; its platform may ask for less, not more)`,
        `processes and threads: at most ${bounds.pids} per action (cgroup pids.max, --action-pids; its platform may ask for less, not more)`,
        tmp,
      ],
      unbounded: [],
    };
  }
  const shared = opts.privileged
    ? "counted for all running actions together: they all run as uid 65534, and the kernel counts that uid's processes on the whole host"
    : "counted per action: each has a user namespace of its own";
  return {
    applies: [`processes and threads: at most ${bounds.pids} (RLIMIT_NPROC, --action-pids), ${shared}`, tmp],
    unbounded: [
      `memory: without the cgroup v2 memory controller nothing bounds an action's memory (RLIMIT_AS is not used: it counts reserved address space, which JVMs, Go programs and sanitizers reserve far beyond what they use, so it breaks them)`,
      "cpu: shared by all actions (--jobs bounds how many run at once)",
      "the memory, cpu and pids limits an action's platform asks for: they need cgroup v2, and are not applied",
    ],
  };
}

/** The server's log at start: what bounds actions, and what cannot be bounded here (doctor marks that as a warning). */
export function logActionLimits(log: Logger, report: LimitsReport): void {
  log.info(`actions are bounded: ${report.applies.join("; ")}`);
  if (report.unbounded.length > 0) log.info(`not bounded here: ${report.unbounded.join("; ")}`);
}
