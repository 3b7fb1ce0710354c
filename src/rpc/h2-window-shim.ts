// Works around a flow-control bug in Bun's node:http2 (1.4.5; oven-sh/bun PR #41329, still open):
// when a client raises SETTINGS_INITIAL_WINDOW_SIZE while streams are open, Bun resets those
// streams' send windows instead of adding the difference, so a server stream stalls for good.
// gRPC clients in Go and C++ raise it mid-download (BDP window tuning): remotetool hung on any
// ByteStream read over a few MiB.
//
// actiond's server no longer runs on Bun's HTTP/2 (src/transport applies the change by its
// difference); the upstream tier's grpc-js client still does, so upstream-relay.ts puts the shim
// between Bun and the upstream, in the client role, where the same bug stalls uploads. (The server
// role is the one the unit tests drive: the rewriting is the same.)
//
// The shim keeps Bun from ever seeing a change: it rewrites a changed INITIAL_WINDOW_SIZE back to
// the peer's first value and grants the difference with explicit WINDOW_UPDATE frames instead, to
// every open stream at once and to each new stream as it opens. Bun handles WINDOW_UPDATE
// correctly, and both ends' idea of every window stays the same as without the shim. Only frame
// headers are inspected; DATA passes through as slices of the bytes read, uncopied.

const PREFACE_LENGTH = 24; // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
const HEADER_LENGTH = 9;
const DEFAULT_WINDOW = 65_535;

const enum FrameType {
  DATA = 0x0,
  HEADERS = 0x1,
  RST_STREAM = 0x3,
  SETTINGS = 0x4,
  CONTINUATION = 0x9,
}
const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
/**
 * SETTINGS_MAX_FRAME_SIZE as the server announces it (it announces none: the protocol's default).
 * A bigger frame is a connection error, and the shim would otherwise hold a SETTINGS frame of any
 * size in memory until it is whole.
 */
export const MAX_FRAME_BYTES = 16_384;

/** The client broke a limit of the protocol; the connection is closed (the server is not). */
export class FrameSizeError extends Error {}

interface FrameHeader {
  length: number;
  type: number;
  flags: number;
  stream: number;
}

/** Splits a byte stream into frame headers and payload pieces, across chunk boundaries. */
class FrameSplitter {
  private skipPreface: number;
  private header: Buffer = Buffer.alloc(0);
  private current: FrameHeader | undefined;
  private remaining = 0;

  constructor(hasPreface: boolean) {
    this.skipPreface = hasPreface ? PREFACE_LENGTH : 0;
  }

  /** True between frames: the next byte starts a frame (so another frame may be put in here). */
  get atFrameBoundary(): boolean {
    return this.skipPreface === 0 && this.header.length === 0 && this.remaining === 0;
  }

  /** Bytes of a frame header received but not yet complete (the preface passes straight through). */
  get partialHeaderBytes(): number {
    return this.header.length;
  }

  /**
   * Calls onHeader for each frame header (with its raw 9 bytes) and onPayload for each payload
   * piece, and onRaw for preface bytes, in stream order.
   */
  feed(
    chunk: Buffer,
    on: {
      raw(bytes: Buffer): void;
      header(h: FrameHeader, raw: Buffer): void;
      payload(h: FrameHeader, piece: Buffer, last: boolean): void;
    },
  ): void {
    let off = 0;
    if (this.skipPreface > 0) {
      const n = Math.min(this.skipPreface, chunk.length);
      on.raw(chunk.subarray(0, n));
      this.skipPreface -= n;
      off = n;
    }
    while (off < chunk.length) {
      if (this.current && this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - off);
        this.remaining -= n;
        on.payload(this.current, chunk.subarray(off, off + n), this.remaining === 0);
        off += n;
        if (this.remaining === 0) this.current = undefined;
        continue;
      }
      const need = HEADER_LENGTH - this.header.length;
      const take = chunk.subarray(off, off + need);
      this.header = this.header.length === 0 ? take : Buffer.concat([this.header, take]);
      off += take.length;
      if (this.header.length < HEADER_LENGTH) return;
      const raw = this.header;
      this.header = Buffer.alloc(0);
      const h: FrameHeader = {
        length: raw.readUIntBE(0, 3),
        type: raw[3]!,
        flags: raw[4]!,
        stream: raw.readUInt32BE(5) & 0x7fffffff,
      };
      if (h.length > MAX_FRAME_BYTES) throw new FrameSizeError(`a frame of ${h.length} bytes (type ${h.type}), over the ${MAX_FRAME_BYTES} allowed`);
      on.header(h, raw);
      if (h.length === 0) on.payload(h, Buffer.alloc(0), true);
      else {
        this.current = h;
        this.remaining = h.length;
      }
    }
  }
}

function endsHeaderBlock(h: FrameHeader): boolean {
  return (h.type === FrameType.HEADERS || h.type === FrameType.CONTINUATION) && (h.flags & FLAG_END_HEADERS) !== 0;
}

function windowUpdate(stream: number, increment: number): Buffer {
  const f = Buffer.alloc(HEADER_LENGTH + 4);
  f.writeUIntBE(4, 0, 3);
  f[3] = 0x8; // WINDOW_UPDATE
  f.writeUInt32BE(stream, 5);
  f.writeUInt32BE(increment, 9);
  return f;
}

/**
 * The per-connection state: which streams are open, and the window Bun was told about. The peer is
 * the other end: a client when Bun serves (role "server"), a server when Bun is the client (role
 * "client", the upstream cache's connection), where the same bug stalls uploads instead.
 */
