// The gRPC client for an upstream cache (`--upstream`): the Remote the upstream tier talks to,
// over grpc-js with the same generated descriptors as the server. Every call carries the
// configured headers and a deadline; a transfer's deadline grows with the blob's size.
import * as grpc from "@grpc/grpc-js";
import { Readable } from "node:stream";
import { createZstdCompress, createZstdDecompress } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import {
  ActionCache,
  Capabilities,
  ContentAddressableStorage,
  Compressor_Value,
  DigestFunction_Value,
  type ActionResult,
  type BatchReadBlobsResponse,
  type FindMissingBlobsResponse,
  type ServerCapabilities,
  ActionResultSchema,
  BatchReadBlobsRequestSchema,
  BatchUpdateBlobsRequestSchema,
  type BatchUpdateBlobsResponse,
  FindMissingBlobsRequestSchema,
  GetActionResultRequestSchema,
  GetCapabilitiesRequestSchema,
  UpdateActionResultRequestSchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { ByteStream, ReadRequestSchema, WriteRequestSchema, type ReadResponse } from "../gen/google/bytestream/bytestream_pb";
import { Code, StatusError, type Logger } from "../core";
import { formatDigest, functionValue, toWire, type BlobDigest, type DigestFunctionName } from "../cas";
import type { Remote, RemoteLimits } from "../upstream";
import { grpcServiceDefinition } from "./grpc-client";
import { startRelay, type Relay } from "./upstream-relay";

export interface UpstreamOptions {
  /** grpc://HOST:PORT or grpcs://HOST:PORT. */
  url: string;
  /** PEM roots for grpcs:// instead of the system's. */
  caFile?: string;
  /** Sent with every call (tokens). */
  headers: readonly [string, string][];
  instance: string;
  /** Deadline of a call; a transfer gets as much again per 16 MiB. */
  timeoutMs: number;
}

const WRITE_CHUNK = 1024 * 1024;
const DEFAULT_BATCH_BYTES = 4 * 1024 * 1024 - 1024;
const MESSAGE_LIMIT = 64 * 1024 * 1024;

type Client = grpc.Client & Record<string, any>;

export type UpstreamTarget = { host: string; port: number; tls: boolean } | { socket: string; authority: string };

/**
 * Splits grpc://HOST:PORT (grpcs:// for TLS; [v6]:PORT) into its parts; the error names what is
 * wrong. unix:/PATH?authority=HOST:PORT is an upstream already relayed (serve-vm's guest reaches the
 * host's relay so): no relay of its own, and the upstream's name as :authority.
 */
export function parseUpstreamUrl(url: string): UpstreamTarget {
  const relayed = /^unix:(\/[^?]+)\?authority=(\S+)$/.exec(url);
  if (relayed) return { socket: relayed[1]!, authority: relayed[2]! };
  const m = /^(grpcs?):\/\/(?:\[([^\]]+)\]|([^/:]+)):(\d{1,5})\/?$/.exec(url);
  if (!m || Number(m[4]) > 65535) throw new Error(`"${url}" is not grpc://HOST:PORT or grpcs://HOST:PORT`);
  return { host: m[2] ?? m[3]!, port: Number(m[4]), tls: m[1] === "grpcs" };
}

/** HOST:PORT as :authority names it. */
export const upstreamAuthority = (to: { host: string; port: number }) => `${to.host.includes(":") ? `[${to.host}]` : to.host}:${to.port}`;

export class UpstreamClient implements Remote {
  readonly address: string;
  private readonly cas: Client;
  private readonly ac: Client;
  private readonly caps: Client;
  private readonly bs: Client;
  private readonly metadata: grpc.Metadata;
  /** Whether streams travel zstd-compressed: the upstream said it takes and sends them (Capabilities). */
  private zstd = false;

  /** Connects (lazily, on the first call) through a relay of its own; see upstream-relay.ts. */
  static async open(opts: UpstreamOptions, log: Logger): Promise<UpstreamClient> {
    const to = parseUpstreamUrl(opts.url);
    if ("socket" in to) return new UpstreamClient(opts, { target: `unix:${to.socket}`, close() {} }, to.authority);
    return new UpstreamClient(opts, await startRelay({ ...to, caFile: opts.caFile }, log), upstreamAuthority(to));
  }

