// Checking an action before it may wait in line: its Action, Command and whole input tree are read
// and validated, so a malformed action is INVALID_ARGUMENT and every missing blob is listed in one
// FAILED_PRECONDITION, before any slot or disk space is spent on it.
import { ActionSchema, CommandSchema, Command_OutputDirectoryFormat, type Action, type Command } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { Code, StatusError, missingBlobsError } from "../core";
import { formatDigest, fromWire, missingSubject, type BlobDigest, type BlobStore } from "../cas";
import type { Runtime, RuntimeSet } from "../runtime";
import type { ResourceLimits } from "../sandbox";
import { normalizeInside, readInputTree, type InputTree } from "./input-tree";
import type { MessageCache } from "./message-cache";
import type { OutputRequest } from "./outputs";
import { parsePlatform, type PlatformRequest } from "./platform";

/** The longest Action.timeout (and --default-timeout) accepted: one day. */
export const MAX_TIMEOUT_MS = 24 * 60 * 60 * 1000;

/** An action checked before queueing: everything needed to run it. */
export interface PreparedAction {
  digest: BlobDigest;
  action: Action;
  command: Command;
  tree: InputTree;
  workingDirectory: string;
  outputs: OutputRequest;
  timeoutMs: number;
  runtime: Runtime;
  limits: ResourceLimits;
  /** Platform properties accepted without meaning anything here. */
  ignoredProperties: PlatformRequest["ignored"];
}

export interface PrepareContext {
  blobs: BlobStore;
  messages: MessageCache;
  runtimes: RuntimeSet;
  defaultTimeoutMs: number;
  /** Refuse platform properties actiond does not know (--strict-platform). */
  strictPlatform: boolean;
}

export async function prepareAction(ctx: PrepareContext, digest: BlobDigest): Promise<PreparedAction> {
  const action = await load(ctx, ActionSchema, digest, "action");
  const command = await load(ctx, CommandSchema, fromWire(digest.fn, action.commandDigest, "Action.command_digest"), "command");
  checkCommand(command);
  const platform = parsePlatform(action.platform, command.platform, ctx.strictPlatform);
  const runtime = ctx.runtimes.pick(platform.libc);
  if (!runtime) {
    const known = ctx.runtimes.runtimes.map((r) => r.libc).join(", ");
    throw new StatusError(Code.INVALID_ARGUMENT, `platform property libc="${platform.libc}": no such runtime here (available: ${known})`);
  }
  if (!(command.outputDirectoryFormat in Command_OutputDirectoryFormat)) {
    throw new StatusError(Code.INVALID_ARGUMENT, `Command.output_directory_format ${command.outputDirectoryFormat} is not one of TREE_ONLY, DIRECTORY_ONLY, TREE_AND_DIRECTORY`);
  }
  const tree = await readInputTree(ctx.blobs, ctx.messages, digest.fn, action.inputRootDigest);
  const workingDirectory = normalizeInside(command.workingDirectory, "working_directory");
  const outputPath = (p: string) => ({ name: p, execPath: normalizeInside(p, "output path", workingDirectory) });
  const outputs: OutputRequest = {
    paths: command.outputPaths.map(outputPath),
    files: command.outputFiles.map(outputPath),
    directories: command.outputDirectories.map(outputPath),
    directoryFormat: command.outputDirectoryFormat,
  };
  const timeoutMs = timeoutOf(action, ctx.defaultTimeoutMs);
  return { digest, action, command, tree, workingDirectory, outputs, timeoutMs, runtime, limits: platform.limits, ignoredProperties: platform.ignored };
}

async function load<D extends DescMessage>(ctx: PrepareContext, schema: D, d: BlobDigest, what: string): Promise<MessageShape<D>> {
  const message = await ctx.messages.get(schema, d);
  if (!message) throw missingBlobsError(`the ${what} ${formatDigest(d)} is not in the CAS`, [missingSubject(d)]);
  return message;
}

/** Arguments and environment reach execve: NUL cannot be in them, nor "=" in a variable's name. */
function checkCommand(command: Command): void {
  if (command.arguments.length === 0) throw new StatusError(Code.INVALID_ARGUMENT, "Command.arguments is empty");
  command.arguments.forEach((a, i) => {
    if (a.includes("\0")) throw new StatusError(Code.INVALID_ARGUMENT, `Command.arguments[${i}] contains a NUL byte`);
  });
  for (const { name, value } of command.environmentVariables) {
    if (name === "" || name.includes("=") || name.includes("\0") || value.includes("\0")) {
      throw new StatusError(Code.INVALID_ARGUMENT, `environment variable "${name}" is not valid (empty name, "=" in the name, or a NUL byte)`);
    }
  }
}

function timeoutOf(action: Action, defaultMs: number): number {
  if (!action.timeout) return defaultMs;
  const ms = Number(action.timeout.seconds) * 1000 + Math.floor(action.timeout.nanos / 1e6);
  if (ms <= 0) throw new StatusError(Code.INVALID_ARGUMENT, "Action.timeout must be positive");
  // REAPI: a timeout above the server's maximum MUST be rejected.
  if (ms > MAX_TIMEOUT_MS) throw new StatusError(Code.INVALID_ARGUMENT, `Action.timeout ${ms / 1000}s is above this server's maximum of ${MAX_TIMEOUT_MS / 1000}s`);
  return ms;
}
