// Platform properties an action may ask for (Action.platform wins over Command.platform), checked
// and turned into what the runner needs: which runtime, and which cgroup limits. A property actiond
// does not know is accepted and ignored (RBE platforms carry many: container-image, Pool,
// dockerNetwork; Bazel 9 adds persistentWorkerProtocol to every worker-capable action), unless the
// server is strict; a property it knows with a value it cannot honour is always refused.
import type { Platform } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError, hostArch, parseSize } from "../core";
import type { Runtime } from "../runtime";
import type { ResourceLimits } from "../sandbox";

export interface PlatformRequest {
  /** The `libc` property: which runtime; undefined for the default. */
  libc?: string;
  limits: ResourceLimits;
  /** Properties accepted without meaning anything here. */
  ignored: { name: string; value: string }[];
}

const MEMORY_NAMES = ["limits.memory.bytes", "memory", "memory-limit", "mem"];
const CPU_NAMES = ["limits.cpu.cores", "cpu", "cpus", "cores"];
const PIDS_NAMES = ["limits.pids.max", "pids", "pids-limit"];
const KNOWN_PROPERTIES = ["libc", "OSFamily", "ISA", ...MEMORY_NAMES, ...CPU_NAMES, ...PIDS_NAMES];

/**
 * Parses the effective platform. A bad value of a known property is INVALID_ARGUMENT naming it, and
 * so is an unknown property when `strict` (--strict-platform); otherwise unknown ones are listed.
 */
export function parsePlatform(action: Platform | undefined, command: Platform | undefined, strict: boolean): PlatformRequest {
  // REAPI 2.2: servers should prefer Action.platform; older clients only fill Command.platform.
  const props = (action?.properties.length ? action : command)?.properties ?? [];
  const req: PlatformRequest = { limits: {}, ignored: [] };
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
    } else if (strict) {
      throw new StatusError(
        Code.INVALID_ARGUMENT,
        `unknown platform property "${name}" (this worker understands ${KNOWN_PROPERTIES.join(", ")}; it refuses others because of --strict-platform)`,
      );
    } else {
      req.ignored.push({ name, value });
    }
  }
  return req;
}

/**
 * What to tell the user about the ignored properties not mentioned before (each is named once per
 * server, in the log and in that action's ExecuteResponse.message); undefined when nothing is new.
 */
export function ignoredPropertiesNotice(ignored: PlatformRequest["ignored"], runtime: Runtime, mentioned: Set<string>): string | undefined {
  const fresh = ignored.filter((p) => !mentioned.has(p.name));
  if (fresh.length === 0) return undefined;
  for (const p of fresh) mentioned.add(p.name);
  const words = fresh.map((p) =>
    p.name === "container-image"
      ? `container-image="${p.value}" is not used: actiond runs actions in its own runtime images, not in container images (this one ran in the ${runtime.name} runtime, ${runtime.libc})`
      : `platform property ${p.name}="${p.value}" means nothing to actiond and is ignored`,
  );
  return `${words.join("; ")} (said once per property; --strict-platform refuses such actions)`;
}

