// actiond --guest-init: the VM guest's supervisor, started by /init (shim/guest-init.c), which stays
// PID 1 and reaps orphans. It finds the disks, formats the CAS disk when it is blank, mounts it at
// /cas and the runtime image at /runtimes, starts the worker (`--guest-worker`, the same server as
// `serve`, on a Unix socket) and the relays that bring the host's streams to it, and starts the
// worker again whenever it dies. The relays also carry the guest's connections out to the host's
// services: its downloads, the worker's flags, its relay to a team's cache. The host asks for a
// clean shutdown on the control port (the gRPC port + 1): "shutdown\n". Then the worker stops, the
// disks are unmounted, and /init powers the VM off, so the CAS disk needs no fsck next time.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statfsSync, writeFileSync } from "node:fs";
import type { Subprocess } from "bun";
import { connect } from "node:net";
import { controlPort, createLogger, GUEST_UPSTREAM_SOCKET, HOST_CONFIG_PORT, HOST_DOWNLOADS_PORT, HOST_UPSTREAM_PORT, MUX_PORT_NAME, parseGuestCmdline, SHUTDOWN_COMMAND, type WorkerConfig } from "../core";
import { localAssets } from "../assets";
import { guestMounts, HEAD_BYTES, identifyDisk, planDisks, type Disk } from "./disks";
import { mount, setClock, unmount } from "./syscalls";

/** A clock before this has not been set (2020-01-01). */
const CLOCK_PLAUSIBLE_MS = Date.UTC(2020, 0, 1);

const WORKER_SOCKET = "/run/actiond.sock";
const CONTROL_SOCKET = "/run/actiond-control.sock";
/** The host's services, as the guest reaches them (the relay joins each connection to the host). */
const DOWNLOADS_SOCKET = "/run/actiond-downloads.sock";
const CONFIG_SOCKET = "/run/actiond-config.sock";
const say = (msg: string) => process.stderr.write(`actiond guest: ${msg}\n`);

export async function guestInit(): Promise<number> {
  const started = performance.now();
  const opts = parseGuestCmdline(readFileSync("/proc/cmdline", "utf8"));
  // Without a real-time clock (arm64 under QEMU's virt or VZ) the guest would think it is 1970:
  // every log line, result timestamp and the store's recency (file mtimes) would be wrong. The
  // host's clock at boot plus the time since the kernel started is close enough.
  if (opts.time !== undefined && Date.now() < CLOCK_PLAUSIBLE_MS) {
    const uptimeMs = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]) * 1000;
    try {
      setClock(opts.time * 1000 + uptimeMs);
      say(`no real-time clock: the clock is set from the host's (${new Date().toISOString()})`);
    } catch (err) {
      say(`cannot set the clock: ${(err as Error).message}`);
    }
  }
  // The kernel makes a fallback tunnel device (sit0) in every new network namespace; an action's
  // namespace must hold only lo. 1: fallback tunnels only in the guest's own namespace.
  try {
    writeFileSync("/proc/sys/net/core/fb_tunnels_only_for_init_net", "1");
  } catch (err) {
    say(`cannot keep tunnel devices out of actions' network namespaces: ${(err as Error).message}`);
  }
  const disks = listDisks();
  const plan = planDisks(disks);
  if (plan.cas.format) {
    say(`formatting ${plan.cas.device} (ext4) for the CAS`);
    const mkfs = Bun.spawnSync(["/usr/sbin/mkfs.ext4", "-q", "-F", "-L", "actiond-cas", plan.cas.device], { stderr: "pipe" });
    if (mkfs.exitCode !== 0) throw new Error(`mkfs.ext4 ${plan.cas.device} failed: ${mkfs.stderr.toString().trim()}`);
  }
  const mounted: string[] = [];
  for (const m of guestMounts(plan)) {
    mkdirSync(m.target, { recursive: true });
    mount(m);
    mounted.push(m.target);
  }
  const assets = await localAssets("/cas", createLogger("warn"));
  if (!assets.relay) throw new Error("this actiond carries no vsock relay");

  let stopping = false;
  let worker: Subprocess | undefined;
  // The host reaches the guest over vsock, or (QEMU without vhost-vsock) a multiplexed serial port,
  // whose name may show up in sysfs a little after boot.
  const serial = opts.link === "serial" ? await waitForSerialPort(MUX_PORT_NAME, 10_000) : undefined;
  const dials = [`${DOWNLOADS_SOCKET}=${HOST_DOWNLOADS_PORT}`, `${CONFIG_SOCKET}=${HOST_CONFIG_PORT}`, `${GUEST_UPSTREAM_SOCKET}=${HOST_UPSTREAM_PORT}`];
  const relayArgs = serial
    ? [["--serial", serial, "--map", `${opts.port}=${WORKER_SOCKET}`, "--map", `${controlPort(opts.port)}=${CONTROL_SOCKET}`, ...dials.flatMap((d) => ["--dial", d])]]
    : [["--vsock-port", String(opts.port), "--unix", WORKER_SOCKET], ["--vsock-port", String(controlPort(opts.port)), "--unix", CONTROL_SOCKET], ...dials.map((d) => ["--dial", d])];
  const relays = relayArgs.map((args) => Bun.spawn([assets.relay!, ...args], { stdio: ["ignore", "inherit", "inherit"] }));
  let requestShutdown!: () => void;
  const shutdownRequested = new Promise<void>((resolve) => (requestShutdown = resolve));
  Bun.listen({
    unix: CONTROL_SOCKET,
    socket: {
      data(socket, data) {
        if (data.toString().trim() === SHUTDOWN_COMMAND) {
          socket.end("ok\n");
          requestShutdown();
        } else socket.end("unknown command\n");
      },
    },
  });
  process.on("SIGTERM", () => requestShutdown());

  const config = await askHostForConfig();
  if (config.args.length) say(`the host's flags for the worker: ${config.args.filter((a) => a.startsWith("--")).join(" ")}`);
  // The worker: started again when it dies. Quick deaths in a row wait longer each time; a worker
  // that ran a while starts the count again.
  const runWorker = async () => {
    for (let attempt = 0; !stopping; attempt++) {
      const since = Date.now();
      worker = Bun.spawn([process.execPath, "--guest-worker", ...config.args], { stdio: ["ignore", "inherit", "pipe"] });
      watchForReady(worker, started);
      const code = await worker.exited;
      if (stopping) return;
      say(`the worker exited (${code}); starting it again`);
      if (Date.now() - since > 60_000) attempt = 0;
      await Bun.sleep(Math.min(1000 * 2 ** attempt, 10_000));
    }
  };
  void runWorker();

  await shutdownRequested;
  stopping = true;
  say("shutting down");
  if (worker && worker.exitCode === null) {
    worker.kill("SIGTERM");
    const timer = setTimeout(() => worker?.kill("SIGKILL"), 30_000);
    await worker.exited;
    clearTimeout(timer);
  }
  // The relays run from the CAS disk: they must be gone before it can be unmounted.
  for (const r of relays) r.kill("SIGKILL");
  await Promise.all(relays.map((r) => r.exited));
  // The disks are what must be left consistent; the tmpfs and cgroup mounts go with the VM.
  let clean = true;
  for (const target of mounted.reverse().filter((t) => t === "/cas" || t === "/runtimes")) {
    try {
      clean = unmount(target) && clean;
    } catch (err) {
      clean = false;
      say((err as Error).message);
    }
  }
  say(clean ? "disks unmounted" : "disks detached while still busy (the CAS disk may need a journal replay at the next boot)");
  return 0;
}

