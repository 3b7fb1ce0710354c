// `actiond status`: what a running server is doing, in the terminal (one screen), from its
// /api/status on the gRPC port; --json prints the snapshot itself, for scripts.
import { SetupError, type VmState } from "../core";
import { formatStatus, formatVm, type StatusSnapshot } from "../web";
import { flagsHelp, parseFlags, toggle, value } from "./flags";

const STATUS_FLAGS = {
  address: value("HOST:PORT", "the server's --listen address (or its --status-listen)", { default: "127.0.0.1:8980", parse: (text) => text }),
  json: toggle("print the status as JSON"),
};

export const STATUS_HELP = `Usage: actiond status [flags]

Prints what a running actiond is doing: actions running and queued, the cache's hits and misses,
the store against its budget, the upstream.

Flags (each also read from its environment variable; a flag given wins):
${flagsHelp(STATUS_FLAGS)}`;

export async function status(argv: string[]): Promise<number> {
  const opts = parseFlags("status", STATUS_FLAGS, argv);
  if (opts === "help") {
    process.stdout.write(STATUS_HELP);
    return 0;
  }
  const base = `http://${opts.address}`;
  // Under serve-vm the host answers /api/vm, also while the guest boots (then /api/status cannot).
  const vm = await fetch(`${base}/api/vm`, { signal: AbortSignal.timeout(10_000) })
    .then(async (r) => (r.ok ? ((await r.json()) as VmState) : undefined))
    .catch(() => undefined);
  let snapshot: StatusSnapshot | undefined;
  try {
    const res = await fetch(`${base}/api/status`, { signal: AbortSignal.timeout(10_000) });
    if (res.ok) snapshot = (await res.json()) as StatusSnapshot;
    else if (!vm) throw new Error(`HTTP ${res.status}`);
  } catch (err) {
    throw new SetupError(`no actiond answers at ${opts.address} (${base}/api/status: ${(err as Error).message}); is it running? (--address)`);
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(vm ? { vm, status: snapshot } : snapshot, null, 2)}\n`);
  else process.stdout.write((vm ? formatVm(vm) : "") + (snapshot ? formatStatus(snapshot) : ""));
  return 0;
}
