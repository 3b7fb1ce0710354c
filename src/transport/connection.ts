// One HTTP/2 connection, the server's side (RFC 9113): frames in and out, streams, flow control both
// ways, SETTINGS, PING, GOAWAY. What a stream carries is the layer above's business (call.ts); this
// file keeps the peer within the limits it was given and closes the connection, never the server,
// when the peer breaks the protocol.
import type { Socket } from "node:net";
import {
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  ErrorCode,
  FRAME_HEADER_BYTES,
  Flag,
  Frame,
  MAX_WINDOW,
  PREFACE,
  Setting,
  frame,
  frameHeader,
  goAwayFrame,
  rstStreamFrame,
  settingsFrame,
  windowUpdateFrame,
} from "./frames";
import { CompressionError, HpackDecoder, type HeaderList } from "./hpack";

export interface ConnectionOptions {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: calls at once; more are refused (REFUSED_STREAM, retried). */
  maxStreams: number;
  /** A connection with no stream open for this long is sent GOAWAY and closed. */
  idleMs: number;
  /** A new stream and its request headers (`over`: the headers were longer than allowed, and cut). */
  onStream(stream: H2Stream, headers: HeaderList, over: boolean): void;
  /** Why a connection was closed for breaking the protocol. */
  onProtocolError(why: string): void;
}

/** What the layer above hears from a stream. */
export interface StreamEvents {
  /** A DATA payload: a view of the bytes read, never reused by the connection. */
  data(chunk: Buffer): void;
  /** The client sent END_STREAM: no more data. */
  end(): void;
  /** The stream is gone before the server finished it: the client reset it, or the connection closed. */
  reset(why: string): void;
  /** The queued output fell below the mark after send() said it was full. */
  drain(): void;
}

/** The biggest frame the server accepts: HTTP/2's default; a bigger one closes the connection. */
export const MAX_FRAME_BYTES = DEFAULT_MAX_FRAME;
/** The window each stream starts with: a 1 MiB upload chunk in flight without waiting. */
const STREAM_WINDOW = 1024 * 1024;
/** The connection's window: how much all streams together may have in flight. */
const CONNECTION_WINDOW = 16 * 1024 * 1024;
/** A header block (HEADERS and its CONTINUATIONs) may not grow past this before it is decoded. */
const MAX_HEADER_BLOCK = 64 * 1024;
/** SETTINGS_MAX_HEADER_LIST_SIZE: decoded headers past this make the call fail, not the connection. */
export const MAX_HEADER_LIST_BYTES = 64 * 1024;
/** A stream whose queued output passes this tells its writer to wait. */
const SEND_HIGH_WATER = 1024 * 1024;
/** DATA generated for the socket between two writes: big responses go out in pieces the socket's backpressure paces. */
const FLUSH_BYTES = 256 * 1024;
/** Streams refused in a row (over the limit, no stream finished between) before the connection is. */
const MAX_REFUSED_IN_A_ROW = 64;

export class H2Stream {
  events?: StreamEvents;
  remoteEnded = false;
  /** Trailers sent or reset: the server is done with it. */
  closed = false;
  sendWindow: number;
  /** What the client may still send before the server grants more. */
  recvWindow = STREAM_WINDOW;
  /** Granted but not yet sent as WINDOW_UPDATE. */
  pendingCredit = 0;
  /** Received and not yet given back: the connection's window gets it back when the stream ends. */
  held = 0;
  queue: Buffer[] = [];
  queuedBytes = 0;
  trailers?: Buffer;
  wantsDrain = false;

  constructor(
    readonly id: number,
    private readonly conn: H2Connection,
    initialWindow: number,
  ) {
    this.sendWindow = initialWindow;
  }

  /** Sends response headers (HEADERS), ending the stream with them for a trailers-only response. */
  headers(block: Buffer, endStream: boolean): void {
    if (this.closed) return;
    if (endStream) {
      this.trailers = block;
      this.conn.pump(this);
    } else this.conn.sendHeaders(this.id, block, false);
  }

