#!/usr/bin/env bun
// actiond: command dispatch only.
import { SetupError } from "./core";
import { guestInit, guestWorkerArgs } from "./guest";
import { doctor, explain, logs, parseFlags, parseServeFlags, parseServeVmFlags, serve, SERVE_HELP, SERVE_VM_HELP, serveVm, status, UsageError, VERSION_HELP, versionText } from "./cli";

const HELP = `Usage: actiond <command> [flags]

A local Remote Execution API (REAPI v2) worker and cache for Bazel.

Commands:
  serve      run Bazel's actions in a Linux sandbox, with the CAS and action cache on disk
             (see: actiond serve --help)
  serve-vm   the same, in a small Linux VM (QEMU on Linux; macOS's Virtualization.framework: not yet)
  status     what a running actiond is doing (the page: http://127.0.0.1:8980/; /metrics too)
  logs       an action's stdout and stderr, live with -f (actiond logs -f //pkg:target)
  explain    why a target's actions missed the cache (actiond explain //pkg:target)
  doctor     check what this machine allows, and what to do for what it does not
  version    print the version and the assets this executable carries
  help       show this help

Every flag can also be set with an environment variable: --max-cas-size with ACTIOND_MAX_CAS_SIZE.
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
      const help = parseFlags("version", {}, rest) === "help";
      process.stdout.write(help ? VERSION_HELP : await versionText());
      return 0;
    }
    case "doctor":
      return doctor(rest);
    case "status":
      return status(rest);
    case "logs":
      return logs(rest);
    case "explain":
      return explain(rest);
    // Inside the VM guest only: started by its /init, and by --guest-init.
    case "--guest-init":
      return guestInit();
    case "--guest-worker": {
      const opts = parseServeFlags([...guestWorkerArgs(), ...rest]);
      if (opts === "help") return 0;
      await serve(opts);
      return 0;
    }
    case "serve-vm": {
      const opts = parseServeVmFlags(rest);
      if (opts === "help") {
        process.stdout.write(SERVE_VM_HELP);
        return 0;
      }
      await serveVm(opts);
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}" (try: actiond --help)`);
  }
}

// `actiond version | head -1` closes the pipe early; that is not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof UsageError) {
      process.stderr.write(`actiond: ${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof SetupError) {
      process.stderr.write(`actiond: ${err.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`actiond: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
