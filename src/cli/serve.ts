// `actiond serve`: the REAPI cache server on this machine.
import { availableParallelism, homedir, hostname } from "node:os";
import { join, resolve } from "node:path";
import { mkdir } from "node:fs/promises";
import { ActionCache } from "../cas/action-cache";
import { DiskCas } from "../cas/disk-cas";
import { createLogger, LOG_LEVELS, type LogLevel } from "../log";
import { DEFAULT_MAX_BATCH_BYTES, type ServerContext } from "../rpc/context";
import { CallTracker } from "../rpc/grpc-service";
import { listenText, startServer, type ListenAddress } from "../rpc/server";
import { Stats } from "../rpc/stats";
import { localAssets } from "../payload/local-assets";
import { WorkerSetupError, startWorker, type Worker, type WorkerOptions } from "../exec/worker";
import { MAX_TIMEOUT_MS } from "../exec/runner";
import { formatSize, parseSize } from "./sizes";
import { FatalError, UsageError, parseFlags } from "./usage";

export const DEFAULT_LISTEN = "127.0.0.1:8980";
export const DEFAULT_MAX_CAS_SIZE = 20 * 2 ** 30;
export const DEFAULT_TIMEOUT_S = 3600;
const SHUTDOWN_GRACE_MS = 10_000;
const STATS_INTERVAL_MS = 60_000;

/** $ACTIOND_ROOT (set by the devcontainer feature, for a volume), else $XDG_CACHE_HOME/actiond, else ~/.cache/actiond. */
export function defaultRoot(): string {
  if (process.env.ACTIOND_ROOT) return process.env.ACTIOND_ROOT;
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(cache, "actiond");
}

export const SERVE_HELP = `Usage: actiond serve [flags]

Serve the Remote Execution API for Bazel: the CAS and action cache on disk, and actions run in a
hermetic Linux sandbox (namespaces, uid 65534, loopback-only network, a Debian runtime userland):
  bazel build --remote_executor=grpc://127.0.0.1:8980 //...

Flags:
  --listen HOST:PORT     address to listen on (default ${DEFAULT_LISTEN}; port 0 picks a free one);
                         unix:PATH listens on a Unix socket
  --root DIR             where the CAS, action cache and work folders live (default ${defaultRoot()};
                         $ACTIOND_ROOT sets another)
  --max-cas-size SIZE    disk budget for blobs and action results; the least recently used
                         are evicted beyond it, e.g. 500M, 50G
                         (default ${formatSize(DEFAULT_MAX_CAS_SIZE)})
  --jobs N               actions run at once; more wait in line (default: CPUs, ${availableParallelism()})
  --default-timeout SECS for actions that set no timeout (default ${DEFAULT_TIMEOUT_S})
  --sandbox KIND         namespaces (default), or none to run actions directly on this machine
                         as this user, without isolation
  --runtime-image FILE   a runtime SquashFS for actions' userland (repeatable; the first is the
                         default, the platform property libc picks another)
  --runtime-root DIR     a runtime already unpacked in a directory (repeatable)
  --keep-failed          keep the work folder of failed actions under ROOT/exec, for debugging
  --log-level LEVEL      ${LOG_LEVELS.join(", ")} (default info)
  -h, --help             show this help

Stops on SIGINT or SIGTERM: no new calls, calls in flight (running actions too) get
${SHUTDOWN_GRACE_MS / 1000}s to finish, the rest are cancelled, then exit 0.
`;

/** The server's own flags, plus the execution flags the worker takes as they are. */
export function parseListen(text: string): ListenAddress {
  if (text.startsWith("unix:") && text.length > "unix:".length) return { path: resolve(text.slice("unix:".length)) };
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new UsageError(`serve: --listen "${text}" is not HOST:PORT or unix:PATH (for example 127.0.0.1:8980)`);
  return { host: m[1] ?? m[2]!, port };
}

export interface ServeOptions extends WorkerOptions {
  listen: ListenAddress;
  maxCasBytes: number;
  logLevel: LogLevel;
}

