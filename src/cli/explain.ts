// `actiond explain TARGET|ACTION`: why a target's actions missed the cache, from a running server:
// which inputs (path, both digests), arguments, environment variables or platform properties
// differ from the run before, recorded for every executed action (kept across restarts).
import { SetupError } from "../core";
import { formatExplain, type ExplainedAction } from "../web";
import { parseClientArgs } from "./client-args";
import { UsageError } from "./flags";

export const EXPLAIN_HELP = `Usage: actiond explain [--json] [--address HOST:PORT] TARGET|ACTION

Says why the actions of a target (//pkg:name, as Bazel sent it) missed the cache: for each of its
actions (by mnemonic and first output) that ran here, what differed from the run before it: input
files (path, old and new digest), arguments, environment variables, platform properties. ACTION: an
action digest (or its first characters) of a recent execution. --json prints the records.
--address: the server's --listen (default 127.0.0.1:8980).
`;

export async function explain(argv: string[]): Promise<number> {
  const args = parseClientArgs("explain", argv, { json: undefined });
  if (args === "help") {
    process.stdout.write(EXPLAIN_HELP);
    return 0;
  }
  const { address, selector } = args;
  const json = args.on.has("json");
  if (selector === undefined) throw new UsageError("explain: which target? (actiond explain //pkg:name)");
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
