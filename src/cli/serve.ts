// `actiond serve`: the REAPI worker and cache on this machine. Flags become options; the store, the
// executor and the gRPC server are built here, and torn down in reverse.
import { availableParallelism, hostname } from "node:os";
import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import { SetupError, Teardown, createLogger, isPrivileged, systemClock, type Logger } from "../core";
import { CompleteResults, openDiskStore, type DiskStore } from "../cas";
import { localAssets } from "../assets";
import { MAX_TIMEOUT_MS, startLocalExecutor } from "../exec";
import { directDownload, downloadThrough, Fetcher } from "../fetch";
import { CallTracker, DEFAULT_CONNECTION_LIMITS, DEFAULT_MAX_BATCH_BYTES, Stats, UpstreamClient, listenText, startServer, type ServerContext } from "../rpc";
import { startUpstreamTier, type UpstreamTier } from "../upstream";
import { startStatusWeb } from "../web";
import { statusSource } from "./status-source";
import { flagsHelp, list, oneOf, optional, parseFlags, positiveInteger, toggle, UsageError, value, type FlagValues } from "./flags";
import { ACTION_LIMIT_FLAGS, UPSTREAM_FLAGS, listenFlag, logLevelFlag, parseListen, rootFlag, sandboxHelperFlag, sizeFlag } from "./shared-flags";

const DEFAULT_MAX_CAS_SIZE = 20 * 2 ** 30;
const DEFAULT_MAX_OUTPUT_SIZE = 10 * 2 ** 30;
const DEFAULT_TIMEOUT_S = 3600;
const SHUTDOWN_GRACE_MS = 10_000;
const STATS_INTERVAL_MS = 60_000;

export const SERVE_FLAGS = {
  listen: listenFlag,
  root: rootFlag("where the CAS, action cache, work folders and mounted runtimes live"),
  "max-cas-size": sizeFlag("disk budget for blobs and action results; the least recently used are evicted beyond it, e.g. 500M, 50G", DEFAULT_MAX_CAS_SIZE),
  "max-output-size": sizeFlag("the most one action's outputs may come to (stdout and stderr included), counted by apparent size; at most --max-cas-size", DEFAULT_MAX_OUTPUT_SIZE),
  jobs: value("N", "actions run at once; more wait in line (lower ExecutionPolicy.priority first)", { default: () => String(availableParallelism()), parse: positiveInteger }),
  ...ACTION_LIMIT_FLAGS,
  "default-timeout": value("SECS", "timeout for actions that set none", {
    default: String(DEFAULT_TIMEOUT_S),
    parse: (text, where) => {
      const s = Number(text);
      if (!(s > 0) || s * 1000 > MAX_TIMEOUT_MS) throw new UsageError(`${where} "${text}" is not a number of seconds between 0 and ${MAX_TIMEOUT_MS / 1000}`);
      return Math.round(s * 1000);
    },
  }),
  sandbox: value("KIND", "namespaces, or none to run actions directly on this machine as this user, without isolation", { default: "namespaces", parse: oneOf(["namespaces", "none"] as const) }),
  "runtime-image": list("FILE", "a runtime SquashFS for actions' userland; the first is the default, the platform property libc picks another", (text) => resolve(text)),
  "runtime-root": list("DIR", "a runtime already unpacked in a directory", (text) => resolve(text)),
  "shared-input-dirs": value("WHEN", "auto: an input directory that comes back is laid out once and mounted into later actions' sandboxes (when the sandbox can); off: every execroot links every input file", {
    default: "auto",
    parse: oneOf(["auto", "off"] as const),
  }),
  "keep-failed": toggle("keep the work folder of failed actions under ROOT/exec, for debugging"),
  "asset-downloads": value("KIND", "origin: the Remote Asset API downloads what it does not know; off: it serves only what it knows or was pushed; unix:PATH: it downloads through the download service at PATH (serve-vm's guest: the host downloads)", {
    default: "origin",
    parse: (text, where) => {
      if (text === "origin" || text === "off" || /^unix:\/./.test(text)) return text;
      throw new UsageError(`${where} "${text}": expected origin, off or unix:/PATH`);
    },
  }),
  "strict-platform": toggle("refuse actions with platform properties actiond does not know (by default they are accepted, ignored and named once)"),
  "max-connections": value("N", "client connections at once; past it one with no call in progress is closed, or the new one is refused", { default: String(DEFAULT_CONNECTION_LIMITS.maxConnections), parse: positiveInteger }),
  "idle-timeout": value("SECS", "close a client connection that has had no call in progress for this long (clients reconnect)", {
    default: String(DEFAULT_CONNECTION_LIMITS.idleMs / 1000),
    parse: (text, where) => {
      const s = Number(text);
      if (!(s > 0)) throw new UsageError(`${where} "${text}" is not a number of seconds`);
      return Math.round(s * 1000);
    },
  }),
  ...UPSTREAM_FLAGS,
  "status-listen": optional("HOST:PORT", "another address for the status endpoints (/metrics, /api/status); they are also on --listen's port, for connections from this machine", (text, where) => {
    const a = parseListen(text, where);
    if (!("host" in a)) throw new UsageError(`${where} takes HOST:PORT`);
    return a;
  }),
  "sandbox-helper": sandboxHelperFlag,
  "log-level": logLevelFlag,
};

