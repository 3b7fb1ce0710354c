// google.bytestream.ByteStream for CAS blobs: Read, Write, QueryWriteStatus, plain and zstd; and Read
// of a running action's stdout and stderr by the stream names its operation carries.
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createZstdCompress, createZstdDecompress } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import {
  ByteStream,
  QueryWriteStatusResponseSchema,
  ReadResponseSchema,
  WriteResponseSchema,
  type QueryWriteStatusRequest,
  type ReadRequest,
  type ReadResponse,
  type WriteRequest,
  type WriteResponse,
} from "../gen/google/bytestream/bytestream_pb";
import { Code, StatusError, WireWriter } from "../core";
import { formatDigest, type BlobDigest, type BlobWriter } from "../cas";
import { followOutput } from "../exec";
import { READ_CHUNK_BYTES, type ServerContext } from "./context";
import { clientStreaming, serverStreaming, unary, type ResponseStream } from "./grpc-service";
import type { GrpcCall } from "../transport";
import { parseOutputStream, parseReadResource, parseWriteResource, type BlobResource } from "./resource-name";

/** How long an interrupted plain upload stays resumable (QueryWriteStatus + write_offset). */
const PARTIAL_UPLOAD_TTL_MS = 10 * 60 * 1000;

/** Thrown inside the upload loop when the blob appeared in the CAS meanwhile. */
class AlreadyStored extends Error {}

interface PartialUpload {
  writer: BlobWriter;
  busy: boolean;
  /** Cancels the expiry of an interrupted upload. */
  expiry?: () => void;
}

