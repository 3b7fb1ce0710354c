// Builds REAPI actions for tests (input trees, commands, actions, all uploaded), runs them with
// Execute/WaitExecution over real gRPC, and reads their results back.
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import {
  ActionSchema,
  BatchUpdateBlobsRequestSchema,
  CommandSchema,
  Command_OutputDirectoryFormat,
  DirectorySchema,
  ExecuteOperationMetadataSchema,
  ExecuteRequestSchema,
  ExecuteResponseSchema,
  Execution,
  TreeSchema,
  WaitExecutionRequestSchema,
  type ActionResult,
  type Digest,
  type Directory,
  type ExecuteOperationMetadata,
  type ExecuteResponse,
  type Tree,
} from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Operations, type Operation } from "../../src/gen/google/longrunning/operations_pb";
import { grpcServiceDefinition } from "../../src/rpc";
import { ReapiClient, serviceClient, sha256 } from "./client";

/** An input tree: path → file contents, { content, executable }, { symlink: target }, or { dir: true }. */
export type InputSpec = Record<string, string | { content: string; executable?: boolean } | { symlink: string } | { dir: true }>;

export interface ActionSpec {
  args: string[];
  env?: Record<string, string>;
  inputs?: InputSpec;
  outputFiles?: string[];
  outputDirectories?: string[];
  outputPaths?: string[];
  workingDirectory?: string;
  platform?: Record<string, string>;
  /** Put the platform in Command.platform only (older clients). */
  platformInCommandOnly?: boolean;
  timeoutSeconds?: number;
  doNotCache?: boolean;
  /** Makes otherwise identical actions distinct (Action.salt). */
  salt?: string;
  /** Command.output_directory_format (REAPI 2.8). */
  outputDirectoryFormat?: Command_OutputDirectoryFormat;
}

export const DEFAULT_ENV = { PATH: "/usr/bin:/bin" };

/** Encodes a message, remembers it as a blob to upload, and returns its digest. */
class Blobs {
  readonly all = new Map<string, Uint8Array>();
  add(bytes: Uint8Array): Digest {
    const d = sha256(bytes);
    this.all.set(d.hash, bytes);
    return d;
  }
}

function buildTree(spec: InputSpec, blobs: Blobs): Digest {
  type Node = { files: Map<string, { content: string; executable: boolean }>; dirs: Map<string, Node>; links: Map<string, string> };
  const node = (): Node => ({ files: new Map(), dirs: new Map(), links: new Map() });
  const root = node();
  for (const [path, v] of Object.entries(spec)) {
    const parts = path.split("/");
    const name = parts.pop()!;
    let at = root;
    for (const p of parts) {
      if (!at.dirs.has(p)) at.dirs.set(p, node());
      at = at.dirs.get(p)!;
    }
    if (typeof v === "string") at.files.set(name, { content: v, executable: false });
    else if ("symlink" in v) at.links.set(name, v.symlink);
    else if ("dir" in v) at.dirs.set(name, at.dirs.get(name) ?? node());
    else at.files.set(name, { content: v.content, executable: v.executable ?? false });
  }
  const sorted = <T>(m: Map<string, T>) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const encode = (n: Node): Digest => {
    const dir = create(DirectorySchema, {
      files: sorted(n.files).map(([name, f]) => {
        const data = new TextEncoder().encode(f.content);
        return { name, digest: blobs.add(data), isExecutable: f.executable };
      }),
      directories: sorted(n.dirs).map(([name, child]) => ({ name, digest: encode(child) })),
      symlinks: sorted(n.links).map(([name, target]) => ({ name, target })),
    });
    return blobs.add(toBinary(DirectorySchema, dir));
  };
  return encode(root);
}

/** Builds the action's blobs; nothing is uploaded. */
export function buildAction(spec: ActionSpec): { action: Digest; blobs: Map<string, Uint8Array>; inputRoot: Digest; command: Digest } {
  const blobs = new Blobs();
  const platform = spec.platform
    ? { properties: Object.entries(spec.platform).sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, value]) => ({ name, value })) }
    : undefined;
  const command = blobs.add(
    toBinary(
      CommandSchema,
      create(CommandSchema, {
        arguments: spec.args,
        environmentVariables: Object.entries(spec.env ?? DEFAULT_ENV)
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([name, value]) => ({ name, value })),
        outputFiles: spec.outputFiles ?? [],
        outputDirectories: spec.outputDirectories ?? [],
        outputPaths: spec.outputPaths ?? [],
        workingDirectory: spec.workingDirectory ?? "",
        platform,
        outputDirectoryFormat: spec.outputDirectoryFormat,
      }),
    ),
  );
  const inputRoot = buildTree(spec.inputs ?? {}, blobs);
  const action = blobs.add(
    toBinary(
      ActionSchema,
      create(ActionSchema, {
        commandDigest: command,
        inputRootDigest: inputRoot,
        timeout: spec.timeoutSeconds ? { seconds: BigInt(Math.floor(spec.timeoutSeconds)), nanos: Math.round((spec.timeoutSeconds % 1) * 1e9) } : undefined,
        doNotCache: spec.doNotCache ?? false,
        salt: spec.salt ? new TextEncoder().encode(spec.salt) : new Uint8Array(0),
        platform: spec.platformInCommandOnly ? undefined : platform,
      }),
    ),
  );
  return { action, blobs: blobs.all, inputRoot, command };
}