  /** Queues DATA; false once the stream holds more than the mark (wait for the drain event). */
  send(data: Buffer): boolean {
    if (this.closed) return true;
    if (data.length > 0) {
      this.queue.push(data);
      this.queuedBytes += data.length;
      this.conn.pump(this);
    }
    if (this.queuedBytes < SEND_HIGH_WATER) return true;
    this.wantsDrain = true;
    return false;
  }

  /** Ends the stream with trailers, after the data queued before them. */
  end(trailers: Buffer): void {
    if (this.closed || this.trailers) return;
    this.trailers = trailers;
    this.conn.pump(this);
  }

  /** The layer above has taken n bytes of what the client sent: the client may send as much again. */
  credit(n: number): void {
    if (n > 0) this.conn.credit(this, n);
  }

  /** Gives back the connection's window for n bytes, but not yet the stream's (see creditStream). */
  creditConnection(n: number): void {
    if (n > 0) this.conn.creditConnection(this, n);
  }

  /** The stream's window for n bytes whose connection window went back before (creditConnection). */
  creditStream(n: number): void {
    if (n > 0) this.conn.creditStream(this, n);
  }
}

export class H2Connection {
  private readonly streams = new Map<number, H2Stream>();
  private readonly decoder = new HpackDecoder();
  /** Calls the client made on this connection (the connection limits prefer closing those that made none). */
  madeCalls = 0;
  private lastStreamId = 0;
  private refusedInARow = 0;

  private prefaceLeft = PREFACE.length;
  /** Bytes of a frame cut by the end of a read, kept until the rest arrives. */
  private partial: Buffer | undefined;
  /** A header block waiting for its CONTINUATION frames. */
  private headerBlock: { stream: number; endStream: boolean; parts: Buffer[]; bytes: number } | undefined;

  private sendWindow = DEFAULT_WINDOW;
  private recvWindow = DEFAULT_WINDOW;
  private pendingCredit = 0;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME;

  private out: Buffer[] = [];
  private outBytes = 0;
  private flushQueued = false;
  private resumeQueued = false;
  private socketFull = false;
  /** Streams with data or trailers waiting for window or for the socket. */
  private readonly waiting = new Set<H2Stream>();

