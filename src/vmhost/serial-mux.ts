// The host end of the serial multiplexer (the guest end is shim/serial-mux.c): many streams to guest
// ports over one virtio-serial port, for QEMU hosts without /dev/vhost-vsock. Each client connection
// becomes a stream; bytes, half-closes and closes cross as frames:
//   type (1 byte) | stream id (4, big-endian) | length (4, big-endian) | payload
// OPEN carries the port; DATA bytes; EOF a half-close; CLOSE the end of the stream. The guest opens
// streams too, to the host's services (ids with the top bit set): each is joined to that port's Unix
// socket here, or closed at once when nothing serves the port.
import { Duplex } from "node:stream";
import { connect, type Socket } from "node:net";
import type { HostPort } from "./driver";

const OPEN = 1, DATA = 2, EOF = 3, CLOSE = 4;
const HEADER = 9;
/** The guest refuses bigger frames; client chunks are split to fit. */
const MAX_PAYLOAD = 1024 * 1024;
/** Streams the guest opens have ids with this bit. */
const GUEST_ID_BIT = 0x80000000;

export class SerialMux {
  private nextId = 1;
  private readonly streams = new Map<number, Duplex>();
  private pending: Buffer<ArrayBufferLike> = Buffer.alloc(0);

  /** `port`: the connection to QEMU's chardev for the guest's virtio-serial port; `hostPorts`: what the guest may reach here. */
  constructor(
    private readonly port: Socket,
    private readonly hostPorts: readonly HostPort[] = [],
  ) {
    port.on("data", (chunk: Buffer) => this.receive(chunk));
    port.on("close", () => {
      for (const s of this.streams.values()) s.destroy();
      this.streams.clear();
    });
  }

  get openStreams(): number {
    return this.streams.size;
  }

  /** Sends `text` to `guestPort`, half-closes, and resolves with everything the guest answers. */
  request(guestPort: number, text: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const answer: Buffer[] = [];
      const stream = new Duplex({
        allowHalfOpen: true,
        read() {},
        write(chunk: Buffer, _encoding, done) {
          answer.push(chunk);
          done();
        },
        final(done) {
          resolve(Buffer.concat(answer).toString());
          done();
        },
      });
      stream.on("close", () => reject(new Error(`the guest closed port ${guestPort} without an answer`)));
      this.join(stream, guestPort);
      stream.push(text);
      stream.push(null);
    });
  }

  /** Joins `client` (a socket created with allowHalfOpen, or any duplex stream) to `guestPort` in the guest. */
  join(client: Duplex, guestPort: number): void {
    // The guest is gone: nothing would ever answer.
    if (this.port.destroyed) return void client.destroy();
    const id = this.nextId++;
    const port = Buffer.alloc(4);
    port.writeUInt32BE(guestPort);
    this.send(OPEN, id, port);
    this.attach(id, client);
  }

  /** A stream the guest opened to `hostPort`: joined to the socket serving it, or refused. */
  private accept(id: number, payload: Buffer): void {
    const service = payload.length === 4 ? this.hostPorts.find((h) => h.port === payload.readUInt32BE(0)) : undefined;
    if (!service || !(id & GUEST_ID_BIT) || this.streams.has(id)) return this.send(CLOSE, id);
    // Written before it connects is kept by the socket until it does.
    this.attach(id, connect({ path: service.path, allowHalfOpen: true }));
  }

  private attach(id: number, client: Duplex): void {
    this.streams.set(id, client);
    client.on("data", (data: Buffer) => {
      for (let at = 0; at < data.length; at += MAX_PAYLOAD) this.send(DATA, id, data.subarray(at, at + MAX_PAYLOAD));
    });
    client.on("end", () => this.send(EOF, id));
    client.on("close", () => {
      if (this.streams.delete(id)) this.send(CLOSE, id);
    });
    client.on("error", () => client.destroy());
  }

  private send(type: number, id: number, payload: Buffer = Buffer.alloc(0)): void {
    if (this.port.destroyed) return;
    const header = Buffer.alloc(HEADER);
    header.writeUInt8(type, 0);
    header.writeUInt32BE(id, 1);
    header.writeUInt32BE(payload.length, 5);
    this.port.write(payload.length ? Buffer.concat([header, payload]) : header);
  }

  private receive(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let at = 0;
    while (this.pending.length - at >= HEADER) {
      const type = this.pending.readUInt8(at), id = this.pending.readUInt32BE(at + 1), length = this.pending.readUInt32BE(at + 5);
      if (this.pending.length - at < HEADER + length) break;
      const client = this.streams.get(id);
      const payload = this.pending.subarray(at + HEADER, at + HEADER + length);
      at += HEADER + length;
      if (type === OPEN) {
        this.accept(id, Buffer.from(payload));
        continue;
      }
      if (!client) continue;
      if (type === DATA) client.write(Buffer.from(payload));
      else if (type === EOF) client.end();
      else if (type === CLOSE) {
        // After the guest's EOF the client is ending already: let it flush; otherwise cut it off.
        this.streams.delete(id);
        if (!client.writableEnded) client.destroy();
      }
    }
    this.pending = this.pending.subarray(at);
  }
}
