// `actiond status`: what a running server is doing, in the terminal (one screen), from its
// /api/status on the gRPC port; --json prints the snapshot itself, for scripts.
import { SetupError } from "../core";
import { formatStatus, type StatusSnapshot } from "../web";
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
  const url = `http://${opts.address}/api/status`;
  let snapshot: StatusSnapshot;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    snapshot = (await res.json()) as StatusSnapshot;
  } catch (err) {
    throw new SetupError(`no actiond answers at ${opts.address} (${url}: ${(err as Error).message}); is it running? (--address)`);
  }
  process.stdout.write(opts.json ? `${JSON.stringify(snapshot, null, 2)}\n` : formatStatus(snapshot));
  return 0;
}