export class WindowSettingsShim {
  private readonly fromPeerFrames: FrameSplitter;
  private readonly fromBunFrames: FrameSplitter;
  private readonly open = new Set<number>();
  /** INITIAL_WINDOW_SIZE as Bun knows it: the peer's first value. */
  private announced: number | undefined;
  /** INITIAL_WINDOW_SIZE as the peer last set it. */
  private actual = DEFAULT_WINDOW;
  private settingsPayload: Buffer[] = [];

  constructor(readonly role: "server" | "client" = "server") {
    // The client's side of a connection starts with the preface.
    this.fromPeerFrames = new FrameSplitter(role === "server");
    this.fromBunFrames = new FrameSplitter(role === "client");
  }

  /** Streams open that Bun may still send on (none open: the connection is idle). */
  get openStreams(): number {
    return this.open.size;
  }

  /** True when the peer's bytes so far end between frames. */
  get peerAtFrameBoundary(): boolean {
    return this.fromPeerFrames.atFrameBoundary;
  }

  /** Whether the peer ever opened a stream: made a call (role "server"). */
  madeCalls = false;

  /**
   * Peer→Bun bytes in; the bytes to hand to Bun out (mostly the same slices).
   * Throws FrameSizeError on a frame bigger than Bun allows.
   */
  fromPeer(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let changed = false;
    const carriedIn = this.fromPeerFrames.partialHeaderBytes;
    this.fromPeerFrames.feed(chunk, {
      raw: (b) => out.push(b),
      header: (h, raw) => {
        if (this.role === "server" && h.type === FrameType.HEADERS && h.stream !== 0) {
          this.open.add(h.stream);
          this.madeCalls = true;
        }
        const peerEnds = this.role === "client" && (h.type === FrameType.DATA || h.type === FrameType.HEADERS) && h.flags & FLAG_END_STREAM;
        if (h.type === FrameType.RST_STREAM || peerEnds) this.open.delete(h.stream);
        // SETTINGS are held back until whole, to be rewritten; everything else streams through.
        if (h.type !== FrameType.SETTINGS || h.flags & FLAG_ACK) out.push(raw);
        else {
          this.settingsPayload = [raw];
          changed = true;
        }
      },
      payload: (h, piece, last) => {
        if (h.type !== FrameType.SETTINGS || h.flags & FLAG_ACK) {
          if (piece.length > 0) out.push(piece);
        } else {
          this.settingsPayload.push(piece);
          changed = true;
          if (last) out.push(...this.rewriteSettings(Buffer.concat(this.settingsPayload)));
        }
        // A stream the peer opens learns the extra window once its header block is complete.
        if (this.role === "server" && last && endsHeaderBlock(h) && this.open.has(h.stream)) {
          const credit = this.newStreamCredit(h.stream);
          if (credit) {
            out.push(credit);
            changed = true;
          }
        }
      },
    });
    // Most chunks pass through whole, as one buffer: those with nothing rewritten, and no frame
    // header cut at either end (such a header is re-assembled, so the pieces differ from the chunk).
    const headerCut = carriedIn > 0 || this.fromPeerFrames.partialHeaderBytes > 0;
    return changed || headerCut ? out : [chunk];
  }

  /**
   * Bun→peer bytes, observed to learn which streams Bun opens (role "client") and ends. Returns
   * frames to hand to Bun as if from the peer: the extra window of a stream Bun just opened.
   */
  fromBun(chunk: Buffer): Buffer[] {
    const toBun: Buffer[] = [];
    this.fromBunFrames.feed(chunk, {
      raw: () => {},
      header: (h) => {
        const ends = (h.type === FrameType.DATA || h.type === FrameType.HEADERS) && h.flags & FLAG_END_STREAM;
        if (this.role === "client" && h.type === FrameType.HEADERS && h.stream !== 0 && !ends) this.open.add(h.stream);
        if (ends || h.type === FrameType.RST_STREAM) this.open.delete(h.stream);
      },
      payload: (h, _piece, last) => {
        if (this.role !== "client" || !last || !endsHeaderBlock(h) || !this.open.has(h.stream)) return;
        const credit = this.newStreamCredit(h.stream);
        if (credit) toBun.push(credit);
      },
    });
    return toBun;
  }

  /** The WINDOW_UPDATE that gives a new stream what the peer granted beyond what Bun was told. */
  private newStreamCredit(stream: number): Buffer | undefined {
    const extra = this.actual - (this.announced ?? DEFAULT_WINDOW);
    return extra > 0 ? windowUpdate(stream, extra) : undefined;
  }

  /** Keeps INITIAL_WINDOW_SIZE at its first value and turns any increase into WINDOW_UPDATEs. */
  private rewriteSettings(frame: Buffer): Buffer[] {
    const extra: Buffer[] = [];
    // The peer's first SETTINGS fixes the value Bun works with (the default if unset).
    const first = this.announced === undefined;
    if (first) this.announced = this.actual = DEFAULT_WINDOW;
    for (let at = HEADER_LENGTH; at + 6 <= frame.length; at += 6) {
      if (frame.readUInt16BE(at) !== SETTINGS_INITIAL_WINDOW_SIZE) continue;
      const value = frame.readUInt32BE(at + 2);
      if (first) {
        this.announced = this.actual = value;
        continue;
      }
      const delta = value - this.actual;
      this.actual = value;
      if (delta > 0) {
        frame.writeUInt32BE(this.announced!, at + 2);
        for (const stream of this.open) extra.push(windowUpdate(stream, delta));
      } else {
        // A decrease cannot be expressed as credit; pass it on and let the server apply it.
        this.announced = value;
      }
    }
    return [frame, ...extra];
  }
}