  private constructor(
    private readonly opts: UpstreamOptions,
    private readonly relay: Relay,
    authority: string,
  ) {
    this.address = opts.url;
    // TLS, when asked for, is the relay's; the upstream still sees its own name as :authority.
    const creds = grpc.credentials.createInsecure();
    const channel = { "grpc.max_receive_message_length": MESSAGE_LIMIT, "grpc.max_send_message_length": MESSAGE_LIMIT, "grpc.default_authority": authority };
    const make = (service: Parameters<typeof grpcServiceDefinition>[0]) =>
      new (grpc.makeGenericClientConstructor(grpcServiceDefinition(service), service.name))(relay.target, creds, channel) as Client;
    this.cas = make(ContentAddressableStorage);
    this.ac = make(ActionCache);
    this.caps = make(Capabilities);
    this.bs = make(ByteStream);
    this.metadata = new grpc.Metadata();
    for (const [name, value] of opts.headers) this.metadata.add(name, value);
  }

  close(): void {
    for (const c of [this.cas, this.ac, this.caps, this.bs]) c.close();
    this.relay.close();
  }

  async capabilities(): Promise<RemoteLimits> {
    const caps: ServerCapabilities = await this.unary(this.caps, "getCapabilities", create(GetCapabilitiesRequestSchema, { instanceName: this.opts.instance }));
    const c = caps.cacheCapabilities;
    const fns: DigestFunctionName[] = [];
    for (const f of c?.digestFunctions ?? []) {
      if (f === DigestFunction_Value.SHA256) fns.push("sha256");
      if (f === DigestFunction_Value.BLAKE3) fns.push("blake3");
    }
    const maxBatch = Number(c?.maxBatchTotalSizeBytes ?? 0n);
    this.zstd = c?.supportedCompressors.includes(Compressor_Value.ZSTD) ?? false;
    return {
      maxBatchBytes: maxBatch > 0 ? Math.min(maxBatch, DEFAULT_BATCH_BYTES) : DEFAULT_BATCH_BYTES,
      digestFunctions: fns.length > 0 ? fns : ["sha256"],
      acceptsResults: c?.actionCacheUpdateCapabilities?.updateEnabled ?? false,
      compressed: this.zstd,
    };
  }

  async findMissing(digests: readonly BlobDigest[]): Promise<BlobDigest[]> {
    if (digests.length === 0) return [];
    const fn = digests[0]!.fn;
    const res: FindMissingBlobsResponse = await this.unary(
      this.cas,
      "findMissingBlobs",
      create(FindMissingBlobsRequestSchema, { instanceName: this.opts.instance, blobDigests: digests.map(toWire), digestFunction: this.wireFn(fn) }),
    );
    const asked = new Map(digests.map((d) => [`${d.hash}/${d.size}`, d]));
    // Only digests we asked about count: an answer naming others is ignored.
    return res.missingBlobDigests.flatMap((m) => asked.get(`${m.hash}/${m.sizeBytes}`) ?? []);
  }

  async getActionResult(action: BlobDigest): Promise<ActionResult | undefined> {
    try {
      return await this.unary(this.ac, "getActionResult", create(GetActionResultRequestSchema, { instanceName: this.opts.instance, actionDigest: toWire(action), digestFunction: this.wireFn(action.fn), inlineStdout: false, inlineStderr: false }));
    } catch (err) {
      if (err instanceof StatusError && err.code === Code.NOT_FOUND) return undefined;
      throw err;
    }
  }

  async updateActionResult(action: BlobDigest, result: ActionResult): Promise<void> {
    await this.unary(this.ac, "updateActionResult", create(UpdateActionResultRequestSchema, { instanceName: this.opts.instance, actionDigest: toWire(action), actionResult: create(ActionResultSchema, result), digestFunction: this.wireFn(action.fn) }));
  }

  async batchRead(digests: readonly BlobDigest[]): Promise<Map<BlobDigest, Uint8Array>> {
    const out = new Map<BlobDigest, Uint8Array>();
    if (digests.length === 0) return out;
    const res: BatchReadBlobsResponse = await this.unary(
      this.cas,
      "batchReadBlobs",
      create(BatchReadBlobsRequestSchema, { instanceName: this.opts.instance, digests: digests.map(toWire), digestFunction: this.wireFn(digests[0]!.fn) }),
      digests.reduce((n, d) => n + d.size, 0),
    );
    const asked = new Map(digests.map((d) => [`${d.hash}/${d.size}`, d]));
    for (const r of res.responses) {
      const d = r.digest && asked.get(`${r.digest.hash}/${r.digest.sizeBytes}`);
      if (d && (r.status?.code ?? 0) === Code.OK) out.set(d, r.data);
    }
    return out;
  }