  private goAwaySent = false;
  private peerGoneAway = false;
  private closed = false;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly socket: Socket,
    first: Buffer,
    private readonly opts: ConnectionOptions,
  ) {
    this.write(
      settingsFrame([
        [Setting.MAX_CONCURRENT_STREAMS, opts.maxStreams],
        [Setting.INITIAL_WINDOW_SIZE, STREAM_WINDOW],
        [Setting.MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST_BYTES],
        [Setting.ENABLE_PUSH, 0],
      ]),
    );
    this.write(windowUpdateFrame(0, CONNECTION_WINDOW - DEFAULT_WINDOW));
    this.recvWindow = CONNECTION_WINDOW;
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("drain", () => {
      this.socketFull = false;
      this.pumpWaiting();
    });
    socket.once("close", () => this.gone("the connection closed"));
    this.armIdle();
    this.receive(first);
    socket.resume();
  }

  get openStreams(): number {
    return this.streams.size;
  }

  /** Graceful close: GOAWAY (no new calls), the connection ends once the open streams have. */
  drain(): void {
    this.sayGoAway(ErrorCode.NO_ERROR, "");
    this.endIfDone();
  }

  destroy(): void {
    this.socket.destroy();
  }

  // ---------- reading ----------

  private receive(chunk: Buffer): void {
    if (this.closed) return;
    let pos = 0;
    if (this.prefaceLeft > 0) {
      const n = Math.min(this.prefaceLeft, chunk.length);
      const at = PREFACE.length - this.prefaceLeft;
      if (!chunk.subarray(0, n).equals(PREFACE.subarray(at, at + n))) return this.fail(ErrorCode.PROTOCOL_ERROR, "it did not start with the HTTP/2 preface");
      this.prefaceLeft -= n;
      pos = n;
    }
    if (this.partial) {
      // Complete the cut frame from the start of this read (copying only that frame's bytes).
      let p = this.partial;
      if (p.length < FRAME_HEADER_BYTES) {
        const take = Math.min(FRAME_HEADER_BYTES - p.length, chunk.length - pos);
        p = Buffer.concat([p, chunk.subarray(pos, pos + take)]);
        pos += take;
        if (p.length < FRAME_HEADER_BYTES) return void (this.partial = p);
      }
      const length = p.readUIntBE(0, 3);
      if (!this.frameSizeOk(length, p[3]!)) return;
      const need = FRAME_HEADER_BYTES + length - p.length;
      const take = Math.min(need, chunk.length - pos);
      p = take > 0 ? Buffer.concat([p, chunk.subarray(pos, pos + take)]) : p;
      pos += take;
      if (take < need) return void (this.partial = p);
      this.partial = undefined;
      this.onFrame(p[3]!, p[4]!, p.readUInt32BE(5) & 0x7fffffff, p.subarray(FRAME_HEADER_BYTES));
    }
    while (!this.closed && chunk.length - pos >= FRAME_HEADER_BYTES) {
      const length = (chunk[pos]! << 16) | (chunk[pos + 1]! << 8) | chunk[pos + 2]!;
      const type = chunk[pos + 3]!;
      if (!this.frameSizeOk(length, type)) return;
      if (chunk.length - pos < FRAME_HEADER_BYTES + length) break;
      const flags = chunk[pos + 4]!;
      const stream = chunk.readUInt32BE(pos + 5) & 0x7fffffff;
      const payload = chunk.subarray(pos + FRAME_HEADER_BYTES, pos + FRAME_HEADER_BYTES + length);
      pos += FRAME_HEADER_BYTES + length;
      this.onFrame(type, flags, stream, payload);
    }
    if (!this.closed && pos < chunk.length) this.partial = Buffer.from(chunk.subarray(pos));
    this.sendCredit();
  }

  private frameSizeOk(length: number, type: number): boolean {
    if (length <= MAX_FRAME_BYTES) return true;
    this.fail(ErrorCode.FRAME_SIZE_ERROR, `a frame of ${length} bytes (type ${type}), over the ${MAX_FRAME_BYTES} allowed`);
    return false;
  }

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.headerBlock && type !== Frame.CONTINUATION) return this.fail(ErrorCode.PROTOCOL_ERROR, "a header block was interrupted by another frame");
    switch (type) {
      case Frame.DATA:
        return this.onData(flags, id, payload);
      case Frame.HEADERS:
        return this.onHeaders(flags, id, payload);
      case Frame.CONTINUATION:
        return this.onContinuation(flags, id, payload);
      case Frame.RST_STREAM: {
        if (payload.length !== 4) return this.fail(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM is not 4 bytes");
        const s = this.streams.get(id);
        if (s) this.close(s, "the client cancelled the call");
        return;
      }
      case Frame.SETTINGS:
        return this.onSettings(flags, id, payload);
      case Frame.PING:
        if (payload.length !== 8) return this.fail(ErrorCode.FRAME_SIZE_ERROR, "PING is not 8 bytes");
        if (!(flags & Flag.ACK)) this.write(frame(Frame.PING, Flag.ACK, 0, payload));
        return;
      case Frame.GOAWAY:
        // The client makes no more calls here; those open finish, then the connection ends.
        this.peerGoneAway = true;
        return this.endIfDone();
      case Frame.WINDOW_UPDATE:
        return this.onWindowUpdate(id, payload);
      case Frame.PUSH_PROMISE:
        return this.fail(ErrorCode.PROTOCOL_ERROR, "a client sent PUSH_PROMISE");
      default:
        // PRIORITY and unknown types are ignored, as the protocol says.
        return;
    }
  }

  /** A frame's payload without its padding (PADDED flag), or undefined if the padding is wrong. */
  private unpadded(flags: number, payload: Buffer): Buffer | undefined {
    if (!(flags & Flag.PADDED)) return payload;
    const pad = payload[0];
    if (pad === undefined || pad >= payload.length) {
      this.fail(ErrorCode.PROTOCOL_ERROR, "padding longer than its frame");
      return undefined;
    }
    return payload.subarray(1, payload.length - pad);
  }

  private onData(flags: number, id: number, payload: Buffer): void {
    if (id === 0) return this.fail(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    if (id > this.lastStreamId) return this.fail(ErrorCode.PROTOCOL_ERROR, `DATA on stream ${id}, which was never opened`);
    this.recvWindow -= payload.length;
    if (this.recvWindow < 0) return this.fail(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection's window");
    const data = this.unpadded(flags, payload);
    if (!data) return;
    const s = this.streams.get(id);
    if (!s || s.remoteEnded) {
      // A stream the server has finished (or reset): its bytes are dropped, their window given back.
      this.pendingCredit += payload.length;
      if (s) this.resetStream(s, ErrorCode.STREAM_CLOSED);
      return;
    }
    s.recvWindow -= payload.length;
    s.held += payload.length;
    if (s.recvWindow < 0) {
      return this.resetStream(s, ErrorCode.FLOW_CONTROL_ERROR, "the client sent beyond the stream's window");
    }
    // Padding is never the layer above's: its window comes back at once.
    if (data.length < payload.length) this.credit(s, payload.length - data.length);
    if (data.length > 0) s.events?.data(data);
    if (flags & Flag.END_STREAM && !s.closed) {
      s.remoteEnded = true;
      s.events?.end();
    }
  }

  private onHeaders(flags: number, id: number, payload: Buffer): void {
    if (id === 0) return this.fail(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let block = this.unpadded(flags, payload);
    if (!block) return;
    if (flags & Flag.PRIORITY) {
      if (block.length < 5) return this.fail(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its priority");
      block = block.subarray(5);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) return this.onHeaderBlock(id, endStream, block);
    this.headerBlock = { stream: id, endStream, parts: [Buffer.from(block)], bytes: block.length };
  }

  private onContinuation(flags: number, id: number, payload: Buffer): void {
    const hb = this.headerBlock;
    if (!hb || hb.stream !== id) return this.fail(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without the HEADERS it continues");
    hb.bytes += payload.length;
    if (hb.bytes > MAX_HEADER_BLOCK) return this.fail(ErrorCode.ENHANCE_YOUR_CALM, `a header block over ${MAX_HEADER_BLOCK} bytes`);
    hb.parts.push(Buffer.from(payload));
    if (!(flags & Flag.END_HEADERS)) return;
    this.headerBlock = undefined;
    this.onHeaderBlock(id, hb.endStream, Buffer.concat(hb.parts));
  }

  private onHeaderBlock(id: number, endStream: boolean, block: Buffer): void {
    let decoded: { headers: HeaderList; over: boolean };
    try {
      decoded = this.decoder.decode(block, MAX_HEADER_LIST_BYTES);
    } catch (err) {
      if (err instanceof CompressionError) return this.fail(ErrorCode.COMPRESSION_ERROR, `its headers do not decode: ${err.message}`);
      throw err;
    }
    const existing = this.streams.get(id);
    if (existing) {
      // Trailers from the client: gRPC clients send none, but they would end the request.
      if (!endStream) return this.resetStream(existing, ErrorCode.PROTOCOL_ERROR, "the client sent a second HEADERS without END_STREAM");
      if (!existing.remoteEnded) {
        existing.remoteEnded = true;
        existing.events?.end();
      }
      return;
    }
    if (id <= this.lastStreamId) return; // a stream already finished: nothing to do
    if (id % 2 === 0) return this.fail(ErrorCode.PROTOCOL_ERROR, `a client opened stream ${id} (even: the server's)`);
    this.lastStreamId = id;
    if (this.goAwaySent || this.peerGoneAway) return void this.write(rstStreamFrame(id, ErrorCode.REFUSED_STREAM));
    if (this.streams.size >= this.opts.maxStreams) {
      this.write(rstStreamFrame(id, ErrorCode.REFUSED_STREAM));
      if (++this.refusedInARow > MAX_REFUSED_IN_A_ROW) {
        this.fail(ErrorCode.ENHANCE_YOUR_CALM, `it kept opening calls beyond the ${this.opts.maxStreams} allowed at once`);
      }
      return;
    }
    const s = new H2Stream(id, this, this.peerInitialWindow);
    this.streams.set(id, s);
    this.madeCalls++;
    this.disarmIdle();
    if (endStream) s.remoteEnded = true;
    this.opts.onStream(s, decoded.headers, decoded.over);
  }

  private onSettings(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) return this.fail(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) {
      if (payload.length !== 0) this.fail(ErrorCode.FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload");
      return;
    }
    if (payload.length % 6 !== 0) return this.fail(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes");
    for (let off = 0; off < payload.length; off += 6) {
      const key = payload.readUInt16BE(off);
      const value = payload.readUInt32BE(off + 2);
      if (key === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) return this.fail(ErrorCode.FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE ${value}`);
        // A change applies to every open stream's window, by the difference (RFC 9113, 6.9.2).
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) s.sendWindow += delta;
      } else if (key === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > 0xffffff) return this.fail(ErrorCode.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${value}`);
        this.peerMaxFrame = value;
      } else if (key === Setting.ENABLE_PUSH && value > 1) {
        return this.fail(ErrorCode.PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH ${value}`);
      }
    }
    this.write(frame(Frame.SETTINGS, Flag.ACK, 0));
    this.pumpWaiting();
  }

  private onWindowUpdate(id: number, payload: Buffer): void {
    if (payload.length !== 4) return this.fail(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE is not 4 bytes");
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (increment === 0) return this.fail(ErrorCode.PROTOCOL_ERROR, "a WINDOW_UPDATE of 0");
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) return this.fail(ErrorCode.FLOW_CONTROL_ERROR, "the connection's window over 2^31-1");
      return this.pumpWaiting();
    }
    const s = this.streams.get(id);
    if (!s) return;
    if (increment === 0) return this.resetStream(s, ErrorCode.PROTOCOL_ERROR, "a WINDOW_UPDATE of 0");
    s.sendWindow += increment;
    if (s.sendWindow > MAX_WINDOW) return this.resetStream(s, ErrorCode.FLOW_CONTROL_ERROR, "a stream's window over 2^31-1");
    this.pump(s);
  }

  // ---------- flow control of what the client sends ----------

  /** n bytes the layer above has taken: the stream's window and the connection's open by them again. */
  credit(s: H2Stream, n: number): void {
    this.creditStream(s, n);
    this.creditConnection(s, n);
  }

  creditStream(s: H2Stream, n: number): void {
    if (s.closed) return;
    s.pendingCredit += n;
    // Batched: a WINDOW_UPDATE once a quarter of a window is owed (the client still has the rest).
    if (!s.remoteEnded && s.pendingCredit >= STREAM_WINDOW / 4) {
      this.write(windowUpdateFrame(s.id, s.pendingCredit));
      s.recvWindow += s.pendingCredit;
      s.pendingCredit = 0;
    }
  }

  creditConnection(s: H2Stream, n: number): void {
    if (s.closed) return;
    s.held -= n;
    this.pendingCredit += n;
    this.sendCredit();
  }

  private sendCredit(): void {
    if (this.pendingCredit < CONNECTION_WINDOW / 4 || this.closed) return;
    this.write(windowUpdateFrame(0, this.pendingCredit));
    this.recvWindow += this.pendingCredit;
    this.pendingCredit = 0;
  }

  // ---------- writing ----------

  sendHeaders(id: number, block: Buffer, endStream: boolean): void {
    // Blocks over the peer's frame size go out as HEADERS and CONTINUATIONs, back to back.
    const max = this.peerMaxFrame;
    const end = endStream ? Flag.END_STREAM : 0;
    if (block.length <= max) return void this.write(frame(Frame.HEADERS, Flag.END_HEADERS | end, id, block));
    this.write(frame(Frame.HEADERS, end, id, block.subarray(0, max)));
    for (let off = max; off < block.length; off += max) {
      const last = off + max >= block.length;
      this.write(frame(Frame.CONTINUATION, last ? Flag.END_HEADERS : 0, id, block.subarray(off, off + max)));
    }
  }

  /** Sends what a stream has queued, as far as the windows and the socket allow; then its trailers. */
  pump(s: H2Stream): void {
    if (s.closed || this.closed) return void this.waiting.delete(s);
    while (s.queue.length > 0 && !this.socketFull && this.outBytes < FLUSH_BYTES) {
      const allowed = Math.min(s.sendWindow, this.sendWindow, this.peerMaxFrame);
      if (allowed <= 0) break;
      const head = s.queue[0]!;
      const n = Math.min(allowed, head.length);
      if (n === head.length) s.queue.shift();
      else s.queue[0] = head.subarray(n);
      s.queuedBytes -= n;
      s.sendWindow -= n;
      this.sendWindow -= n;
      this.write(frameHeader(n, Frame.DATA, 0, s.id));
      this.write(n === head.length ? head : head.subarray(0, n));
    }
    if (s.queue.length === 0 && s.trailers) {
      this.waiting.delete(s);
      this.sendHeaders(s.id, s.trailers, true);
      // The client may still be sending: the server wants no more of it (RFC 9113, 8.1).
      if (!s.remoteEnded) this.write(rstStreamFrame(s.id, ErrorCode.NO_ERROR));
      this.finish(s);
      return;
    }
    if (s.queue.length > 0) this.waiting.add(s);
    else this.waiting.delete(s);
    if (s.wantsDrain && s.queuedBytes < SEND_HIGH_WATER) {
      s.wantsDrain = false;
      s.events?.drain();
    }
  }

  /** Every stream waiting for window or for the socket gets its turn again. */
  private pumpWaiting(): void {
    for (const s of [...this.waiting]) this.pump(s);
  }

  resetStream(s: H2Stream, code: ErrorCode, why?: string): void {
    this.write(rstStreamFrame(s.id, code));
    this.close(s, why ?? "the server reset the call");
  }

  /** The stream ended before the server finished it. */
  private close(s: H2Stream, why: string): void {
    if (s.closed) return;
    this.finish(s);
    s.events?.reset(why);
  }

  private finish(s: H2Stream): void {
    s.closed = true;
    s.queue = [];
    s.queuedBytes = 0;
    this.waiting.delete(s);
    this.streams.delete(s.id);
    this.refusedInARow = 0;
    // The window of bytes never taken goes back to the connection (the stream's own is gone).
    this.pendingCredit += s.held;
    s.held = 0;
    if (this.streams.size === 0) {
      this.armIdle();
      this.endIfDone();
    }
  }

  write(buf: Buffer): void {
    if (this.closed) return;
    this.out.push(buf);
    this.outBytes += buf.length;
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Everything written in this turn of the event loop goes to the socket as one write. */
  private flush(): void {
    this.flushQueued = false;
    if (this.out.length === 0 || this.socket.destroyed) return;
    const out = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    if (!this.socket.write(out)) this.socketFull = true;
    // Streams cut short by FLUSH_BYTES go on in a later turn (after other work), unless the socket is full.
    else if (this.waiting.size > 0 && !this.resumeQueued) {
      this.resumeQueued = true;
      setImmediate(() => {
        this.resumeQueued = false;
        if (!this.socketFull) this.pumpWaiting();
      });
    }
  }

  // ---------- ending ----------

  private sayGoAway(code: ErrorCode, why: string): void {
    if (this.goAwaySent) return;
    this.goAwaySent = true;
    this.write(goAwayFrame(this.lastStreamId, code, why));
  }

  private endIfDone(): void {
    if ((this.goAwaySent || this.peerGoneAway) && this.streams.size === 0 && !this.closed) {
      this.flush();
      this.socket.end();
    }
  }

  /** The client broke the protocol: GOAWAY saying why, then the connection is closed. */
  private fail(code: ErrorCode, why: string): void {
    if (this.closed) return;
    this.opts.onProtocolError(why);
    this.sayGoAway(code, why);
    this.flush();
    this.closed = true;
    // Nothing more is read: what the client goes on sending waits in the kernel, not in memory.
    this.socket.pause();
    this.socket.end();
    // A client that does not read its GOAWAY should not keep the descriptor.
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.gone("the connection was closed: " + why);
  }

  private gone(why: string): void {
    this.closed = true;
    this.disarmIdle();
    for (const s of [...this.streams.values()]) this.close(s, why);
  }

  private armIdle(): void {
    this.disarmIdle();
    if (this.closed) return;
    this.idleTimer = setTimeout(() => {
      this.sayGoAway(ErrorCode.NO_ERROR, "idle");
      this.endIfDone();
    }, this.opts.idleMs);
    this.idleTimer.unref();
  }

  private disarmIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}
