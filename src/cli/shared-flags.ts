// The flags several commands take, defined once: where to listen, the root folder, the log level,
// the sandbox helper, and what bounds each action (serve applies them, doctor reports them).
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { LOG_LEVELS, formatSize, parseSize, type LogLevel } from "../core";
import { parseUpstreamUrl, type ListenAddress } from "../rpc";
import { DEFAULT_ACTION_PIDS, defaultActionMemory, defaultActionTmpSize } from "../sandbox";
import { list, oneOf, optional, positiveInteger, value, UsageError } from "./flags";

const DEFAULT_LISTEN = "127.0.0.1:8980";

/** $XDG_CACHE_HOME/actiond, else ~/.cache/actiond ($ACTIOND_ROOT, as for every flag, sets another). */
function defaultRoot(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "actiond");
}

export function parseListen(text: string, where: string): ListenAddress {
  if (text.startsWith("unix:") && text.length > "unix:".length) return { path: resolve(text.slice("unix:".length)) };
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new UsageError(`${where} "${text}" is not HOST:PORT or unix:PATH (for example 127.0.0.1:8980)`);
  return { host: m[1] ?? m[2]!, port };
}

export const listenFlag = value("HOST:PORT", "address to listen on (port 0 picks a free one; unix:PATH for a Unix socket)", { default: DEFAULT_LISTEN, parse: parseListen });

export const rootFlag = (what: string) => value("DIR", what, { default: defaultRoot, parse: (text) => resolve(text) });

export const logLevelFlag = value("LEVEL", `how much to log: ${LOG_LEVELS.join(", ")}`, { default: "info", parse: oneOf<LogLevel>(LOG_LEVELS) });

export const sandboxHelperFlag = optional("FILE", "another sandbox helper (a zig build, debugging)", (text) => resolve(text), "the one built or carried");

/** A flag that takes a byte size (500M, 50G). */
export function sizeFlag(help: string, defaultBytes: number | (() => number)) {
  return value("SIZE", help, {
    default: () => formatSize(typeof defaultBytes === "function" ? defaultBytes() : defaultBytes),
    parse: (text, where) => {
      const bytes = parseSize(text);
      if (bytes === undefined || bytes < 1) throw new UsageError(`${where} "${text}" is not a size (for example 500M or 50G)`);
      return bytes;
    },
  });
}

/** What bounds every action, whether its platform asks for limits or not (defaults: sandbox/limits.ts says why). */
export const ACTION_LIMIT_FLAGS = {
  "action-memory": sizeFlag("the most memory one action may use (cgroup v2 memory.max, no swap; not bounded without cgroups); an action's platform may ask for less", defaultActionMemory),
  "action-pids": value("N", "the most processes and threads one action may have (cgroup v2 pids.max; without cgroups RLIMIT_NPROC, which as root counts all running actions together); an action's platform may ask for less", {
    default: String(DEFAULT_ACTION_PIDS),
    parse: positiveInteger,
  }),
  "action-tmp-size": sizeFlag("what each of an action's /tmp and /dev/shm may hold (they are memory: tmpfs size=)", defaultActionTmpSize),
};

/** A team's cache behind this one (serve and serve-vm). */
export const UPSTREAM_FLAGS = {
  upstream: optional(
    "URL",
    "a team's cache to read through and push results to: grpc://HOST:PORT, or grpcs://HOST:PORT with TLS (any REAPI server: bazel-remote, Buildbarn...)",
    (text, where) => {
      try {
        parseUpstreamUrl(text);
      } catch (err) {
        throw new UsageError(`${where} ${(err as Error).message}`);
      }
      return text;
    },
    "none",
  ),
  "upstream-ca": optional("FILE", "PEM root certificates for a grpcs:// upstream, instead of the system's", (text) => resolve(text)),
  "upstream-header": list("NAME=VALUE", "a header sent with every upstream call (a token, say); repeat for more", (text, where) => {
    const at = text.indexOf("=");
    if (at < 1) throw new UsageError(`${where} "${text}" is not NAME=VALUE`);
    return [text.slice(0, at).toLowerCase(), text.slice(at + 1)] as [string, string];
  }),
  "upstream-instance": value("NAME", "the upstream's instance name", { default: "", parse: (text) => text }),
  "upstream-timeout": value("SECS", "how long an upstream call may take (a transfer gets as long again per 16 MiB); past it the call is answered locally", {
    default: "20",
    parse: (text, where) => {
      const s = Number(text);
      if (!(s > 0)) throw new UsageError(`${where} "${text}" is not a number of seconds`);
      return Math.round(s * 1000);
    },
  }),
  "upstream-write": value("WHAT", "what is pushed upstream in the background: results (of actions run here, with their blobs), all (blobs clients upload too), none", {
    default: "results",
    parse: oneOf(["all", "results", "none"] as const),
  }),
  "upstream-queue": value("N", "pushes that may wait for the upstream (kept on disk across restarts); past it newer ones are dropped, and counted", { default: "100000", parse: positiveInteger }),
};