/** Copies the worker's log to the console and says "ready" once it serves. */
function watchForReady(worker: Subprocess<"ignore", "inherit", "pipe">, started: number): void {
  void (async () => {
    let announced = false;
    const decoder = new TextDecoder();
    for await (const chunk of worker.stderr) {
      const text = decoder.decode(chunk);
      process.stderr.write(text);
      if (!announced && text.includes("actiond serving REAPI")) {
        announced = true;
        say(`ready (${((performance.now() - started) / 1000).toFixed(1)} s after guest-init started)`);
      }
    }
  })();
}

/** The host's flags for the worker, asked on its config port; none when it does not answer (the relay
 * may take a moment to listen). Flags, not the kernel command line: actions can read that. */
async function askHostForConfig(): Promise<WorkerConfig> {
  let why = "";
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await Bun.sleep(100)) {
    try {
      const text = await new Promise<string>((resolve, reject) => {
        const chunks: Buffer[] = [];
        const s = connect(CONFIG_SOCKET);
        s.on("data", (d: Buffer) => chunks.push(d));
        s.on("end", () => resolve(Buffer.concat(chunks).toString()));
        s.on("error", reject);
      });
      const config = JSON.parse(text) as WorkerConfig;
      if (Array.isArray(config.args) && config.args.every((a) => typeof a === "string")) return config;
      why = "its answer is not a list of flags";
    } catch (err) {
      why = (err as Error).message;
    }
  }
  say(`the host's flags for the worker did not come (${why}); the worker starts with its defaults`);
  return { args: [] };
}

/** The device of the virtio-serial port the host named `name`, waiting for it to appear. */
async function waitForSerialPort(name: string, timeoutMs: number): Promise<string> {
  const dir = "/sys/class/virtio-ports";
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await Bun.sleep(100)) {
    if (!existsSync(dir)) continue;
    const port = readdirSync(dir).find((p) => existsSync(`${dir}/${p}/name`) && readFileSync(`${dir}/${p}/name`, "utf8").trim() === name);
    if (port && existsSync(`/dev/${port}`)) return `/dev/${port}`;
  }
  throw new Error(`the host said its streams come over the serial port "${name}", which did not appear within ${timeoutMs / 1000} s`);
}

/** The virtio disks (/sys/block/vd*), with what each holds. */
function listDisks(): Disk[] {
  return readdirSync("/sys/block")
    .filter((name) => name.startsWith("vd"))
    .sort()
    .map((name) => {
      const device = `/dev/${name}`;
      const head = new Uint8Array(HEAD_BYTES);
      const fd = openSync(device, "r");
      try {
        readSync(fd, head, 0, HEAD_BYTES, 0);
      } finally {
        closeSync(fd);
      }
      const readOnly = existsSync(`/sys/block/${name}/ro`) && readFileSync(`/sys/block/${name}/ro`, "utf8").trim() === "1";
      return { device, readOnly, content: identifyDisk(head) };
    });
}

/** `--guest-worker`: serve's flags for the guest: its store on the CAS disk (nine tenths of it: ext4
 * needs room of its own), its runtime the mounted image. */
export function guestWorkerArgs(): string[] {
  const fs = statfsSync("/cas");
  const budget = Math.floor(fs.blocks * fs.bsize * 0.9);
  // The guest has no network: the Remote Asset API downloads through the host.
  return ["--listen", `unix:${WORKER_SOCKET}`, "--root", "/cas", "--runtime-root", "/runtimes", "--max-cas-size", String(budget), "--asset-downloads", `unix:${DOWNLOADS_SOCKET}`];
}