export type ServeOptions = FlagValues<typeof SERVE_FLAGS>;

export const SERVE_HELP = `Usage: actiond serve [flags]

Serve the Remote Execution API for Bazel: the CAS and action cache on disk, and actions run in a
hermetic Linux sandbox (namespaces, uid 65534, loopback-only network, a Debian runtime userland):
  bazel build --remote_executor=grpc://127.0.0.1:8980 //...

Flags (each also read from its environment variable; a flag given wins):
${flagsHelp(SERVE_FLAGS)}

Stops on SIGINT or SIGTERM: no new calls, calls in flight (running actions too) get
${SHUTDOWN_GRACE_MS / 1000}s to finish, the rest are cancelled, then exit 0.
`;

export function parseServeFlags(argv: string[]): ServeOptions | "help" {
  return parseFlags("serve", SERVE_FLAGS, argv);
}

export async function serve(opts: ServeOptions): Promise<void> {
  const log = createLogger(opts["log-level"]);
  // Listen for signals first, so one that arrives while we start up still stops us cleanly.
  const stopSignal = new Promise<string>((resolveStop) => {
    process.once("SIGINT", () => resolveStop("SIGINT"));
    process.once("SIGTERM", () => resolveStop("SIGTERM"));
  });
  const teardown = new Teardown();
  try {
    await mkdir(opts.root, { recursive: true });
  } catch (err) {
    throw new SetupError(`cannot use --root ${opts.root}: ${(err as Error).message}`);
  }
  const privileged = isPrivileged();
  let store: DiskStore;
  try {
    store = openDiskStore({ root: opts.root, maxBytes: opts["max-cas-size"], log, privileged });
  } catch (err) {
    throw new SetupError(`cannot open the store in --root ${opts.root}: ${(err as Error).message}`);
  }
  teardown.defer("the store", () => store.close());
  const upstream = opts.upstream ? await startUpstream(opts, opts.upstream, store, log) : undefined;
  if (upstream) teardown.defer("the upstream tier", () => upstream.close(SHUTDOWN_GRACE_MS));
  // Clients and the executor see the same store; with an upstream, each through its own view.
  const blobs = upstream?.clientBlobs ?? store.blobs;
  const results = new CompleteResults(upstream?.clientResults ?? store.actionResults, blobs, log);
  const executorResults = upstream ? new CompleteResults(upstream.executorResults, blobs, log) : results;
  const assets = await localAssets(opts.root, log);
  const executor = await startLocalExecutor(
    {
      root: opts.root,
      jobs: opts.jobs,
      defaultTimeoutMs: opts["default-timeout"],
      sandbox: opts.sandbox,
      keepFailed: opts["keep-failed"],
      sharedInputDirs: opts["shared-input-dirs"] === "auto",
      runtimeImages: opts["runtime-image"],
      runtimeRoots: opts["runtime-root"],
      strictPlatform: opts["strict-platform"],
      maxOutputBytes: Math.min(opts["max-output-size"], opts["max-cas-size"]),
      actionBounds: { memoryBytes: opts["action-memory"], pids: opts["action-pids"], tmpBytes: opts["action-tmp-size"] },
    },
    { files: upstream?.executorBlobs ?? store.blobs, results: executorResults, builtIn: { ...assets, helper: opts["sandbox-helper"] ?? assets.helper }, privileged, log },
  ).catch(async (err) => {
    await teardown.run(log);
    throw err;
  });
  teardown.defer("the executor", () => executor.close());
  const downloads = opts["asset-downloads"];
  const origin = downloads === "origin" ? directDownload : downloads === "off" ? undefined : downloadThrough(downloads.slice("unix:".length), "the VM host's download service");
  const fetcher = new Fetcher(store.blobs, opts.root, log, systemClock, origin);
  const stats = new Stats();
  const web = startStatusWeb(statusSource(opts.root, store, executor, upstream, stats), log, opts.root, opts["status-listen"]);
  teardown.defer("the status endpoints", () => web.close());
  const ctx: ServerContext = { blobs, results, executor, fetcher, log, calls: new CallTracker(), stats, clock: systemClock, maxBatchBytes: DEFAULT_MAX_BATCH_BYTES, maxBlobBytes: store.blobs.capacityBytes };
  let server;
  try {
    server = await startServer(ctx, opts.listen, { ...DEFAULT_CONNECTION_LIMITS, maxConnections: opts["max-connections"], idleMs: opts["idle-timeout"] }, web.take);
  } catch (err) {
    await teardown.run(log);
    const msg = String((err as Error).message);
    const where = listenText(opts.listen);
    if (msg.includes("EADDRINUSE")) throw new SetupError(`cannot listen on ${where}: the address is already in use`);
    throw new SetupError(`cannot listen on ${where}: ${msg}`);
  }
  teardown.defer("the gRPC server", () => server.shutdown(SHUTDOWN_GRACE_MS));
  const bound = "path" in opts.listen ? opts.listen : { ...opts.listen, port: server.port };
  if ("host" in bound) log.info(`use it with: bazel build --remote_executor=grpc://${bound.host.includes(":") ? `[${bound.host}]` : bound.host}:${bound.port} ...`);
  // Tests and scripts wait for this line, the last of start-up, to learn the port (useful with --listen HOST:0).
  log.info(`actiond serving REAPI on ${listenText(bound)} (root ${opts.root}, worker ${hostname()})`);
  const stopReports = ctx.stats.every(log, STATS_INTERVAL_MS);
  let upstreamReported = upstream?.summary();
  const timingReports = setInterval(() => {
    executor.timings.reportIfNew(log);
    const line = upstream?.summary();
    if (line !== upstreamReported) log.info((upstreamReported = line)!);
  }, STATS_INTERVAL_MS);
  timingReports.unref();
  teardown.defer("the periodic reports", () => {
    stopReports();
    clearInterval(timingReports);
  });

  const signal = await stopSignal;
  log.info(`${signal}: shutting down`);
  await teardown.run(log);
  ctx.stats.reportTotals(log);
  if (upstream) log.info(`since start: ${upstream.summary()}`);
  executor.timings.report(log);
  log.info("stopped");
}

async function startUpstream(opts: ServeOptions, url: string, store: DiskStore, log: Logger): Promise<UpstreamTier> {
  const remote = await UpstreamClient.open({
    url,
    caFile: opts["upstream-ca"],
    headers: opts["upstream-header"],
    instance: opts["upstream-instance"],
    timeoutMs: opts["upstream-timeout"],
  }, log);
  log.info(`upstream ${url}: reading through it, pushing ${opts["upstream-write"] === "all" ? "results and uploads" : opts["upstream-write"]} to it`);
  return startUpstreamTier({ remote, writes: opts["upstream-write"], maxQueuedPushes: opts["upstream-queue"], root: opts.root, local: { blobs: store.blobs, results: store.actionResults }, log, clock: systemClock });
}
