// Flags, the one way every command takes settings: each flag has one default and one environment
// variable, ACTIOND_<FLAG> (--max-cas-size: ACTIOND_MAX_CAS_SIZE), and --help lists both. A flag on
// the command line wins over the variable, the variable over the default. Unknown flags and bad
// values are one-line errors (exit 2).
import { parseArgs } from "node:util";

/** A mistake on the command line (or in an ACTIOND_ variable): one line, exit 2. */
export class UsageError extends Error {}

export interface Flag<T> {
  readonly kind: "value" | "boolean" | "list";
  /** What the value is, in --help ("SIZE", "FILE"); "" for a boolean. */
  readonly arg: string;
  readonly help: string;
  /** The default as a user would type it, for --help. */
  readonly shownDefault?: string;
  /** The value from what was given (undefined: nothing was), or a UsageError naming `where`. */
  read(given: string[] | undefined, where: string): T;
}

/** A flag with a value and a default. */
export function value<T>(arg: string, help: string, opts: { default: string | (() => string); parse: (text: string, where: string) => T }): Flag<T> {
  const fallback = () => (typeof opts.default === "function" ? opts.default() : opts.default);
  return {
    kind: "value",
    arg,
    help,
    get shownDefault() {
      return fallback();
    },
    read: (given, where) => opts.parse(given?.at(-1) ?? fallback(), where),
  };
}

/** A flag with a value and no default value (undefined when not given); `shown` says what happens then, for --help. */
export function optional<T>(arg: string, help: string, parse: (text: string, where: string) => T, shown?: string): Flag<T | undefined> {
  return { kind: "value", arg, help, shownDefault: shown, read: (given, where) => (given?.length ? parse(given.at(-1)!, where) : undefined) };
}

/** A repeatable flag; its variable holds the values separated by ":". */
export function list<T>(arg: string, help: string, parse: (text: string, where: string) => T): Flag<T[]> {
  return { kind: "list", arg, help, read: (given, where) => (given ?? []).map((t) => parse(t, where)) };
}

/** An on/off flag; its variable is 1/true or 0/false. */
export function toggle(help: string): Flag<boolean> {
  return { kind: "boolean", arg: "", help, shownDefault: undefined, read: (given) => given?.at(-1) === "true" };
}

export type FlagTable = Record<string, Flag<unknown>>;
export type FlagValues<F extends FlagTable> = { [K in keyof F]: F[K] extends Flag<infer T> ? T : never };

/** ACTIOND_ plus the flag's name in capitals, dashes as underscores. */
function envName(flag: string): string {
  return `ACTIOND_${flag.toUpperCase().replaceAll("-", "_")}`;
}

/** Parses argv (and the ACTIOND_ variables in env) against a command's flags; "help" for -h/--help. */
export function parseFlags<F extends FlagTable>(command: string, flags: F, argv: string[], env: Record<string, string | undefined> = process.env): FlagValues<F> | "help" {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = { help: { type: "boolean", short: "h" } };
  for (const [name, f] of Object.entries(flags)) options[name] = { type: f.kind === "boolean" ? "boolean" : "string", multiple: true };
  let values: Record<string, unknown>;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    // node's messages are multi-line with hints; keep the first sentence.
    const msg = (err as Error).message.split("\n")[0]!.replace(/\. To specify.*$/, "");
    throw new UsageError(`${command}: ${msg}`);
  }
  if (values.help) return "help";
  const out: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(flags)) {
    let given = values[name] as (string | boolean)[] | undefined;
    let where = `${command}: --${name}`;
    const fromEnv = env[envName(name)];
    if (given === undefined && fromEnv !== undefined && fromEnv !== "") {
      where = `${command}: $${envName(name)}`;
      if (f.kind === "boolean") {
        if (!/^(1|true|0|false)$/i.test(fromEnv)) throw new UsageError(`${where} "${fromEnv}" is not 1, true, 0 or false`);
        given = [/^(1|true)$/i.test(fromEnv)];
      } else given = f.kind === "list" ? fromEnv.split(":") : [fromEnv];
    }
    out[name] = f.read(given?.map(String), where);
  }
  return out as FlagValues<F>;
}

/** The flags part of a command's --help: each flag, what it means, its default and its variable. */
export function flagsHelp(flags: FlagTable): string {
  const rows = Object.entries(flags).map(([name, f]) => {
    const left = `  --${name}${f.arg ? ` ${f.arg}` : ""}`;
    const notes = [f.shownDefault !== undefined ? `default ${f.shownDefault}` : undefined, f.kind === "list" ? "repeatable" : undefined, `$${envName(name)}`].filter(Boolean);
    return { left, text: `${f.help} (${notes.join("; ")})` };
  });
  const width = Math.max(...rows.map((r) => r.left.length)) + 2;
  const lines = rows.map((r) => `${r.left.padEnd(width)}${wrap(r.text, 100 - width).join(`\n${"".padEnd(width)}`)}`);
  return [...lines, `${"  -h, --help".padEnd(width)}show this help`].join("\n");
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line];
}

/** A whole number of at least 1. */
export function positiveInteger(text: string, where: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${where} "${text}" is not a positive whole number`);
  return n;
}

/** One of a few words. */
export function oneOf<const W extends string>(words: readonly W[]) {
  return (text: string, where: string): W => {
    if (!words.includes(text as W)) throw new UsageError(`${where} "${text}" is not one of ${words.join(", ")}`);
    return text as W;
  };
}
