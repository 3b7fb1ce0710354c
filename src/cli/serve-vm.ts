// `actiond serve-vm`: the same REAPI worker and cache, inside a small Linux VM. The host owns the TCP
// listener and the VM's lifecycle only: each client connection becomes a stream to the guest's gRPC
// port. Ready means the guest's worker answered a call. A guest that dies is booted again (clients
// get UNAVAILABLE meanwhile, and Bazel retries); SIGINT/SIGTERM shut the guest down cleanly, so its
// CAS disk needs no repair next time.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, ftruncateSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { join, resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from "../log";
import { controlPort, GUEST_GRPC_PORT, SHUTDOWN_COMMAND } from "../guest/protocol";
import { embeddedPayload, extractAssets } from "../payload/embedded";
import { sourceRuntimeImage } from "../exec/runtime";
import { hostRuntimeArch } from "../exec/runtime-manifest";
import { bootGuest, type GuestConfig, type RunningGuest } from "../vmhost/qemu";
import { bootVzGuest } from "../vmhost/vz";
import { DEFAULT_LISTEN, defaultRoot, parseListen } from "./serve";
import { FatalError, UsageError, parseFlags } from "./usage";
import * as grpc from "@grpc/grpc-js";
import { Capabilities, GetCapabilitiesRequestSchema } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { grpcServiceDefinition } from "../rpc/grpc-service";

export const SERVE_VM_HELP = `Usage: actiond serve-vm [flags]

Runs the worker and cache in a small Linux VM (QEMU on Linux, Virtualization.framework on macOS:
untested, no Mac was available) and serves REAPI on the host. Point Bazel at it as at \`actiond serve\`.

Flags:
  --listen HOST:PORT          address to listen on (default ${DEFAULT_LISTEN})
  --root DIR                  where the VM's disk image, console log and extracted assets live
                              (default ${defaultRoot()})
  --cas-image FILE            the guest's CAS disk (default <root>/vm/cas-<arch>.img); a sparse file,
                              formatted by the guest on first use
  --cas-image-size-mib N      its size when it is created (default 20480)
  --kernel FILE               guest kernel (default: the one this executable carries)
  --initramfs FILE            guest initramfs (default: the one this executable carries)
  --runtime-image FILE        the actions' runtime image (default: the one this executable carries)
  --memory-mib N              guest memory (default 2048)
  --cpus N                    guest CPUs (default: this machine's, at most 4)
  --start-timeout-ms N        how long the guest may take to answer (default 120000)
  --hypervisor qemu|vz        default: vz on macOS, qemu on Linux
  --accel auto|kvm|tcg        QEMU: KVM, software emulation, or KVM when it works (default auto)
  --log-level LEVEL           debug, info, warn, error (default info)
`;

interface ServeVmOptions {
  listen: { host: string; port: number };
  root: string;
  casImage?: string;
  casImageSizeMib: number;
  kernel?: string;
  initramfs?: string;
  runtimeImage?: string;
  memoryMib: number;
  cpus: number;
  startTimeoutMs: number;
  hypervisor: "qemu" | "vz";
  accel: "auto" | "kvm" | "tcg";
  logLevel: LogLevel;
}

export function parseServeVmFlags(argv: string[]): ServeVmOptions | "help" {
  const { values } = parseFlags("serve-vm", argv, {
    listen: { type: "string" },
    root: { type: "string" },
    "cas-image": { type: "string" },
    "cas-image-size-mib": { type: "string" },
    kernel: { type: "string" },
    initramfs: { type: "string" },
    "runtime-image": { type: "string" },
    "memory-mib": { type: "string" },
    cpus: { type: "string" },
    "start-timeout-ms": { type: "string" },
    hypervisor: { type: "string" },
    accel: { type: "string" },
    "log-level": { type: "string" },
  });
  if (values.help) return "help";
  const listen = parseListen(values.listen ?? DEFAULT_LISTEN);
  if (!("host" in listen)) throw new UsageError("serve-vm: --listen takes HOST:PORT");
  const whole = (flag: string, text: string | undefined, fallback: number) => {
    const n = Number(text ?? fallback);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`serve-vm: --${flag} "${text}" is not a positive whole number`);
    return n;
  };
  const hypervisor = values.hypervisor ?? (process.platform === "darwin" ? "vz" : "qemu");
  if (hypervisor !== "qemu" && hypervisor !== "vz") throw new UsageError(`serve-vm: --hypervisor "${hypervisor}" is not one of qemu, vz`);
  const accel = values.accel ?? "auto";
  if (accel !== "auto" && accel !== "kvm" && accel !== "tcg") throw new UsageError(`serve-vm: --accel "${accel}" is not one of auto, kvm, tcg`);
  const logLevel = (values["log-level"] ?? "info") as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new UsageError(`serve-vm: --log-level "${logLevel}" is not one of ${LOG_LEVELS.join(", ")}`);
  const file = (p: string | undefined) => (p ? resolve(p) : undefined);
  return {
    listen,
    root: resolve(values.root ?? defaultRoot()),
    casImage: file(values["cas-image"]),
    casImageSizeMib: whole("cas-image-size-mib", values["cas-image-size-mib"], 20480),
    kernel: file(values.kernel),
    initramfs: file(values.initramfs),
    runtimeImage: file(values["runtime-image"]),
    memoryMib: whole("memory-mib", values["memory-mib"], 2048),
    cpus: whole("cpus", values.cpus, Math.min(4, navigator.hardwareConcurrency || 1)),
    startTimeoutMs: whole("start-timeout-ms", values["start-timeout-ms"], 120_000),
    hypervisor,
    accel,
    logLevel,
  };
}

