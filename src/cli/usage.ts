// Command-line parsing shared by every command: unknown flags and bad values are one-line errors (exit 2).
import { parseArgs, type ParseArgsConfig } from "node:util";

export class UsageError extends Error {}

/** A failure the user can act on, printed as one line (exit 1). */
export class FatalError extends Error {}

export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(command: string, argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals: false });
  } catch (err) {
    // node's messages are multi-line with hints; keep the first sentence.
    const msg = (err as Error).message.split("\n")[0]!.replace(/\. To specify.*$/, "");
    throw new UsageError(`${command}: ${msg}`);
  }
}