export async function uploadBlobs(client: ReapiClient, blobs: Map<string, Uint8Array>, skip: (hash: string) => boolean = () => false): Promise<void> {
  const requests = [...blobs.entries()].filter(([h]) => !skip(h)).map(([, data]) => ({ digest: sha256(data), data }));
  if (requests.length === 0) return;
  await client.unary(client.cas, "batchUpdateBlobs", BatchUpdateBlobsRequestSchema, { requests });
}

/** Builds and uploads an action; returns its digest. */
export async function prepareAction(client: ReapiClient, spec: ActionSpec): Promise<Digest> {
  const built = buildAction(spec);
  await uploadBlobs(client, built.blobs);
  return built.action;
}

export interface DecodedOperation {
  op: Operation;
  meta: ExecuteOperationMetadata;
  response?: ExecuteResponse;
}

export function decodeOperation(op: Operation): DecodedOperation {
  const meta = anyUnpack(op.metadata!, ExecuteOperationMetadataSchema)!;
  const response = op.result.case === "response" ? anyUnpack(op.result.value, ExecuteResponseSchema) : undefined;
  return { op, meta, response };
}

export function executionClient(address: string): grpc.Client & Record<string, any> {
  const Ctor = grpc.makeGenericClientConstructor(grpcServiceDefinition(Execution), "Execution");
  return new Ctor(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
}

/** A google.longrunning.Operations client. */
export function operationsClient(address: string) {
  return serviceClient(Operations, address);
}

/** Streams Execute; onOperation sees each message; resolves with them all when the stream ends. */
export function execute(
  exec: grpc.Client & Record<string, any>,
  init: MessageInitShape<typeof ExecuteRequestSchema>,
  onOperation?: (o: DecodedOperation, call: grpc.ClientReadableStream<Operation>) => void,
): Promise<DecodedOperation[]> {
  return stream(exec.execute(create(ExecuteRequestSchema, init)), onOperation);
}

export function waitExecution(exec: grpc.Client & Record<string, any>, name: string, onOperation?: (o: DecodedOperation) => void): Promise<DecodedOperation[]> {
  return stream(exec.waitExecution(create(WaitExecutionRequestSchema, { name })), onOperation);
}

function stream(call: grpc.ClientReadableStream<Operation>, onOperation?: (o: DecodedOperation, call: grpc.ClientReadableStream<Operation>) => void): Promise<DecodedOperation[]> {
  return new Promise((resolve, reject) => {
    const out: DecodedOperation[] = [];
    call.on("data", (op: Operation) => {
      const d = decodeOperation(op);
      out.push(d);
      onOperation?.(d, call);
    });
    call.on("error", (err: grpc.ServiceError) => (err.code === grpc.status.CANCELLED ? resolve(out) : reject(err)));
    call.on("end", () => resolve(out));
  });
}

/** Runs an action to completion and returns the final ExecuteResponse (asserting the stream's shape). */
export async function run(client: ReapiClient, exec: grpc.Client & Record<string, any>, spec: ActionSpec, extra: { skipCacheLookup?: boolean; inlineStdout?: boolean; inlineStderr?: boolean; inlineOutputFiles?: string[] } = {}) {
  const action = await prepareAction(client, spec);
  const ops = await execute(exec, { ...extra, actionDigest: action });
  const last = ops.at(-1);
  if (!last?.op.done || !last.response) throw new Error(`Execute ended without a done operation: ${JSON.stringify(ops.map((o) => o.meta.stage))}`);
  return { action, ops, response: last.response, result: last.response.result };
}

/** Reads a blob back as text. */
export async function text(client: ReapiClient, d: Digest | undefined): Promise<string> {
  if (!d) throw new Error("no digest");
  if (d.sizeBytes === 0n) return "";
  const { data } = await client.read(`blobs/${d.hash}/${d.sizeBytes}`);
  return new TextDecoder().decode(data);
}

export async function stdout(client: ReapiClient, result: ActionResult | undefined): Promise<string> {
  return text(client, result?.stdoutDigest);
}

export async function stderr(client: ReapiClient, result: ActionResult | undefined): Promise<string> {
  return text(client, result?.stderrDigest);
}

export async function readTree(client: ReapiClient, d: Digest | undefined): Promise<Tree> {
  if (!d) throw new Error("no tree digest");
  const { data } = await client.read(`blobs/${d.hash}/${d.sizeBytes}`);
  return fromBinary(TreeSchema, data);
}

export type { Directory };