export async function serveVm(opts: ServeVmOptions): Promise<void> {
  const log = createLogger(opts.logLevel);
  if (opts.hypervisor === "vz" && process.platform !== "darwin") {
    throw new FatalError("serve-vm --hypervisor vz needs macOS (Virtualization.framework); on Linux use --hypervisor qemu");
  }
  const stopSignal = new Promise<string>((resolveStop) => {
    process.once("SIGINT", () => resolveStop("SIGINT"));
    process.once("SIGTERM", () => resolveStop("SIGTERM"));
  });
  const stateDir = join(opts.root, "vm");
  mkdirSync(stateDir, { recursive: true });
  const arch = hostRuntimeArch();
  const { vzShim, ...files } = await guestFiles(opts, log);
  const cfg: GuestConfig = {
    ...files,
    casImage: opts.casImage ?? join(stateDir, `cas-${arch}.img`),
    memoryMib: opts.memoryMib,
    cpus: opts.cpus,
    stateDir,
    guestPort: GUEST_GRPC_PORT,
  };
  ensureCasImage(cfg.casImage, opts.casImageSizeMib, log);

  let stopping = false;
  // The latest guest, booting or running. Connections go to it (while it boots, its ports refuse
  // them, as they do between a guest's stop and its next boot: clients see UNAVAILABLE and retry);
  // the readiness probe comes this way too, so it takes the same path as Bazel.
  let guest: RunningGuest | undefined;
  const sockets = new Set<Socket>();
  const listener = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    if (stopping || !guest?.running()) return void client.destroy();
    sockets.add(client);
    client.once("close", () => sockets.delete(client));
    guest.link.join(client, GUEST_GRPC_PORT);
  });
  await new Promise<void>((res, rej) => {
    listener.once("error", (err) => rej(new FatalError(`cannot listen on ${opts.listen.host}:${opts.listen.port}: ${(err as Error).message}`)));
    listener.listen(opts.listen.port, opts.listen.host, () => res());
  });
  const port = (listener.address() as { port: number }).port;
  const address = `${opts.listen.host.includes(":") ? `[${opts.listen.host}]` : opts.listen.host}:${port}`;

  const stopped = stopSignal.then(() => undefined);
  /** Boots a guest and waits until it answers; returns undefined if a stop signal came first. */
  const boot = async (): Promise<RunningGuest | undefined> => {
    const started = performance.now();
    const g = opts.hypervisor === "vz" ? await bootVzGuest(cfg, vzShim!) : await bootGuest(cfg, opts.accel);
    guest = g;
    if (g.kvmFailure) log.warn(`QEMU could not use KVM here (${g.kvmFailure}); the guest runs in software emulation, much slower`);
    const how = { kvm: "QEMU, KVM", tcg: "QEMU, software emulation", vz: "Virtualization.framework" }[g.accel];
    log.info(`guest booting (${how}, ${cfg.cpus} CPUs, ${cfg.memoryMib} MiB); console: ${g.console}`);
    const answered = await Promise.race([waitUntilAnswering(address, opts.startTimeoutMs, g), stopped]);
    if (answered === undefined) return undefined;
    if (!answered) {
      const why = g.running() ? `did not answer within ${opts.startTimeoutMs} ms` : `stopped while booting (${g.failure() ?? "no reason given"})`;
      g.kill();
      throw new FatalError(`the guest ${why}; the last of its console (${g.console}):\n${consoleTail(g.console)}`);
    }
    log.info(`guest ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return g;
  };

  let current: RunningGuest | undefined;
  try {
    current = await boot();
  } catch (err) {
    listener.close();
    throw err;
  }
  if (current) {
    log.info(`use it with: bazel build --remote_executor=grpc://${address} ...`);
    log.info(`actiond serving REAPI on ${address} (root ${opts.root}, worker: the VM)`);
    // A guest that stops on its own is booted again.
    void (async () => {
      while (current && !stopping) {
        const code = await current.exited;
        if (stopping) return;
        for (const s of sockets) s.destroy();
        log.warn(`the guest stopped (exit ${code}); booting it again. Its console: ${current.console}\n${consoleTail(current.console)}`);
        try {
          current = await boot();
        } catch (err) {
          log.error((err as Error).message);
          process.kill(process.pid, "SIGTERM");
          return;
        }
      }
    })();
  }

  const signal = await stopSignal;
  stopping = true;
  log.info(`${signal}: shutting the guest down`);
  // A second signal: do not wait for the guest any longer.
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => guest?.kill());
  listener.close();
  for (const s of sockets) s.destroy();
  if (guest) await shutDownGuest(guest, log);
  log.info("stopped");
}

