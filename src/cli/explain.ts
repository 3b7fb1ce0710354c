// `actiond explain TARGET|ACTION`: why a target's actions missed the cache, from a running server:
// which inputs (path, both digests), arguments, environment variables or platform properties
// differ from the run before, recorded for every executed action (kept across restarts).
import { SetupError } from "../core";
import { formatExplain, type ExplainedAction } from "../web";
import { UsageError } from "./flags";

export const EXPLAIN_HELP = `Usage: actiond explain [--json] [--address HOST:PORT] TARGET|ACTION

Says why the actions of a target (//pkg:name, as Bazel sent it) missed the cache: for each of its
actions (by mnemonic and first output) that ran here, what differed from the run before it: input
files (path, old and new digest), arguments, environment variables, platform properties. ACTION: an
action digest (or its first characters) of a recent execution. --json prints the records.
--address: the server's --listen (default 127.0.0.1:8980).
`;

export async function explain(argv: string[]): Promise<number> {
  let address = process.env.ACTIOND_ADDRESS || "127.0.0.1:8980";
  let json = false;
  let selector: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "-h" || a === "--help") {
      process.stdout.write(EXPLAIN_HELP);
      return 0;
    } else if (a === "--json") json = true;
    else if (a === "--address") address = argv[++i] ?? "";
    else if (a.startsWith("--address=")) address = a.slice("--address=".length);
    else if (a.startsWith("-")) throw new UsageError(`explain: unknown flag ${a} (try: actiond explain --help)`);
    else if (selector === undefined) selector = a;
    else throw new UsageError(`explain: one TARGET or ACTION, not also "${a}"`);
  }
  if (selector === undefined) throw new UsageError("explain: which target? (actiond explain //pkg:name)");
  if (!/^[^:]+:\d+$|^\[.+\]:\d+$/.test(address)) throw new UsageError(`explain: --address "${address}" is not HOST:PORT`);
  const url = `http://${address}/api/explain?${new URLSearchParams({ for: selector })}`;
  let actions: ExplainedAction[];
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    actions = (await res.json()) as ExplainedAction[];
  } catch (err) {
    throw new SetupError(`no actiond answers at ${address} (${url}: ${(err as Error).message}); is it running? (--address)`);
  }
  process.stdout.write(json ? `${JSON.stringify(actions, null, 2)}\n` : formatExplain(selector, actions));
  return actions.length > 0 ? 0 : 1;
}
