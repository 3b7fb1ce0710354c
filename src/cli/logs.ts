// `actiond logs [-f] [TARGET|ACTION]`: an action's stdout and stderr from a running server, from any
// terminal: the running one the argument names (a target label, or an action digest or its start),
// else the latest; -f follows it as it writes, until it ends.
import { SetupError } from "../core";
import { UsageError } from "./flags";

export const LOGS_HELP = `Usage: actiond logs [-f] [--address HOST:PORT] [TARGET|ACTION]

Prints an action's stdout and stderr: the running action a target label (//pkg:name) or an action
digest (or its first characters) names, else the latest. With -f (--follow), follows a running
action as it writes, until it ends. --address: the server's --listen (default 127.0.0.1:8980).
`;

export async function logs(argv: string[]): Promise<number> {
  let follow = false;
  let address = process.env.ACTIOND_ADDRESS || "127.0.0.1:8980";
  let selector: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "-h" || a === "--help") {
      process.stdout.write(LOGS_HELP);
      return 0;
    } else if (a === "-f" || a === "--follow") follow = true;
    else if (a === "--address") address = argv[++i] ?? "";
    else if (a.startsWith("--address=")) address = a.slice("--address=".length);
    else if (a.startsWith("-")) throw new UsageError(`logs: unknown flag ${a} (try: actiond logs --help)`);
    else if (selector === undefined) selector = a;
    else throw new UsageError(`logs: one TARGET or ACTION at most, not also "${a}"`);
  }
  if (!/^[^:]+:\d+$|^\[.+\]:\d+$/.test(address)) throw new UsageError(`logs: --address "${address}" is not HOST:PORT`);
  const url = `http://${address}/api/logs?${new URLSearchParams({ ...(selector ? { for: selector } : {}), ...(follow ? { follow: "1" } : {}) })}`;
  let res: Response;
  try {
    res = await fetch(url);
  } catch (err) {
    throw new SetupError(`no actiond answers at ${address} (${(err as Error).message}); is it running? (--address)`);
  }
  if (res.status === 404) {
    process.stderr.write(`actiond: ${(await res.text()).trim()}\n`);
    return 1;
  }
  if (!res.ok || !res.body) throw new SetupError(`${url}: HTTP ${res.status}`);
  const target = decodeURIComponent(res.headers.get("x-target") ?? "");
  process.stderr.write(`actiond: ${target || "(no target)"} (action ${res.headers.get("x-action")})\n`);
  for await (const chunk of res.body) process.stdout.write(chunk);
  return 0;
}