/** Asks the guest to stop its worker and unmount its disks, and waits for it; stops it at once if
 * it cannot be asked (still booting, or gone) or does not stop in time. */
async function shutDownGuest(g: RunningGuest, log: Logger): Promise<void> {
  if (!g.running()) return;
  const timeout = (ms: number) => new Promise<"timeout">((res) => setTimeout(() => res("timeout"), ms).unref());
  const answer = await Promise.race([g.link.request(controlPort(GUEST_GRPC_PORT), `${SHUTDOWN_COMMAND}\n`).catch((err: Error) => err.message), timeout(10_000)]);
  if (answer.trim() !== "ok") {
    log.warn(`the guest could not be asked to shut down (${answer.trim()}); stopping it`);
    g.kill();
  } else if ((await Promise.race([g.exited, timeout(60_000)])) === "timeout") {
    log.warn("the guest did not stop within 60 s; stopping it (its CAS disk may need a journal replay next time)");
    g.kill();
  }
  await g.exited;
}

/** Kernel, initramfs and runtime image (and on macOS the VZ shim): from the flags, else what this
 * executable carries, else a checkout's build/. */
async function guestFiles(opts: ServeVmOptions, log: Logger): Promise<Pick<GuestConfig, "kernel" | "initramfs" | "runtimeImage"> & { vzShim?: string }> {
  const arch = hostRuntimeArch();
  let carried: Partial<Record<"kernel" | "initramfs" | "runtimeImage", string>> = {};
  let vzShim: string | undefined;
  const payload = await embeddedPayload();
  if (payload) {
    const assets = await extractAssets(payload, opts.root, log, ["guest-kernel", "guest-initramfs", "runtime", "vz-shim"]);
    carried = { kernel: assets.byRole.get("guest-kernel")?.[0], initramfs: assets.byRole.get("guest-initramfs")?.[0], runtimeImage: assets.byRole.get("runtime")?.[0] };
    vzShim = assets.byRole.get("vz-shim")?.[0];
  } else {
    const build = join(import.meta.dir, "../../build");
    const inCheckout = (p: string) => (existsSync(p) ? p : undefined);
    carried = {
      kernel: inCheckout(join(build, "vm", `kernel-${arch}`)),
      initramfs: inCheckout(join(build, "vm", `initramfs-${arch}`)),
      runtimeImage: inCheckout(sourceRuntimeImage("cc")),
    };
  }
  const files = { kernel: opts.kernel ?? carried.kernel, initramfs: opts.initramfs ?? carried.initramfs, runtimeImage: opts.runtimeImage ?? carried.runtimeImage };
  const missing = Object.entries(files).filter(([, v]) => !v).map(([k]) => k);
  if (missing.length > 0) {
    const how = payload ? "this build does not carry them (built without --vm)" : "build them with `npm run build -- --vm`";
    throw new FatalError(`serve-vm needs a guest ${missing.join(", ")}: ${how}, or pass --kernel, --initramfs, --runtime-image`);
  }
  for (const [what, path] of Object.entries(files)) if (!existsSync(path!)) throw new FatalError(`serve-vm: the ${what} ${path} does not exist`);
  if (opts.hypervisor === "vz" && !vzShim) throw new FatalError("serve-vm --hypervisor vz: this build carries no Virtualization.framework shim (libactiond-vz.dylib)");
  return { ...(files as Pick<GuestConfig, "kernel" | "initramfs" | "runtimeImage">), vzShim };
}

/** Creates the CAS disk as a sparse file; the guest formats it on first boot. */
function ensureCasImage(path: string, sizeMib: number, log: Logger): void {
  if (existsSync(path)) {
    log.info(`CAS disk ${path} (${(statSync(path).size / 2 ** 20).toFixed(0)} MiB)`);
    return;
  }
  const fd = openSync(path, "wx", 0o600);
  try {
    ftruncateSync(fd, sizeMib * 2 ** 20);
  } finally {
    closeSync(fd);
  }
  log.info(`CAS disk ${path} created (${sizeMib} MiB, sparse); the guest formats it on first boot`);
}

/** Calls GetCapabilities through our own listener until the guest's worker answers. A new client
 * each time: one client would wait longer and longer between reconnects (grpc-js's backoff). */
async function waitUntilAnswering(address: string, timeoutMs: number, g: RunningGuest): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const Client = grpc.makeGenericClientConstructor(grpcServiceDefinition(Capabilities), Capabilities.name);
  while (Date.now() < deadline && g.running()) {
    const client = new Client(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
    const ok = await new Promise<boolean>((res) =>
      client.getCapabilities(create(GetCapabilitiesRequestSchema, {}), { deadline: Date.now() + 5000 }, (err: Error | null) => res(!err)),
    );
    client.close();
    if (ok) return true;
    await Bun.sleep(250);
  }
  return false;
}

function consoleTail(path: string): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-15).join("\n");
  } catch {
    return "(no console log)";
  }
}
