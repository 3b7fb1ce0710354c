// Platform properties an action may ask for (Action.platform wins over Command.platform), checked
// and turned into what the runner needs: which runtime, and which cgroup limits.
import type { Platform } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError, hostArch, parseSize } from "../core";
import type { ResourceLimits } from "../sandbox";

export interface PlatformRequest {
  /** The `libc` property: which runtime; undefined for the default. */
  libc?: string;
  limits: ResourceLimits;
}

const MEMORY_NAMES = ["limits.memory.bytes", "memory", "memory-limit", "mem"];
const CPU_NAMES = ["limits.cpu.cores", "cpu", "cpus", "cores"];
const PIDS_NAMES = ["limits.pids.max", "pids", "pids-limit"];
const KNOWN_PROPERTIES = ["libc", "OSFamily", "ISA", ...MEMORY_NAMES, ...CPU_NAMES, ...PIDS_NAMES];

/** Parses the effective platform; any unknown name or bad value is INVALID_ARGUMENT naming it. */
export function parsePlatform(action: Platform | undefined, command: Platform | undefined): PlatformRequest {
  // REAPI 2.2: servers should prefer Action.platform; older clients only fill Command.platform.
  const props = (action?.properties.length ? action : command)?.properties ?? [];
  const req: PlatformRequest = { limits: {} };
  const bad = (name: string, value: string, why: string) =>
    new StatusError(Code.INVALID_ARGUMENT, `platform property ${name}="${value}": ${why}`);
  for (const { name, value } of props) {
    if (name === "libc") {
      req.libc = value === "" ? undefined : value;
    } else if (name === "OSFamily") {
      if (value.toLowerCase() !== "linux") throw bad(name, value, "this worker runs Linux actions only");
    } else if (name === "ISA") {
      // A property that only describes the platform: accepted when it describes us.
      if (!hostArch()?.isa.includes(value)) throw bad(name, value, `this worker is ${process.arch}`);
    } else if (MEMORY_NAMES.includes(name)) {
      const bytes = parseSize(value);
      if (!bytes) throw bad(name, value, "not a size (bytes, or with a K/M/G suffix)");
      req.limits.memoryBytes = bytes;
    } else if (CPU_NAMES.includes(name)) {
      const cores = Number(value);
      if (!(cores > 0) || cores > 4096) throw bad(name, value, "not a number of cores between 0 and 4096");
      req.limits.cpuCores = cores;
    } else if (PIDS_NAMES.includes(name)) {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1 || n > 4_194_304) throw bad(name, value, "not a whole number of processes between 1 and 4194304");
      req.limits.pids = n;
    } else {
      throw new StatusError(
        Code.INVALID_ARGUMENT,
        `unknown platform property "${name}" (this worker understands ${KNOWN_PROPERTIES.join(", ")})`,
      );
    }
  }
  return req;
}
