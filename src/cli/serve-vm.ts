// `actiond serve-vm`: the same REAPI worker and cache, inside a small Linux VM. Flags become
// options; vmhost/ does the rest (the hypervisor driver, the listener, the guest's boots).
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { directDownload, serveDownloads } from "../fetch";
import { GUEST_GRPC_PORT, GUEST_UPSTREAM_SOCKET, HOST_CONFIG_PORT, HOST_DOWNLOADS_PORT, HOST_UPSTREAM_PORT, SetupError, type Logger, createLogger, hostArchName } from "../core";
import { answersCapabilities, parseUpstreamUrl, startRelay, upstreamAuthority, type Relay } from "../rpc";
import { startVmFront } from "../web";
import { ensureCasImage, guestFiles, hypervisorDriver, HYPERVISORS, runVmHost, serveWorkerConfig, type GuestConfig } from "../vmhost";
import { flagsHelp, oneOf, optional, parseFlags, positiveInteger, UsageError, value, type FlagValues } from "./flags";
import { listenFlag, logLevelFlag, rootFlag, UPSTREAM_FLAGS } from "./shared-flags";

const file = (text: string) => resolve(text);

export const SERVE_VM_FLAGS = {
  listen: listenFlag,
  root: rootFlag("where the VM's disk image, console log and extracted assets live"),
  "cas-image": optional("FILE", "the guest's CAS disk: a sparse file, formatted by the guest on first use", file, "<root>/vm/cas-<arch>.img"),
  "cas-image-size-mib": value("N", "the CAS disk's size when it is created", { default: "20480", parse: positiveInteger }),
  kernel: optional("FILE", "guest kernel", file, "what this executable carries"),
  initramfs: optional("FILE", "guest initramfs", file, "what this executable carries"),
  "runtime-image": optional("FILE", "the actions' runtime image", file, "what this executable carries"),
  "memory-mib": value("N", "guest memory", { default: "2048", parse: positiveInteger }),
  cpus: value("N", "guest CPUs; the default is this machine's number, up to 4", { default: () => String(Math.min(4, navigator.hardwareConcurrency || 1)), parse: positiveInteger }),
  "start-timeout-ms": value("N", "how long the guest may take to answer its first call", { default: "120000", parse: positiveInteger }),
  arch: value("ARCH", "the guest's architecture, x86_64 or aarch64; another than this machine's runs in QEMU's software emulation", { default: () => hostArchName(), parse: oneOf(["x86_64", "aarch64"] as const) }),
  hypervisor: value("NAME", "qemu (Linux) or vz (macOS)", { default: process.platform === "darwin" ? "vz" : "qemu", parse: oneOf(HYPERVISORS) }),
  accel: value("KIND", "QEMU: kvm, tcg (software emulation), or auto: KVM when it works", { default: "auto", parse: oneOf(["auto", "kvm", "tcg"] as const) }),
  "vm-transport": value("KIND", "QEMU: how the host's streams reach the guest: vsock (virtio-vsock through vhost-device-vsock, as on a Mac), serial (a multiplexed virtio-serial port), or auto: vsock when vhost-device-vsock is on PATH", {
    default: "auto",
    parse: oneOf(["auto", "vsock", "serial"] as const),
  }),
  "asset-downloads": value("KIND", "origin: the guest's Remote Asset API downloads what it does not know, through this host (the guest has no network); off: it serves only what it knows or was pushed", { default: "origin", parse: oneOf(["origin", "off"] as const) }),
  ...UPSTREAM_FLAGS,
  "log-level": logLevelFlag,
};

export type ServeVmOptions = FlagValues<typeof SERVE_VM_FLAGS>;

export const SERVE_VM_HELP = `Usage: actiond serve-vm [flags]

Runs the worker and cache in a small Linux VM (QEMU on Linux, Virtualization.framework on macOS:
untested, no Mac was available) and serves REAPI on the host. Point Bazel at it as at \`actiond serve\`.

Flags (each also read from its environment variable; a flag given wins):
${flagsHelp(SERVE_VM_FLAGS)}
`;

export function parseServeVmFlags(argv: string[]): ServeVmOptions | "help" {
  const opts = parseFlags("serve-vm", SERVE_VM_FLAGS, argv);
  if (opts !== "help" && !("host" in opts.listen)) throw new UsageError("serve-vm: --listen takes HOST:PORT");
  return opts;
}

