// Telling what a new connection speaks by its first bytes, so one port can serve gRPC (HTTP/2) and
// the status page (HTTP/1.1): `actiond serve`'s listener and serve-vm's host both do it.
import type { Socket } from "node:net";

/** Enough of the first bytes to tell the HTTP/2 preface from an HTTP/1.1 request line. */
const FIRST_BYTES = 4;
/** A client that connects and says nothing for this long is not one. */
const FIRST_BYTES_TIMEOUT_MS = 10_000;
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export type Speaks = "h2" | "http1" | "other";

/** What the first bytes say: the HTTP/2 preface, an HTTP/1.1 request line, or neither. */
export function speaks(first: Buffer): Speaks {
  if (PREFACE.subarray(0, FIRST_BYTES).equals(first.subarray(0, FIRST_BYTES))) return "h2";
  return /^[A-Z]{3,7} /.test(first.toString("latin1", 0, 8)) ? "http1" : "other";
}

/** True for a connection from this machine (a Unix socket has no address: it is this machine). */
export function isLoopback(address: string | undefined): boolean {
  return address === undefined || address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127.");
}

/**
 * Reads a connection's first few bytes and hands them over, the socket paused (for whoever takes it:
 * socket.unshift(first) gives them back to the stream); closes it if none come in time.
 */
export function readFirstBytes(socket: Socket, decide: (first: Buffer) => void): void {
  let got: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), FIRST_BYTES_TIMEOUT_MS);
  timer.unref();
  const onData = (chunk: Buffer) => {
    got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
    if (got.length < FIRST_BYTES) return;
    socket.off("data", onData);
    socket.pause();
    clearTimeout(timer);
    decide(got);
  };
  socket.on("data", onData);
  socket.once("close", () => clearTimeout(timer));
  socket.resume();
}
