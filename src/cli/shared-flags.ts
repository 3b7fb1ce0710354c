// The flags several commands take, defined once: where to listen, the root folder, the log level,
// and the sandbox helper.
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { LOG_LEVELS, type LogLevel } from "../core";
import type { ListenAddress } from "../rpc";
import { oneOf, optional, value, UsageError } from "./flags";

const DEFAULT_LISTEN = "127.0.0.1:8980";

/** $XDG_CACHE_HOME/actiond, else ~/.cache/actiond ($ACTIOND_ROOT, as for every flag, sets another). */
function defaultRoot(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "actiond");
}

function parseListen(text: string, where: string): ListenAddress {
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