export async function serveVm(opts: ServeVmOptions): Promise<void> {
  const log = createLogger(opts["log-level"]);
  const stop = new Promise<string>((resolveStop) => {
    process.once("SIGINT", () => resolveStop("SIGINT"));
    process.once("SIGTERM", () => resolveStop("SIGTERM"));
  });
  const listen = opts.listen as { host: string; port: number };
  // A driver that cannot run here says so before anything starts (vz needs macOS and its shim).
  if (opts.hypervisor === "vz" && process.platform !== "darwin") throw new SetupError(hypervisorDriver("vz", { accel: opts.accel }).unavailable()!);
  if (opts.hypervisor === "vz" && opts.arch !== hostArchName()) throw new SetupError(`--hypervisor vz runs guests of this Mac's architecture only (${hostArchName()}), not ${opts.arch}`);
  const stateDir = join(opts.root, "vm");
  mkdirSync(stateDir, { recursive: true });
  const { vzShim, ...files } = await guestFiles({ kernel: opts.kernel, initramfs: opts.initramfs, runtimeImage: opts["runtime-image"] }, opts.root, log, opts.arch);
  const driver = hypervisorDriver(opts.hypervisor, { accel: opts.accel, vzShim, arch: opts.arch, transport: opts["vm-transport"] });
  const unavailable = driver.unavailable();
  if (unavailable) throw new SetupError(unavailable);
  const guest: GuestConfig = {
    ...files,
    casImage: opts["cas-image"] ?? join(stateDir, `cas-${opts.arch}.img`),
    memoryMib: opts["memory-mib"],
    cpus: opts.cpus,
    stateDir,
    guestPort: GUEST_GRPC_PORT,
    hostPorts: [
      { port: HOST_DOWNLOADS_PORT, path: join(stateDir, "downloads.sock") },
      { port: HOST_CONFIG_PORT, path: join(stateDir, "worker-config.sock") },
    ],
  };
  ensureCasImage(guest.casImage, opts["cas-image-size-mib"], log);
  // The guest has no network: its downloads are made here, and checked and stored there; its
  // connection to a team's cache goes through a relay here (TLS too).
  const downloads = serveDownloads(guest.hostPorts[0]!.path, log, opts["asset-downloads"] === "origin" ? directDownload : undefined, "serve-vm runs with --asset-downloads off");
  const upstream = opts.upstream ? await upstreamForGuest(opts, opts.upstream, log) : undefined;
  if (upstream) guest.hostPorts.push({ port: HOST_UPSTREAM_PORT, path: upstream.relay.target.slice("unix:".length) });
  // The guest's worker logs (to the guest's console) at the host's level.
  const config = await serveWorkerConfig(guest.hostPorts[1]!.path, { args: [...(upstream?.args ?? []), "--log-level", opts["log-level"]] });
  try {
    await runVmHost({
      listen,
      root: opts.root,
      driver,
      guest,
      startTimeoutMs: opts["start-timeout-ms"],
      log,
      answers: answersCapabilities,
      stop,
      // The page on the same port: the host's view of the guest beside the guest's own.
      front: (view) => startVmFront(view, opts.root, log),
    });
  } finally {
    config.close();
    upstream?.relay.close();
    downloads.stop();
  }
}

/** The relay to the upstream, on this host, and the worker's flags that reach it from the guest. */
async function upstreamForGuest(opts: ServeVmOptions, url: string, log: Logger): Promise<{ relay: Relay; args: string[] }> {
  const to = parseUpstreamUrl(url);
  if ("socket" in to) throw new SetupError(`serve-vm --upstream takes grpc:// or grpcs://, not ${url}`);
  const relay = await startRelay({ ...to, caFile: opts["upstream-ca"] }, log);
  const args = [
    "--upstream", `unix:${GUEST_UPSTREAM_SOCKET}?authority=${upstreamAuthority(to)}`,
    ...opts["upstream-header"].flatMap(([name, value]) => ["--upstream-header", `${name}=${value}`]),
    ...(opts["upstream-instance"] ? ["--upstream-instance", opts["upstream-instance"]] : []),
    "--upstream-timeout", String(opts["upstream-timeout"] / 1000),
    "--upstream-write", opts["upstream-write"],
    "--upstream-queue", String(opts["upstream-queue"]),
  ];
  log.info(`upstream ${url}: the guest reads through it and pushes ${opts["upstream-write"] === "all" ? "results and uploads" : opts["upstream-write"]} to it, through this host`);
  return { relay, args };
}
