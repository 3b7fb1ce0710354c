// serve-vm's host half: it owns the TCP listener and the guest's lifecycle, nothing else. Each client
// connection becomes a stream to the guest's gRPC port. Ready means the guest's worker answered a
// call through the same link (from a listener of the probe's own), not that a socket opened.
// Connections made while the guest boots, or boots again after it stopped, wait for it (a login-time
// serve-vm and a build started at once is the common case); only a guest that does not come up turns
// them away, with UNAVAILABLE saying why. A stop signal shuts the guest down cleanly, so its CAS
// disk needs no repair next time.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { controlPort, isLoopback, readFirstBytes, SetupError, SHUTDOWN_COMMAND, speaks, startProgress, Teardown, type Logger, type VmState } from "../core";
import type { GuestConfig, HypervisorDriver, RunningGuest } from "./driver";
import { refuseCalls } from "./refusal";

export interface VmHostOptions {
  listen: { host: string; port: number };
  /** --root, for the log. */
  root: string;
  driver: HypervisorDriver;
  guest: GuestConfig;
  /** How long a guest may take to answer its first call. */
  startTimeoutMs: number;
  log: Logger;
  /** Whether a REAPI server answers at an address within a time: the readiness check (rpc's GetCapabilities). */
  answers: (address: string, timeoutMs: number) => Promise<boolean>;
  /** Resolves (with the signal's name) when serve-vm is asked to stop. */
  stop: Promise<string>;
  /**
   * The status page's host side, given how to see the guest: it takes each HTTP/1.1 connection from
   * this machine (the guest's own page and API behind it, the guest's state beside them).
   */
  front?: (view: VmView) => VmFront;
}

export interface VmView {
  state(): VmState;
  /** An address on this machine that reaches the guest's port directly (while it runs). */
  guestAddress: string;
  ready(): boolean;
}

export interface VmFront {
  take(socket: Socket, first: Buffer): void;
  close(): void;
}

/** How long to wait for a guest to take the shutdown request, and then to stop. */
const SHUTDOWN_ASK_MS = 10_000;
const SHUTDOWN_STOP_MS = 60_000;
/** Between readiness calls while a guest boots. */
const READY_POLL_MS = 250;
/** Connections that may wait for a booting guest; more are turned away at once. */
const MAX_WAITING = 1024;

