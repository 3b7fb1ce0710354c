// The arguments of the commands that ask a running server (explain, logs): --address HOST:PORT
// (default $ACTIOND_ADDRESS, else 127.0.0.1:8980), on/off switches of the command's own, and at
// most one TARGET or ACTION. flags.ts takes no positionals, so these have their own small parser.
import { UsageError } from "./flags";

export interface ClientArgs {
  address: string;
  /** The switches given, by their long name. */
  on: Set<string>;
  selector?: string;
}

/** "help" for -h/--help. `switches`: long name → its short form, if any. */
export function parseClientArgs(command: string, argv: string[], switches: Record<string, string | undefined>): ClientArgs | "help" {
  const out: ClientArgs = { address: process.env.ACTIOND_ADDRESS || "127.0.0.1:8980", on: new Set() };
  const short = new Map<string, string>(Object.entries(switches).flatMap(([name, s]) => (s ? [[`-${s}`, name] as [string, string]] : [])));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "-h" || a === "--help") return "help";
    if (a === "--address") out.address = argv[++i] ?? "";
    else if (a.startsWith("--address=")) out.address = a.slice("--address=".length);
    else if (a.startsWith("--") && a.slice(2) in switches) out.on.add(a.slice(2));
    else if (short.has(a)) out.on.add(short.get(a)!);
    else if (a.startsWith("-")) throw new UsageError(`${command}: unknown flag ${a} (try: actiond ${command} --help)`);
    else if (out.selector === undefined) out.selector = a;
    else throw new UsageError(`${command}: one TARGET or ACTION at most, not also "${a}"`);
  }
  if (!/^[^:]+:\d+$|^\[.+\]:\d+$/.test(out.address)) throw new UsageError(`${command}: --address "${out.address}" is not HOST:PORT`);
  return out;
}