export function parseServeFlags(argv: string[]): ServeOptions | "help" {
  const { values } = parseFlags("serve", argv, {
    listen: { type: "string" },
    root: { type: "string" },
    "max-cas-size": { type: "string" },
    "log-level": { type: "string" },
    jobs: { type: "string" },
    "default-timeout": { type: "string" },
    sandbox: { type: "string" },
    "keep-failed": { type: "boolean" },
    "runtime-image": { type: "string", multiple: true },
    "runtime-root": { type: "string", multiple: true },
  });
  if (values.help) return "help";
  const listen = parseListen(values.listen ?? DEFAULT_LISTEN);
  const maxCasBytes = parseSize(values["max-cas-size"] ?? String(DEFAULT_MAX_CAS_SIZE));
  if (maxCasBytes === undefined || maxCasBytes < 1) {
    throw new UsageError(`serve: --max-cas-size "${values["max-cas-size"]}" is not a size (for example 500M or 50G)`);
  }
  const logLevel = (values["log-level"] ?? "info") as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new UsageError(`serve: --log-level "${logLevel}" is not one of ${LOG_LEVELS.join(", ")}`);
  const jobs = Number(values.jobs ?? availableParallelism());
  if (!Number.isInteger(jobs) || jobs < 1) throw new UsageError(`serve: --jobs "${values.jobs}" is not a positive whole number`);
  const timeoutS = Number(values["default-timeout"] ?? DEFAULT_TIMEOUT_S);
  if (!(timeoutS > 0) || timeoutS * 1000 > MAX_TIMEOUT_MS) {
    throw new UsageError(`serve: --default-timeout "${values["default-timeout"]}" is not a number of seconds between 0 and ${MAX_TIMEOUT_MS / 1000}`);
  }
  const sandbox = values.sandbox ?? "namespaces";
  if (sandbox !== "namespaces" && sandbox !== "none") throw new UsageError(`serve: --sandbox "${sandbox}" is not one of namespaces, none`);
  return {
    listen,
    root: resolve(values.root ?? defaultRoot()),
    maxCasBytes,
    logLevel,
    jobs,
    defaultTimeoutMs: Math.round(timeoutS * 1000),
    sandbox,
    keepFailed: values["keep-failed"] ?? false,
    runtimeImages: (values["runtime-image"] ?? []).map((p) => resolve(p)),
    runtimeRoots: (values["runtime-root"] ?? []).map((p) => resolve(p)),
  };
}

export async function serve(opts: ServeOptions): Promise<void> {
  const log = createLogger(opts.logLevel);
  // Listen for signals first, so one that arrives while we start up still stops us cleanly.
  const stopSignal = new Promise<string>((resolveStop) => {
    process.once("SIGINT", () => resolveStop("SIGINT"));
    process.once("SIGTERM", () => resolveStop("SIGTERM"));
  });
  try {
    await mkdir(opts.root, { recursive: true });
  } catch (err) {
    throw new FatalError(`cannot use --root ${opts.root}: ${(err as Error).message}`);
  }
  let cas: DiskCas;
  try {
    cas = await DiskCas.open({ root: opts.root, maxBytes: opts.maxCasBytes, log });
  } catch (err) {
    throw new FatalError(`cannot open the store in --root ${opts.root}: ${(err as Error).message}`);
  }
  const ac = new ActionCache(cas, log);
  let worker: Worker;
  try {
    const assets = await localAssets(opts.root, log);
    worker = await startWorker(opts, assets, cas, ac, log);
  } catch (err) {
    if (err instanceof WorkerSetupError) throw new FatalError(err.message);
    throw err;
  }
  const ctx: ServerContext = {
    cas,
    ac,
    log,
    calls: new CallTracker(),
    stats: new Stats(),
    maxBatchBytes: DEFAULT_MAX_BATCH_BYTES,
  };
  let server;
  try {
    server = await startServer(ctx, opts.listen, worker);
  } catch (err) {
    const msg = String((err as Error).message);
    const where = listenText(opts.listen);
    if (msg.includes("EADDRINUSE")) throw new FatalError(`cannot listen on ${where}: the address is already in use`);
    throw new FatalError(`cannot listen on ${where}: ${msg}`);
  }
  const bound = "path" in opts.listen ? opts.listen : { ...opts.listen, port: server.port };
  if ("host" in bound) log.info(`use it with: bazel build --remote_executor=grpc://${bound.host.includes(":") ? `[${bound.host}]` : bound.host}:${bound.port} ...`);
  // Tests and scripts wait for this line, the last of start-up, to learn the port (useful with --listen HOST:0).
  log.info(`actiond serving REAPI on ${listenText(bound)} (root ${opts.root}, worker ${hostname()})`);
  const stopReports = ctx.stats.every(log, STATS_INTERVAL_MS);
  const timingReports = setInterval(() => worker.timings.reportIfNew(log), STATS_INTERVAL_MS);
  timingReports.unref();

  const signal = await stopSignal;
  log.info(`${signal}: shutting down`);
  await server.shutdown(SHUTDOWN_GRACE_MS);
  await worker.close();
  stopReports();
  clearInterval(timingReports);
  ctx.stats.reportTotals(log);
  worker.timings.report(log);
  log.info("stopped");
}
