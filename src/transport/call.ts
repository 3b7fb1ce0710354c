// One gRPC call on an HTTP/2 stream (the gRPC over HTTP/2 protocol): request headers and deadline,
// length-prefixed messages both ways, the status in trailers. Messages stay bytes here; decoding
// them is the services' business.
import { Code, StatusError } from "../core";
import type { H2Stream, StreamEvents } from "./connection";
import { encodeHeaders, type HeaderList } from "./hpack";
import { BIG_MESSAGE_BYTES, type MessageBudget } from "./message-budget";

/** A call's outcome as it goes on the wire. */
export interface WireStatus {
  code: Code;
  message: string;
  /** A google.rpc.Status, for grpc-status-details-bin. */
  details?: Uint8Array;
}

/** The biggest message either way (a full batch call, with room for protobuf's overhead). */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** Complete messages a streaming handler has not taken yet, before the client is made to wait. */
const QUEUE_HIGH_WATER = 1024 * 1024;
/** grpc-message is cut to this: it is for people, and trailers must stay small. */
const MAX_STATUS_MESSAGE = 4096;

const RESPONSE_HEADERS = encodeHeaders([
  [":status", "200"],
  ["content-type", "application/grpc"],
]);

export class GrpcCall implements StreamEvents {
  cancelled = false;
  private readonly cancelListeners = new Set<() => void>();
  private responded = false;
  private finished = false;

