// A client that speaks HTTP/2 frames by hand, to do what no well-behaved gRPC client would: frames
// over the size limit, more streams than announced, connections that never make a call.
import { connect, type Socket } from "node:net";

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

export const settingsFrame = (payload: Buffer = Buffer.alloc(0)) => frame(0x4, 0, 0, payload);

/** A PING: the server acknowledges it after everything sent before it, so its ACK says those frames were read. */
export const ping = () => frame(0x6, 0, 0, Buffer.alloc(8));
const PING_ACK = frame(0x6, 0x1, 0, Buffer.alloc(8));

/** HPACK "literal without indexing, new name" for one header. */
function literal(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
}

/** HEADERS opening a call (GetCapabilities unless told) whose request is still to come (END_HEADERS, no END_STREAM). */
export function openCall(stream: number, path = "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities", extra: [string, string][] = []): Buffer {
  const block = Buffer.concat([
    Buffer.from([0x83, 0x86]), // :method POST, :scheme http
    literal(":path", path),
    literal(":authority", "localhost"),
    literal("content-type", "application/grpc"),
    literal("te", "trailers"),
    ...extra.map(([n, v]) => literal(n, v)),
  ]);
  return frame(0x1, 0x4, stream, block);
}

/** DATA carrying one gRPC message (its 5-byte prefix declaring `declared` bytes, by default its length). */
export function message(stream: number, bytes: Uint8Array, end: boolean, declared = bytes.length): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(declared, 1);
  return frame(0x0, end ? 0x1 : 0, stream, Buffer.concat([prefix, bytes]));
}

/** A grpc-status trailer as the server encodes it (a literal, no Huffman). */
export const statusTrailer = (code: number) => Buffer.concat([Buffer.from([0x00, 11]), Buffer.from("grpc-status"), Buffer.from([String(code).length]), Buffer.from(String(code))]);

export interface RawConnection {
  socket: Socket;
  /** Resolves when the server has closed the connection (or it broke). */
  closed: Promise<void>;
  /** Every byte the server sent. */
  received(): Buffer;
  /** Whether the server has acknowledged a PING (and so read what came before it). */
  pinged(): boolean;
}

/** Connects and sends the client preface and an empty SETTINGS, then whatever `first` holds. */
export function rawConnect(port: number, ...first: Buffer[]): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let got = Buffer.alloc(0);
    const closed = new Promise<void>((res) => socket.once("close", () => res()));
    socket.on("data", (d: Buffer) => (got = Buffer.concat([got, d])));
    socket.on("error", () => {});
    socket.once("connect", () => {
      socket.write(Buffer.concat([PREFACE, settingsFrame(), ...first]));
      resolve({ socket, closed, received: () => got, pinged: () => got.includes(PING_ACK) });
    });
    socket.once("error", reject);
  });
}

/** The frames in bytes a server sent (a cut last frame is left out). */
export function framesIn(bytes: Buffer): { type: number; flags: number; stream: number; payload: Buffer }[] {
  const out = [];
  for (let at = 0; at + 9 <= bytes.length; ) {
    const length = bytes.readUIntBE(at, 3);
    if (at + 9 + length > bytes.length) break;
    out.push({ type: bytes[at + 3]!, flags: bytes[at + 4]!, stream: bytes.readUInt32BE(at + 5) & 0x7fffffff, payload: bytes.subarray(at + 9, at + 9 + length) });
    at += 9 + length;
  }
  return out;
}

/** Whether a promise settles within ms. */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<false>((res) => (timer = setTimeout(() => res(false), ms)));
  const r = await Promise.race([p.then(() => true), t]);
  clearTimeout(timer);
  return r;
}
