// `actiond logs [-f] [TARGET|ACTION]`: an action's stdout and stderr from a running server, from any
// terminal: the running one the argument names (a target label, or an action digest or its start),
// else the latest; -f follows it as it writes, until it ends.
import { SetupError } from "../core";
import { parseClientArgs } from "./client-args";

export const LOGS_HELP = `Usage: actiond logs [-f] [--address HOST:PORT] [TARGET|ACTION]

Prints an action's stdout and stderr: the running action a target label (//pkg:name) or an action
digest (or its first characters) names, else the latest. With -f (--follow), follows a running
action as it writes, until it ends. --address: the server's --listen (default 127.0.0.1:8980).
`;

export async function logs(argv: string[]): Promise<number> {
  const args = parseClientArgs("logs", argv, { follow: "f" });
  if (args === "help") {
    process.stdout.write(LOGS_HELP);
    return 0;
  }
  const { address, selector } = args;
  const follow = args.on.has("follow");
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