  async batchUpdate(blobs: readonly { digest: BlobDigest; data: Uint8Array }[]): Promise<void> {
    if (blobs.length === 0) return;
    const res: BatchUpdateBlobsResponse = await this.unary(
      this.cas,
      "batchUpdateBlobs",
      create(BatchUpdateBlobsRequestSchema, {
        instanceName: this.opts.instance,
        requests: blobs.map((b) => ({ digest: toWire(b.digest), data: b.data })),
        digestFunction: this.wireFn(blobs[0]!.digest.fn),
      }),
      blobs.reduce((n, b) => n + b.data.length, 0),
    );
    const failed = res.responses.filter((r) => (r.status?.code ?? 0) !== Code.OK);
    if (failed.length > 0) {
      const first = failed[0]!;
      throw new StatusError(first.status!.code as Code, `${failed.length} of ${blobs.length} blobs were refused, the first (${first.digest?.hash}/${first.digest?.sizeBytes}): ${first.status!.message}`);
    }
  }

  async *read(d: BlobDigest): AsyncIterable<Uint8Array> {
    const zstd = this.zstd && d.size > 0;
    const call: grpc.ClientReadableStream<ReadResponse> = this.bs.read(
      create(ReadRequestSchema, { resourceName: this.resource(zstd ? "compressed-blobs/zstd" : "blobs", d), readOffset: 0n, readLimit: 0n }),
      this.metadata,
      { deadline: this.deadline(d.size) },
    );
    const data = async function* () {
      for await (const msg of call) yield (msg as ReadResponse).data;
    };
    try {
      // Decompressed as it comes; the caller's writer stops a stream that grows past the digest's size.
      if (zstd) yield* Readable.from(data()).pipe(createZstdDecompress());
      else yield* data();
    } catch (err) {
      throw asStatusError(err, `reading ${formatDigest(d)} from ${this.address}`);
    } finally {
      call.cancel();
    }
  }

  async write(d: BlobDigest, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    const zstd = this.zstd && d.size > 0;
    const resourceName = this.resource(`uploads/${crypto.randomUUID()}/${zstd ? "compressed-blobs/zstd" : "blobs"}`, d);
    // Compressed, the stream's length is known only at its end: the last message then finishes it, empty.
    const body: AsyncIterable<Uint8Array> = zstd ? Readable.from(chunks).pipe(createZstdCompress()) : chunks;
    await new Promise<void>((resolve, reject) => {
      const call: grpc.ClientWritableStream<unknown> = this.bs.write(this.metadata, { deadline: this.deadline(d.size) }, (err: grpc.ServiceError | null) =>
        err ? reject(asStatusError(err, `writing ${formatDigest(d)} to ${this.address}`)) : resolve(),
      );
      let ended = false;
      call.once("status", () => (ended = true));
      const send = async () => {
        let offset = 0;
        for await (const chunk of body) {
          for (let at = 0; at < chunk.length && !ended; at += WRITE_CHUNK) {
            const piece = chunk.subarray(at, at + WRITE_CHUNK);
            const finishWrite = !zstd && offset + piece.length === d.size;
            const msg = create(WriteRequestSchema, { resourceName: offset === 0 ? resourceName : "", writeOffset: BigInt(offset), data: piece, finishWrite });
            offset += piece.length;
            if (!call.write(msg)) await new Promise((r) => (call.once("drain", r), call.once("status", r)));
          }
        }
        if (offset === 0 || zstd) call.write(create(WriteRequestSchema, { resourceName: offset === 0 ? resourceName : "", writeOffset: BigInt(offset), finishWrite: true }));
        call.end();
      };
      send().catch((err) => {
        call.cancel();
        reject(err);
      });
    });
  }

  private resource(kind: string, d: BlobDigest): string {
    const fn = d.fn === "sha256" ? "" : `${d.fn}/`;
    return `${this.opts.instance ? `${this.opts.instance}/` : ""}${kind}/${fn}${d.hash}/${d.size}`;
  }

  private wireFn(fn: DigestFunctionName): DigestFunction_Value {
    // SHA-256 is what every REAPI server assumes when the field is unset; older ones reject it set.
    return fn === "sha256" ? DigestFunction_Value.UNKNOWN : functionValue(fn);
  }

  /** A call's deadline: the timeout, and as much again per 16 MiB it moves. */
  private deadline(bytes = 0): Date {
    return new Date(Date.now() + this.opts.timeoutMs * (1 + Math.floor(bytes / (16 * 2 ** 20))));
  }

  private unary<T>(client: Client, method: string, req: unknown, bytes = 0): Promise<T> {
    return new Promise((resolve, reject) =>
      client[method](req, this.metadata, { deadline: this.deadline(bytes) }, (err: grpc.ServiceError | null, res: T) =>
        err ? reject(asStatusError(err, `${method} on ${this.address}`)) : resolve(res),
      ),
    );
  }
}

function asStatusError(err: unknown, what: string): StatusError {
  if (err instanceof StatusError) return err;
  const e = err as grpc.ServiceError;
  const code = typeof e?.code === "number" ? (e.code as number as Code) : Code.UNKNOWN;
  return new StatusError(code, `${what}: ${e?.details || e?.message || String(err)}`, { cause: err });
}
