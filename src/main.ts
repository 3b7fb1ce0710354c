#!/usr/bin/env bun
// actiond: command dispatch only.
import { SERVE_HELP, parseServeFlags, serve } from "./cli/serve";
import { FatalError, UsageError, parseFlags } from "./cli/usage";
import pkg from "../package.json" with { type: "json" };

const HELP = `Usage: actiond <command> [flags]

A local Remote Execution API (REAPI v2) worker and cache for Bazel.

Commands:
  serve      run Bazel's actions in a Linux sandbox, with the CAS and action cache on disk
             (see: actiond serve --help)
  version    print the version
  help       show this help
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(HELP);
      return 0;
    case "serve": {
      const opts = parseServeFlags(rest);
      if (opts === "help") {
        process.stdout.write(SERVE_HELP);
        return 0;
      }
      await serve(opts);
      return 0;
    }
    case "version":
    case "--version": {
      const { values } = parseFlags("version", rest, {});
      if (values.help) {
        process.stdout.write("Usage: actiond version\n\nPrint the version of actiond and of the Bun runtime.\n");
        return 0;
      }
      process.stdout.write(`actiond ${pkg.version} (bun ${Bun.version}, ${process.platform}-${process.arch})\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}" (try: actiond --help)`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof UsageError) {
      process.stderr.write(`actiond: ${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof FatalError) {
      process.stderr.write(`actiond: ${err.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`actiond: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