export async function runVmHost(opts: VmHostOptions): Promise<void> {
  const { log, guest: cfg, driver } = opts;
  const teardown = new Teardown();
  let stopping = false;
  // The latest guest, booting or running, and whether it answers yet. Client connections join it
  // once it does; until then they wait (paused: what they send stays in the socket).
  let guest: RunningGuest | undefined;
  let ready = false;
  const sockets = new Set<Socket>();
  const waiting = new Set<Socket>();
  const join = (client: Socket) => {
    sockets.add(client);
    client.once("close", () => sockets.delete(client));
    guest!.link.join(client, cfg.guestPort);
    client.resume();
  };
  const vm = { state: "booting" as VmState["state"], sinceMs: Date.now(), boots: 0, restarts: 0, readySeconds: undefined as number | undefined };
  const setState = (state: VmState["state"]) => {
    vm.state = state;
    vm.sinceMs = Date.now();
  };
  let front: VmFront | undefined;
  // The first bytes tell a gRPC client (to the guest, or waiting for it) from a browser (the host's front).
  const listener = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (client) => {
    if (stopping) return void client.destroy();
    client.on("error", () => {});
    readFirstBytes(client, (first) => {
      const kind = speaks(first);
      if (kind === "http1" && front && isLoopback(client.remoteAddress)) return front.take(client, first);
      if (kind !== "h2") return void client.destroy();
      client.unshift(first);
      grpcClient(client);
    });
  });
  const grpcClient = (client: Socket) => {
    if (stopping) return void client.destroy();
    if (ready && guest?.running()) return join(client);
    if (waiting.size >= MAX_WAITING) return void refuseCalls(client, `the VM guest is still booting and ${MAX_WAITING} connections already wait for it; try again shortly`);
    waiting.add(client);
    client.once("close", () => waiting.delete(client));
  };
  const onReady = () => {
    ready = true;
    for (const client of waiting) join(client);
    waiting.clear();
  };
  /** Answers every waiting connection's calls with UNAVAILABLE and why; resolves once they are closed. */
  const turnAway = async (why: string) => {
    const refused = [...waiting].map((client) => refuseCalls(client, why));
    waiting.clear();
    await Promise.all(refused);
  };
  // The readiness probe's own way in: straight to the booting guest, past the waiting line.
  const probeListener = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    if (!guest?.running()) return void client.destroy();
    guest.link.join(client, cfg.guestPort);
  });
  await new Promise<void>((res, rej) => {
    listener.once("error", (err) => rej(new SetupError(`cannot listen on ${opts.listen.host}:${opts.listen.port}: ${(err as Error).message}`)));
    listener.listen(opts.listen.port, opts.listen.host, () => res());
  });
  await new Promise<void>((res) => probeListener.listen(0, "127.0.0.1", () => res()));
  // Undone in reverse: the guest is shut down last, once no client can reach it.
  teardown.defer("the guest", () => guest && shutDownGuest(guest, cfg.guestPort, log));
  teardown.defer("client connections", async () => {
    sockets.forEach((s) => s.destroy());
    await turnAway("actiond serve-vm is stopping");
  });
  teardown.defer("the listener", () => listener.close());
  teardown.defer("the readiness probe's listener", () => probeListener.close());
  const port = (listener.address() as { port: number }).port;
  const address = `${opts.listen.host.includes(":") ? `[${opts.listen.host}]` : opts.listen.host}:${port}`;
  const probeAddress = `127.0.0.1:${(probeListener.address() as { port: number }).port}`;
  front = opts.front?.({
    guestAddress: probeAddress,
    ready: () => ready && !!guest?.running(),
    state: () => ({
      state: vm.state,
      since: new Date(vm.sinceMs).toISOString(),
      how: guest?.how ?? "",
      cpus: cfg.cpus,
      memoryMib: cfg.memoryMib,
      boots: vm.boots,
      restarts: vm.restarts,
      readySeconds: vm.readySeconds,
      waiting: waiting.size,
      console: guest?.console ?? "",
      consoleTail: guest ? consoleTail(guest.console, 20).split("\n") : [],
    }),
  });
  teardown.defer("the status page's front", () => front?.close());
  log.info(`listening on ${address}; connections wait while the guest boots`);

  const stopped = opts.stop.then(() => undefined);
  /** Why the last boot failed, in a sentence for the clients turned away. */
  let bootFailure: string | undefined;
  const failure = (err: unknown) => `actiond serve-vm: ${bootFailure ?? `the VM guest did not come up: ${(err as Error).message.split("\n")[0]}`}`;
  /** Boots a guest and waits until it answers; undefined if a stop signal came first. */
  const boot = async (): Promise<RunningGuest | undefined> => {
    const started = performance.now();
    const g = await driver.boot(cfg);
    guest = g;
    vm.boots++;
    vm.readySeconds = undefined;
    if (g.warning) log.warn(g.warning);
    log.info(`guest booting (${g.how}, ${cfg.cpus} CPUs, ${cfg.memoryMib} MiB); console: ${g.console}`);
    // A first boot formats the CAS disk and takes a while under emulation: say what it is doing.
    const progress = startProgress(`booting the VM guest (${g.how})`, undefined, log);
    const step = () => progress.update(0, guestStep(g.console));
    const answered = await Promise.race([untilAnswering(probeAddress, opts, g, step), stopped]).finally(() => progress.end());
    if (answered === undefined) return undefined;
    if (!answered) {
      const why = g.running() ? `did not answer within ${opts.startTimeoutMs} ms (--start-timeout-ms)` : `stopped while booting (${g.failure() ?? "no reason given"})`;
      g.kill();
      bootFailure = `the VM guest ${why}; its console: ${g.console}`;
      throw new SetupError(`the guest ${why}; the last of its console (${g.console}):\n${consoleTail(g.console)}`);
    }
    vm.readySeconds = (performance.now() - started) / 1000;
    log.info(`guest ready in ${vm.readySeconds.toFixed(1)} s`);
    setState("ready");
    onReady();
    return g;
  };

  let current: RunningGuest | undefined;
  try {
    current = await boot();
  } catch (err) {
    await turnAway(failure(err));
    await teardown.run(log);
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
        ready = false;
        vm.restarts++;
        setState("rebooting");
        for (const s of sockets) s.destroy();
        log.warn(`the guest stopped (exit ${code}); booting it again. Its console: ${current.console}\n${consoleTail(current.console)}`);
        try {
          current = await boot();
        } catch (err) {
          log.error((err as Error).message);
          await turnAway(failure(err));
          process.kill(process.pid, "SIGTERM");
          return;
        }
      }
    })();
  }

  const signal = await opts.stop;
  stopping = true;
  setState("stopping");
  log.info(`${signal}: shutting the guest down`);
  // A second signal: do not wait for the guest any longer.
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => guest?.kill());
  await teardown.run(log);
  log.info("stopped");
}

