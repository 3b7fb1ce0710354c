// google.bytestream.ByteStream for CAS blobs: Read, Write, QueryWriteStatus, plain and zstd.
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createZstdCompress, createZstdDecompress } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import type { ServerReadableStream, ServerWritableStream } from "@grpc/grpc-js";
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
import { parseReadResource, parseWriteResource, type BlobResource } from "../cas/resource-name";
import type { BlobWriter } from "../cas/disk-cas";
import { formatDigest, newHasher } from "../cas/digest";
import { READ_CHUNK_BYTES, type ServerContext } from "./context";
import { clientStreaming, send, serverStreaming, unary } from "./grpc-service";
import { Code, StatusError } from "./status";

/** How long an interrupted plain upload stays resumable (QueryWriteStatus + write_offset). */
const PARTIAL_UPLOAD_TTL_MS = 10 * 60 * 1000;

/** Thrown inside the upload loop when the blob appeared in the CAS meanwhile. */
class AlreadyStored extends Error {}

interface PartialUpload {
  writer: BlobWriter;
  busy: boolean;
  expiry?: Timer;
}

export function byteStreamService(ctx: ServerContext) {
  const { cas, log } = ctx;
  /** Plain uploads by resource name: the one in progress, or one interrupted and resumable. */
  const partials = new Map<string, PartialUpload>();

  function dropPartial(name: string) {
    const p = partials.get(name);
    if (!p) return;
    partials.delete(name);
    clearTimeout(p.expiry);
    void p.writer.abort();
  }

  async function read(req: ReadRequest, call: ServerWritableStream<ReadRequest, ReadResponse>) {
    const res = parseReadResource(req.resourceName);
    const d = res.digest;
    if (req.readOffset < 0n || req.readOffset > BigInt(d.size)) {
      throw new StatusError(Code.OUT_OF_RANGE, `read_offset ${req.readOffset} is outside blob ${formatDigest(d)} of ${d.size} bytes`);
    }
    if (req.readLimit < 0n) throw new StatusError(Code.INVALID_ARGUMENT, `read_limit ${req.readLimit} is negative`);
    if (res.compression !== "identity" && req.readLimit !== 0n) {
      throw new StatusError(Code.INVALID_ARGUMENT, "read_limit must be 0 when reading compressed-blobs");
    }
    const unpin = cas.pin(d);
    const fh = await cas.openForRead(d).catch((err) => {
      unpin();
      throw err;
    });
    if (!fh) {
      unpin();
      throw new StatusError(Code.NOT_FOUND, `blob ${formatDigest(d)} is not in the CAS`);
    }
    try {
      const start = Number(req.readOffset);
      const end = req.readLimit === 0n ? d.size : Math.min(d.size, start + Number(req.readLimit));
      const source =
        end > start
          ? fh.createReadStream({ start, end: end - 1, highWaterMark: READ_CHUNK_BYTES, autoClose: false })
          : Readable.from([]);
      // A whole-blob read is checked against its digest on the way; damage is DATA_LOSS, not silence.
      const hasher = start === 0 && end === d.size ? await newHasher(d.fn) : undefined;
      let chunks: AsyncIterable<Uint8Array> = source;
      if (res.compression === "zstd") {
        if (hasher) source.on("data", (chunk: Uint8Array) => hasher.update(chunk));
        chunks = source.pipe(createZstdCompress());
      }
      for await (const chunk of rechunk(chunks, READ_CHUNK_BYTES)) {
        if (call.cancelled) {
          source.destroy();
          return;
        }
        if (hasher && res.compression === "identity") hasher.update(chunk);
        await send(call, create(ReadResponseSchema, { data: chunk }));
        ctx.stats.count("bytesRead", chunk.length);
      }
      ctx.stats.count("blobsRead");
      if (hasher && hasher.digestHex() !== d.hash) {
        cas.discardDamaged(d);
        throw new StatusError(Code.DATA_LOSS, `blob ${formatDigest(d)} was damaged on disk and has been removed; upload it again`);
      }
    } finally {
      await fh.close();
      unpin();
    }
  }

  async function write(call: ServerReadableStream<WriteRequest, WriteResponse>): Promise<WriteResponse> {
    const messages = call[Symbol.asyncIterator]() as AsyncIterator<WriteRequest>;
    // A client that goes away must not leave us waiting for messages forever.
    call.on("cancelled", () => call.destroy(new StatusError(Code.CANCELLED, "client cancelled the upload")));
    const first = await messages.next();
    if (first.done) throw new StatusError(Code.INVALID_ARGUMENT, "Write stream had no messages");
    const name = first.value.resourceName;
    if (!name) throw new StatusError(Code.INVALID_ARGUMENT, "the first WriteRequest must carry resource_name");
    const res = parseWriteResource(name);
    const d = res.digest;
    const earlyFinish = () => create(WriteResponseSchema, { committedSize: res.compression === "identity" ? BigInt(d.size) : -1n });
    if (cas.has(d)) return earlyFinish();

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
        if (!finished && cas.contains(d)) throw new AlreadyStored();
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
      if (err instanceof AlreadyStored || (cas.has(d) && !badContent)) {
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
        upload.expiry = setTimeout(() => partials.get(name) === upload && dropPartial(name), PARTIAL_UPLOAD_TTL_MS);
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
      clearTimeout(prior.expiry);
      prior.busy = true;
      return prior;
    }
    if (offset !== 0) {
      const committed = prior && !prior.busy ? prior.writer.committedSize : 0;
      throw new StatusError(Code.INVALID_ARGUMENT, `write_offset ${offset} does not match the ${committed} bytes committed for ${name}`);
    }
    const upload: PartialUpload = { writer: await cas.beginWrite(res.digest), busy: true };
    if (res.compression === "identity") {
      // A concurrent stream with the same name keeps its own writer; only an idle one is replaced.
      if (prior && !prior.busy) dropPartial(name);
      if (!partials.has(name)) partials.set(name, upload);
    }
    return upload;
  }

  async function queryWriteStatus(req: QueryWriteStatusRequest) {
    const res = parseWriteResource(req.resourceName);
    if (cas.has(res.digest)) {
      return create(QueryWriteStatusResponseSchema, { committedSize: BigInt(res.digest.size), complete: true });
    }
    const p = partials.get(req.resourceName);
    // Unknown uploads report 0 committed bytes, so a client simply starts over.
    const committed = p && !p.busy ? p.writer.committedSize : 0;
    return create(QueryWriteStatusResponseSchema, { committedSize: BigInt(committed), complete: false });
  }

  return {
    service: ByteStream,
    handlers: {
      read: serverStreaming(ctx, "Read", read),
      write: clientStreaming(ctx, "Write", write),
      queryWriteStatus: unary(ctx, "QueryWriteStatus", queryWriteStatus),
    },
    close: () => [...partials.keys()].forEach(dropPartial),
  };
}

/** Regroups a byte stream into chunks of at most max bytes (zstd output can come in any size). */
async function* rechunk(source: AsyncIterable<Uint8Array>, max: number): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    for (let off = 0; off < chunk.length; off += max) yield chunk.subarray(off, off + max);
  }
}
