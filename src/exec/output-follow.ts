// An execution's stdout and stderr as they are written: while it runs, the files its sandbox writes
// are read as they grow (a quarter second apart, like tail -f); once it has finished, what the files
// had not shown comes from the CAS (the result's stdout/stderr blobs), and the stream ends. Shared by
// `actiond logs` (/api/logs) and REAPI's stdout_stream_name / stderr_stream_name (ByteStream Read).
import { open } from "node:fs/promises";
import type { Digest } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError } from "../core";
import { fromWire, type BlobStore } from "../cas";
import type { Execution } from "./executions";

const FOLLOW_EVERY_MS = 250;
/** Streams following running actions at once, in this process (each reads a file four times a second). */
export const MAX_FOLLOWERS = 256;
let following = 0;
const CHUNK = 64 * 1024;

export type OutputStream = "stdout" | "stderr";

export interface FollowOptions {
  /** Wait for more while it runs (else: what is there now, then the end). */
  follow: boolean;
  /** Bytes of each stream to skip (a ByteStream read_offset). */
  offset?: number;
  /** Ends the stream early (the reader went away). */
  signal?: AbortSignal;
}

/** Up to CHUNK new bytes of path from offset on (none when it is gone: the action finished and its folder went). */
async function readFrom(path: string, offset: number): Promise<Uint8Array> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch {
    return new Uint8Array(0);
  }
  try {
    const { bytesRead, buffer } = await fh.read(Buffer.allocUnsafe(CHUNK), 0, CHUNK, offset);
    return buffer.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * The named streams of e, in the order their bytes appear (each stream's bytes in order). Throws
 * RESOURCE_EXHAUSTED at once when MAX_FOLLOWERS already follow running actions.
 */
export function followOutput(e: Execution, blobs: BlobStore, streams: readonly OutputStream[], opts: FollowOptions): AsyncGenerator<Uint8Array> {
  const follows = opts.follow && !e.done;
  if (follows && following >= MAX_FOLLOWERS) {
    throw new StatusError(Code.RESOURCE_EXHAUSTED, `${following} streams already follow running actions here (at most ${MAX_FOLLOWERS}); try again once some have ended`);
  }
  return (async function* () {
    if (follows) following++;
    try {
      yield* follow(e, blobs, streams, opts);
    } finally {
      if (follows) following--;
    }
  })();
}

async function* follow(e: Execution, blobs: BlobStore, streams: readonly OutputStream[], opts: FollowOptions): AsyncGenerator<Uint8Array> {
  const sent = streams.map(() => opts.offset ?? 0);
  // Not a watcher: a reader of its output does not keep an action alive that nobody waits for.
  const done = e.ended;
  const stopped = new Promise<void>((resolve) => opts.signal?.addEventListener("abort", () => resolve(), { once: true }));
  while (!e.done && !opts.signal?.aborted) {
    const live = e.liveOutput;
    let fresh = 0;
    for (const [i, s] of streams.entries()) {
      if (!live) break;
      for (;;) {
        const b = await readFrom(live[s], sent[i]!);
        if (b.length === 0 || e.done) break;
        sent[i]! += b.length;
        fresh += b.length;
        yield b;
      }
    }
    if (!opts.follow) return;
    // Nothing new (or queued, not started yet): wait for more, or for the end.
    if (fresh === 0) await Promise.race([done, stopped, Bun.sleep(FOLLOW_EVERY_MS)]);
  }
  const r = e.response?.result;
  for (const [i, s] of streams.entries()) {
    if (opts.signal?.aborted) return;
    const raw = s === "stdout" ? r?.stdoutRaw : r?.stderrRaw;
    const digest: Digest | undefined = s === "stdout" ? r?.stdoutDigest : r?.stderrDigest;
    if (raw && raw.length > 0) {
      if (raw.length > sent[i]!) yield raw.subarray(sent[i]!);
      continue;
    }
    if (!digest || digest.sizeBytes <= BigInt(sent[i]!)) continue;
    const reader = await blobs.read(fromWire(e.action.fn, digest, s), { offset: sent[i]!, limit: 0, chunkBytes: CHUNK });
    if (!reader) continue; // gone from the CAS: what was shown is what there is
    try {
      for await (const chunk of reader) {
        if (opts.signal?.aborted) return;
        yield chunk;
      }
    } finally {
      await reader.close();
    }
  }
}