  /** Complete request messages not yet taken. */
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  /** Window credit held back while the queue is over its mark. */
  private owed = 0;
  /** The message being assembled: its 5-byte prefix, then its bytes. */
  private prefix = Buffer.alloc(5);
  private prefixFill = 0;
  private message: Buffer | undefined;
  private messageFill = 0;
  private ended = false;
  /** Budget bytes held: for the messages queued or being assembled, and for those handed out. */
  private heldForQueue = 0;
  private heldForHandler = 0;
  /** A big message's bytes so far, while it waits for the budget (see admitted()). */
  private waitingBytes: Buffer[] | undefined;
  private waitingLength = 0;
  private waitingOwed = 0;
  private wake: (() => void) | undefined;
  private drained: (() => void) | undefined;
  private deadline: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly stream: H2Stream,
    private readonly headers: Map<string, string>,
    private readonly budget: MessageBudget,
  ) {
    stream.events = this;
    this.ended = stream.remoteEnded;
    const timeout = parseTimeout(headers.get("grpc-timeout"));
    if (timeout !== undefined) {
      this.deadline = setTimeout(() => this.abort({ code: Code.DEADLINE_EXCEEDED, message: "the call's deadline (grpc-timeout) passed" }), timeout);
    }
  }

  /** A -bin request header's bytes (names in lower case). */
  binaryHeader(name: string): Buffer | undefined {
    const v = this.headers.get(name);
    return v === undefined ? undefined : Buffer.from(v, "base64");
  }

  /** Calls fn once if the call is cancelled (by the client, its deadline, or a broken request); returns its remover. */
  onCancel(fn: () => void): () => void {
    if (this.cancelled) {
      fn();
      return () => {};
    }
    this.cancelListeners.add(fn);
    return () => this.cancelListeners.delete(fn);
  }

  // ---------- the request ----------

  data(chunk: Buffer): void {
    if (this.finished) return this.stream.credit(chunk.length);
    if (this.waitingBytes) return this.holdWhileWaiting(chunk);
    const used = this.consume(chunk);
    if (this.finished) return this.stream.credit(chunk.length); // refused: nothing more is read
    if (used < chunk.length) return this.holdWhileWaiting(chunk.subarray(used), chunk.length);
    // The client may send more at once while the handler keeps up; else once it has caught up.
    if (this.queuedBytes <= QUEUE_HIGH_WATER) this.stream.credit(chunk.length);
    else this.owed += chunk.length;
  }

  /**
   * Takes messages out of a chunk; returns how many of its bytes it used: fewer than all when a big
   * message must wait for the budget, or the request broke a limit (then the call is finished).
   */
  private consume(chunk: Buffer): number {
    let pos = 0;
    while (pos < chunk.length && !this.finished) {
      if (!this.message) {
        const take = Math.min(5 - this.prefixFill, chunk.length - pos);
        chunk.copy(this.prefix, this.prefixFill, pos, pos + take);
        this.prefixFill += take;
        pos += take;
        if (this.prefixFill < 5) break;
        const length = this.prefix.readUInt32BE(1);
        if (this.prefix[0] !== 0) {
          this.refuse({ code: Code.UNIMPLEMENTED, message: "compressed messages are not accepted (grpc-encoding identity only)" });
          return pos;
        }
        if (length > MAX_MESSAGE_BYTES) {
          this.refuse({ code: Code.RESOURCE_EXHAUSTED, message: `a request message of ${length} bytes, over the ${MAX_MESSAGE_BYTES} allowed` });
          return pos;
        }
        this.prefixFill = 0;
        if (length > BIG_MESSAGE_BYTES) {
          if (!this.budget.take(length, this.admitted)) {
            this.waitingLength = length;
            this.waitingBytes = [];
            return pos;
          }
          this.heldForQueue += length;
        }
        // A message wholly inside this read is a view of it; one cut by reads is copied together.
        if (chunk.length - pos >= length) {
          this.take(chunk.subarray(pos, pos + length));
          pos += length;
          continue;
        }
        this.message = Buffer.allocUnsafe(length);
        this.messageFill = 0;
      }
      const take = Math.min(this.message.length - this.messageFill, chunk.length - pos);
      chunk.copy(this.message, this.messageFill, pos, pos + take);
      this.messageFill += take;
      pos += take;
      if (this.messageFill === this.message.length) {
        const m = this.message;
        this.message = undefined;
        this.take(m);
      }
    }
    return this.finished ? pos : chunk.length;
  }

  /**
   * Bytes of a big message waiting for the budget are kept (a copy: a view would hold the whole
   * read), and their window is given back to the connection but not to the stream: the client can
   * send at most one stream window more, and the other calls on its connection go on.
   */
  private holdWhileWaiting(bytes: Buffer, credited = bytes.length): void {
    this.waitingBytes!.push(Buffer.from(bytes));
    this.stream.creditConnection(credited);
    this.waitingOwed += credited;
  }

  /** The budget has room for the waiting message: it is assembled from what came meanwhile. */
  private readonly admitted = (): void => {
    const length = this.waitingLength;
    const held = this.waitingBytes!;
    const owed = this.waitingOwed;
    this.waitingBytes = undefined;
    this.waitingOwed = 0;
    this.heldForQueue += length;
    this.message = Buffer.allocUnsafe(length);
    this.messageFill = 0;
    for (const [i, bytes] of held.entries()) {
      const used = this.consume(bytes);
      if (this.finished) break;
      // Another big message behind this one, waiting in turn (the stream's window makes that rare).
      if (used < bytes.length) {
        this.waitingBytes = [bytes.subarray(used), ...held.slice(i + 1)];
        break;
      }
    }
    if (this.waitingBytes && !this.finished) this.waitingOwed = owed;
    else this.stream.creditStream(owed);
  };

  private take(message: Buffer): void {
    this.queue.push(message);
    this.queuedBytes += message.length;
    this.wakeReader();
  }

  end(): void {
    this.ended = true;
    this.wakeReader();
  }

  reset(): void {
    this.finished = true;
    this.releaseAll();
    this.cancel();
  }

  drain(): void {
    const d = this.drained;
    this.drained = undefined;
    d?.();
  }

  private wakeReader(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private shift(): Buffer {
    const m = this.queue.shift()!;
    this.queuedBytes -= m.length;
    if (m.length > BIG_MESSAGE_BYTES) {
      this.heldForQueue -= m.length;
      this.heldForHandler += m.length;
    }
    if (this.owed > 0 && this.queuedBytes <= QUEUE_HIGH_WATER) {
      this.stream.credit(this.owed);
      this.owed = 0;
    }
    return m;
  }

  /** The next request message; `done` says the handler is through with the ones before (their budget goes back). */
  private async next(done = true): Promise<Buffer | undefined> {
    if (done) this.releaseHandled();
    for (;;) {
      if (this.cancelled) throw new StatusError(Code.CANCELLED, "the client cancelled the call");
      if (this.queue.length > 0) return this.shift();
      if (this.ended) {
        if (this.message || this.waitingBytes || this.prefixFill > 0) throw new StatusError(Code.INTERNAL, "the request ended inside a message");
        return undefined;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** The one request message of a unary or server-streaming call. */
  async only(): Promise<Buffer> {
    const m = await this.next();
    if (!m) throw new StatusError(Code.INTERNAL, "the call ended without its request message");
    // The message stays the handler's (and its budget held) until the call ends.
    if ((await this.next(false)) !== undefined) throw new StatusError(Code.INTERNAL, "more than one request message in a call that takes one");
    return m;
  }

  /** The request messages of a client-streaming call, as they come; CANCELLED if the call is. */
  async *requests(): AsyncGenerator<Buffer> {
    for (let m = await this.next(); m; m = await this.next()) yield m;
  }

  // ---------- the response ----------

  /** Sends one response message; resolves once the stream can take more (or the call is cancelled). */
  send(message: Uint8Array): Promise<void> {
    if (this.finished) return Promise.resolve();
    this.respond();
    const prefix = Buffer.allocUnsafe(5);
    prefix[0] = 0;
    prefix.writeUInt32BE(message.length, 1);
    this.stream.send(prefix);
    const room = this.stream.send(Buffer.from(message.buffer, message.byteOffset, message.byteLength));
    if (room) return Promise.resolve();
    return new Promise((resolve) => {
      const off = this.onCancel(resolve);
      this.drained = () => {
        off();
        resolve();
      };
    });
  }

  /** Ends the call with its status (trailers); later calls of finish are ignored. */
  finish(status: WireStatus): void {
    if (this.finished) return;
    this.finished = true;
    this.releaseAll();
    if (this.deadline) clearTimeout(this.deadline);
    const trailers = statusTrailers(status);
    if (this.responded) this.stream.end(trailers);
    else this.stream.headers(Buffer.concat([RESPONSE_HEADERS, trailers]), true);
  }

  private respond(): void {
    if (this.responded) return;
    this.responded = true;
    this.stream.headers(RESPONSE_HEADERS, false);
  }

  /** The request broke a limit: the call ends with that status, and nothing more of it is read. */
  private refuse(status: WireStatus): void {
    this.queue = [];
    this.abort(status);
  }

  /** Ends the call with a status of the transport's own, and tells the handler it is cancelled. */
  private abort(status: WireStatus): void {
    this.finish(status);
    this.cancel();
  }

  private releaseHandled(): void {
    if (this.heldForHandler > 0) this.budget.give(this.heldForHandler);
    this.heldForHandler = 0;
  }

  /** The call is over: every byte of budget it held or waited for goes back. */
  private releaseAll(): void {
    this.releaseHandled();
    if (this.waitingBytes) this.budget.forget(this.admitted);
    this.waitingBytes = undefined;
    if (this.heldForQueue > 0) this.budget.give(this.heldForQueue);
    this.heldForQueue = 0;
  }

  private cancel(): void {
    if (this.deadline) clearTimeout(this.deadline);
    if (this.cancelled) return;
    this.cancelled = true;
    for (const fn of this.cancelListeners) fn();
    this.cancelListeners.clear();
    this.wakeReader();
    this.drain();
  }
}

/** grpc-status, grpc-message (percent-encoded, as the protocol says) and the details. */
function statusTrailers(status: WireStatus): Buffer {
  const fields: HeaderList = [["grpc-status", String(status.code)]];
  if (status.message) fields.push(["grpc-message", percentEncode(status.message.slice(0, MAX_STATUS_MESSAGE))]);
  if (status.details) fields.push(["grpc-status-details-bin", Buffer.from(status.details).toString("base64")]);
  return encodeHeaders(fields);
}

/** Bytes outside printable ASCII, and '%', as %XX of their UTF-8. */
function percentEncode(s: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(s)) return s;
  let out = "";
  for (const b of Buffer.from(s, "utf8")) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** grpc-timeout ("30S", "100m"…) in ms, capped where timers stop working (about 24 days). */
function parseTimeout(v: string | undefined): number | undefined {
  const m = v && /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return undefined;
  return Math.min(Number(m[1]) * TIMEOUT_UNIT_MS[m[2]!]!, 2 ** 31 - 1);
}