export function byteStreamService(ctx: ServerContext) {
  const { blobs, log } = ctx;
  const stored = async (d: BlobDigest) => (await blobs.findMissing([d])).length === 0;
  /** Plain uploads by resource name: the one in progress, or one interrupted and resumable. */
  const partials = new Map<string, PartialUpload>();

  function dropPartial(name: string) {
    const p = partials.get(name);
    if (!p) return;
    partials.delete(name);
    p.expiry?.();
    void p.writer.abort();
  }

  /** A running action's stdout or stderr, followed until it ends (then the rest from the CAS). */
  async function readOutput(req: ReadRequest, out: ResponseStream<ReadResponse>, operation: string, stream: "stdout" | "stderr") {
    const e = ctx.executor.find(operation);
    if (!e) throw new StatusError(Code.NOT_FOUND, `no operation named "${operation}" (finished long ago, or from before a restart)`);
    if (req.readOffset < 0n || req.readLimit < 0n) throw new StatusError(Code.OUT_OF_RANGE, "read_offset and read_limit must not be negative");
    const stop = new AbortController();
    out.call.onCancel(() => stop.abort());
    let left = req.readLimit === 0n ? Infinity : Number(req.readLimit);
    for await (const chunk of followOutput(e, blobs, [stream], { follow: true, offset: Number(req.readOffset), signal: stop.signal })) {
      if (out.cancelled) return;
      const data = chunk.length > left ? chunk.subarray(0, left) : chunk;
      await out.send(create(ReadResponseSchema, { data }));
      left -= data.length;
      if (left <= 0) return;
    }
  }

  async function read(req: ReadRequest, out: ResponseStream<ReadResponse>) {
    const output = parseOutputStream(req.resourceName);
    if (output) return readOutput(req, out, output.operation, output.stream);
    const res = parseReadResource(req.resourceName);
    const d = res.digest;
    if (req.readOffset < 0n || req.readOffset > BigInt(d.size)) {
      throw new StatusError(Code.OUT_OF_RANGE, `read_offset ${req.readOffset} is outside blob ${formatDigest(d)} of ${d.size} bytes`);
    }
    if (req.readLimit < 0n) throw new StatusError(Code.INVALID_ARGUMENT, `read_limit ${req.readLimit} is negative`);
    if (res.compression !== "identity" && req.readLimit !== 0n) {
      throw new StatusError(Code.INVALID_ARGUMENT, "read_limit must be 0 when reading compressed-blobs");
    }
    const limit = Number(req.readLimit > BigInt(d.size) ? BigInt(d.size) : req.readLimit);
    const reader = await blobs.read(d, { offset: Number(req.readOffset), limit, chunkBytes: READ_CHUNK_BYTES });
    if (!reader) throw new StatusError(Code.NOT_FOUND, `blob ${formatDigest(d)} is not in the CAS`);
    try {
      const chunks = res.compression === "zstd" ? rechunk(zstdCompressed(reader), READ_CHUNK_BYTES) : reader;
      for await (const chunk of chunks) {
        if (out.cancelled) return;
        await out.send(create(ReadResponseSchema, { data: chunk }));
        ctx.stats.count("bytesRead", chunk.length);
      }
      ctx.stats.count("blobsRead");
    } finally {
      await reader.close();
    }
  }

  async function write(requests: AsyncIterable<WriteRequest>, call: GrpcCall): Promise<WriteResponse> {
    // A client that goes away ends the iteration with CANCELLED: nothing waits for messages forever.
    const messages = requests[Symbol.asyncIterator]();
    const first = await messages.next();
    if (first.done) throw new StatusError(Code.INVALID_ARGUMENT, "Write stream had no messages");
    const name = first.value.resourceName;
    if (!name) throw new StatusError(Code.INVALID_ARGUMENT, "the first WriteRequest must carry resource_name");
    const res = parseWriteResource(name);
    const d = res.digest;
    const earlyFinish = () => create(WriteResponseSchema, { committedSize: res.compression === "identity" ? BigInt(d.size) : -1n });
    if (await stored(d)) return earlyFinish();

    const firstOffset = Number(first.value.writeOffset);
    const upload = await startUpload(name, res, firstOffset);
    let finished = false;
    let endedEarly = false;
    let expectedOffset = firstOffset;
    async function* payload(): AsyncGenerator<Uint8Array> {
      let msg: WriteRequest | undefined = first.value;
      while (msg) {
        if (finished) throw new StatusError(Code.INVALID_ARGUMENT, "WriteRequest after finish_write");
        if (msg.resourceName && msg.resourceName !== name) {
          throw new StatusError(Code.INVALID_ARGUMENT, `resource_name changed mid-stream from "${name}" to "${msg.resourceName}"`);
        }
        if (Number(msg.writeOffset) !== expectedOffset) {
          throw new StatusError(Code.INVALID_ARGUMENT, `write_offset ${msg.writeOffset} but ${expectedOffset} bytes were committed`);
        }
        expectedOffset += msg.data.length;
        finished = msg.finishWrite;
        if (msg.data.length > 0) yield msg.data;
        // Another upload of the same blob may have completed meanwhile: stop early, successfully.
        if (!finished && upload.writer.superseded) throw new AlreadyStored();
        const next = await messages.next();
        msg = next.done ? undefined : next.value;
      }
    }

    try {
      if (res.compression === "identity") {
        for await (const chunk of payload()) await upload.writer.write(chunk);
      } else {
        const sink = new Writable({
          write: (chunk: Uint8Array, _enc, cb) => void upload.writer.write(chunk).then(() => cb(), cb),
        });
        await pipeline(Readable.from(payload()), createZstdDecompress(), sink).catch((err) => {
          if (err instanceof StatusError || err instanceof AlreadyStored) throw err;
          throw new StatusError(Code.INVALID_ARGUMENT, `zstd data of ${name} does not decompress: ${err.message}`);
        });
      }
      if (!finished) {
        endedEarly = true;
        throw new StatusError(Code.INVALID_ARGUMENT, "Write stream ended without finish_write");
      }
      await upload.writer.commit();
      ctx.stats.count("blobsStored");
      ctx.stats.count("bytesStored", d.size);
      dropPartial(name);
      log.debug(`stored ${formatDigest(d)} (${res.compression})`);
      return create(WriteResponseSchema, { committedSize: BigInt(res.compression === "identity" ? d.size : expectedOffset) });
    } catch (err) {
      // The blob arrived by another upload meanwhile: success, unless this client's own bytes were wrong.
      const badContent = err instanceof StatusError && err.code === Code.INVALID_ARGUMENT && !endedEarly;
      if (err instanceof AlreadyStored || (!badContent && (await stored(d)))) {
        dropPartial(name);
        await upload.writer.abort();
        return earlyFinish();
      }
      // A plain upload the client broke off stays resumable for a while; on any other failure
      // (bad content, full disk) nothing of it is kept.
      const clientGone = call.cancelled || endedEarly || (err instanceof StatusError && err.code === Code.CANCELLED);
      const resumable = res.compression === "identity" && clientGone;
      if (resumable && partials.get(name) === upload) {
        upload.busy = false;
        upload.expiry = ctx.clock.after(PARTIAL_UPLOAD_TTL_MS, () => partials.get(name) === upload && dropPartial(name));
      } else {
        if (partials.get(name) === upload) partials.delete(name);
        await upload.writer.abort();
      }
      throw err;
    }
  }

  /** A writer for this stream: the interrupted upload when resuming at its committed size, else a fresh one. */
  async function startUpload(name: string, res: BlobResource, offset: number): Promise<PartialUpload> {
    const prior = partials.get(name);
    if (res.compression === "identity" && prior && !prior.busy && offset > 0 && offset === prior.writer.committedSize) {
      prior.expiry?.();
      prior.busy = true;
      return prior;
    }
    if (offset !== 0) {
      const committed = prior && !prior.busy ? prior.writer.committedSize : 0;
      throw new StatusError(Code.INVALID_ARGUMENT, `write_offset ${offset} does not match the ${committed} bytes committed for ${name}`);
    }
    const upload: PartialUpload = { writer: await blobs.beginWrite(res.digest), busy: true };
    if (res.compression === "identity") {
      // A concurrent stream with the same name keeps its own writer; only an idle one is replaced.
      if (prior && !prior.busy) dropPartial(name);
      if (!partials.has(name)) partials.set(name, upload);
    }
    return upload;
  }

  async function queryWriteStatus(req: QueryWriteStatusRequest) {
    const res = parseWriteResource(req.resourceName);
    if (await stored(res.digest)) {
      return create(QueryWriteStatusResponseSchema, { committedSize: BigInt(res.digest.size), complete: true });
    }
    const p = partials.get(req.resourceName);
    // Unknown uploads report 0 committed bytes, so a client simply starts over.
    const committed = p && !p.busy ? p.writer.committedSize : 0;
    return create(QueryWriteStatusResponseSchema, { committedSize: BigInt(committed), complete: false });
  }

  return {
    service: ByteStream,
    codecs: { read: { encode: (r: unknown) => encodeReadResponse(r as ReadResponse) } },
    handlers: {
      read: serverStreaming(ctx, "Read", read),
      write: clientStreaming(ctx, "Write", write),
      queryWriteStatus: unary(ctx, "QueryWriteStatus", queryWriteStatus),
    },
    close: () => [...partials.keys()].forEach(dropPartial),
  };
}

/** The zstd compression of a stream of bytes; an error of the source (DATA_LOSS) ends it with that error. */
function zstdCompressed(source: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  const zstd = createZstdCompress();
  const input = Readable.from(source);
  input.on("error", (err) => zstd.destroy(err));
  return input.pipe(zstd);
}

/** Regroups a byte stream into chunks of at most max bytes (zstd output can come in any size). */
async function* rechunk(source: AsyncIterable<Uint8Array>, max: number): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    for (let off = 0; off < chunk.length; off += max) yield chunk.subarray(off, off + max);
  }
}

/**
 * ReadResponse by hand: its one field (10, data) behind its tag and length, one copy of the chunk
 * (the generic writer copied a 1 MiB chunk into a growing buffer, then sliced it out again).
 */
function encodeReadResponse(r: ReadResponse): Buffer {
  if (r.data.length === 0) return Buffer.alloc(0);
  // Room for the chunk and its tag and length (and the writer's margin): it never grows.
  const out = new WireWriter(r.data.length + 16);
  out.field(10, r.data);
  return out.done();
}