/** Calls the guest's worker through our own listener until it answers, the guest stops, or time is up. */
async function untilAnswering(address: string, opts: VmHostOptions, g: RunningGuest, onPoll: () => void): Promise<boolean> {
  const deadline = Date.now() + opts.startTimeoutMs;
  while (Date.now() < deadline && g.running()) {
    onPoll();
    if (await opts.answers(address, 5000)) return true;
    await Bun.sleep(READY_POLL_MS);
  }
  return false;
}

/** Asks the guest to stop its worker and unmount its disks, and waits for it; stops it at once if
 * it cannot be asked (still booting, or gone) or does not stop in time. */
async function shutDownGuest(g: RunningGuest, guestPort: number, log: Logger): Promise<void> {
  if (!g.running()) return;
  const timeout = (ms: number) => new Promise<"timeout">((res) => setTimeout(() => res("timeout"), ms).unref());
  const answer = await Promise.race([g.link.request(controlPort(guestPort), `${SHUTDOWN_COMMAND}\n`).catch((err: Error) => err.message), timeout(SHUTDOWN_ASK_MS)]);
  if (answer.trim() !== "ok") {
    log.warn(`the guest could not be asked to shut down (${answer.trim()}); stopping it`);
    g.kill();
  } else if ((await Promise.race([g.exited, timeout(SHUTDOWN_STOP_MS)])) === "timeout") {
    log.warn(`the guest did not stop within ${SHUTDOWN_STOP_MS / 1000} s; stopping it (its CAS disk may need a journal replay next time)`);
    g.kill();
  }
  await g.exited;
}

/** What a booting guest is doing, from its console: its init's latest line, else the kernel's start. */
function guestStep(consoleLog: string): string {
  let text = "";
  try {
    text = readTail(consoleLog, 16 * 1024);
  } catch {
    return "starting";
  }
  const said = [...text.matchAll(/actiond guest: ([^\r\n]*)/g)].at(-1)?.[1];
  return said ? said.slice(0, 100) : text.length > 0 ? "the kernel is starting" : "starting";
}

function consoleTail(path: string, lines = 15): string {
  try {
    // The console log only grows while the guest runs: its end is enough.
    const text = readTail(path, 64 * 1024);
    return text.trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no console log)";
  }
}

function readTail(path: string, bytes: number): string {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const b = Buffer.alloc(Math.min(size, bytes));
    readSync(fd, b, 0, b.length, size - b.length);
    return b.toString("utf8");
  } finally {
    closeSync(fd);
  }
}
