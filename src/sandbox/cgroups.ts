// cgroup v2 limits (memory, pids, cpu) for every action, where the host delegates a cgroup to us:
// the server's bounds (--action-memory, --action-pids), or less when an action's platform asks for
// less (limits.ts), and a cpu limit when it asks for one. The layout under our own cgroup B:
//   B/actiond-server   the server moves itself here (v2 allows controllers only in cgroups with no processes)
//   B/actiond/<action> one per limited action; the helper joins it before creating namespaces
// Where that cannot be set up, actions still run (with the bounds the helper can set, see limits.ts);
// the log says once why their limits do not apply.
import { accessSync, constants, mkdirSync, readFileSync, rmdirSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { readMounts, type Logger } from "../core";
import { boundedLimits, type ActionBounds } from "./limits";

/** What an action may use at most, from its platform properties. */
export interface ResourceLimits {
  memoryBytes?: number;
  /** CPU cores (fractions allowed), written to cpu.max as cores × period per period. */
  cpuCores?: number;
  pids?: number;
}

const CONTROLLERS = ["memory", "pids", "cpu"];
const CPU_PERIOD_US = 100_000;

/** Why per-action limits cannot be applied here, or undefined when they can (changes nothing). */
export function cgroupLimitsUnavailable(): string | undefined {
  try {
    const base = ownCgroup();
    const missing = CONTROLLERS.filter((c) => !readWords(join(base, "cgroup.controllers")).includes(c));
    if (missing.length > 0) return `the controllers ${missing.join(", ")} are not available in ${base} (a cgroup v1 or hybrid host, or not delegated)`;
    accessSync(base, constants.W_OK);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export class CgroupLimiter {
  private seq = 0;
  private warned = false;
  private warnedAbove = false;

  private constructor(
    /** B/actiond, or undefined when limits cannot be applied. */
    private readonly parent: string | undefined,
    readonly unavailableReason: string | undefined,
    private readonly bounds: ActionBounds,
    private readonly log: Logger,
  ) {}

  /** Works out whether limits can be applied here, and prepares the cgroups if so. */
  static setUp(log: Logger, bounds: ActionBounds): CgroupLimiter {
    try {
      const base = ownCgroup();
      const unavailable = cgroupLimitsUnavailable();
      if (unavailable) throw new Error(unavailable);
      const server = join(base, "actiond-server");
      mkdirSync(server, { recursive: true });
      writeFileSync(join(server, "cgroup.procs"), String(process.pid));
      writeFileSync(join(base, "cgroup.subtree_control"), CONTROLLERS.map((c) => `+${c}`).join(" "));
      const parent = join(base, "actiond");
      mkdirSync(parent, { recursive: true });
      writeFileSync(join(parent, "cgroup.subtree_control"), CONTROLLERS.map((c) => `+${c}`).join(" "));
      log.info(`cgroup v2 limits (memory, pids, cpu) apply to actions, under ${parent}`);
      return new CgroupLimiter(parent, undefined, bounds, log);
    } catch (err) {
      const reason = (err as Error).message;
      log.info(`cgroup v2 limits cannot be applied on this host: ${reason}`);
      return new CgroupLimiter(undefined, reason, bounds, log);
    }
  }

  /**
   * A cgroup holding the action's limits (the server's bounds, or less when its platform asks for
   * less), for the sandbox to join; undefined where cgroups cannot be used.
   */
  create(asked: ResourceLimits): string | undefined {
    if (!this.parent) {
      const askedAny = asked.memoryBytes !== undefined || asked.cpuCores !== undefined || asked.pids !== undefined;
      if (askedAny && !this.warned) this.log.warn(`an action asked for resource limits, which cannot be applied here (${this.unavailableReason}); running it without them (said once)`);
      this.warned ||= askedAny;
      return undefined;
    }
    const { limits, above } = boundedLimits(asked, this.bounds);
    if (above.length > 0 && !this.warnedAbove) {
      this.log.warn(`an action asked for more than this server allows: ${above.join(", ")}; it runs with the server's bound (said once)`);
      this.warnedAbove = true;
    }
    const dir = join(this.parent, `action-${process.pid}-${++this.seq}`);
    mkdirSync(dir);
    try {
      this.writeLimits(dir, limits);
    } catch (err) {
      this.remove(dir);
      throw err;
    }
    return dir;
  }

  private writeLimits(dir: string, limits: ResourceLimits): void {
    if (limits.memoryBytes !== undefined) {
      writeFileSync(join(dir, "memory.max"), String(limits.memoryBytes));
      // No swap: a limit the action can escape by swapping is no limit.
      if (existsSync(join(dir, "memory.swap.max"))) writeFileSync(join(dir, "memory.swap.max"), "0");
    }
    if (limits.pids !== undefined) writeFileSync(join(dir, "pids.max"), String(limits.pids));
    if (limits.cpuCores !== undefined) writeFileSync(join(dir, "cpu.max"), `${Math.max(1000, Math.round(limits.cpuCores * CPU_PERIOD_US))} ${CPU_PERIOD_US}`);
  }

  /** Kills whatever is left in the cgroup and removes it. */
  remove(dir: string): void {
    try {
      if (existsSync(join(dir, "cgroup.kill"))) writeFileSync(join(dir, "cgroup.kill"), "1");
      rmdirSync(dir);
    } catch (err) {
      this.log.warn(`cannot remove cgroup ${dir}: ${(err as Error).message}`);
    }
  }
}

/** This process's cgroup v2 directory: the mount point of cgroup2 plus our path in it. */
function ownCgroup(): string {
  const line = readFileSync("/proc/self/cgroup", "utf8").split("\n").find((l) => l.startsWith("0::"));
  if (!line) throw new Error("this process is in no cgroup v2 hierarchy");
  const mount = readMounts().find((m) => m.fsType === "cgroup2");
  if (!mount) throw new Error("no cgroup2 filesystem is mounted");
  return join(mount.mountPoint, line.slice(3));
}

function readWords(path: string): string[] {
  return readFileSync(path, "utf8").trim().split(/\s+/);
}
