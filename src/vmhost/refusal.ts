// Turns a client connection away with a gRPC status it can read instead of a bare reset: a small
// HTTP/2 server answers every call on it with UNAVAILABLE and the reason (Bazel prints it), then
// closes the connection.
import { createServer, type ServerHttp2Stream } from "node:http2";
import type { Socket } from "node:net";

const UNAVAILABLE = 14;
/** How long a turned-away client may take to send its calls and read the answers. */
const LINGER_MS = 5000;

/** grpc-message's encoding: printable ASCII as it is, "%" and everything else percent-encoded (UTF-8). */
function grpcMessage(text: string): string {
  let out = "";
  for (const b of Buffer.from(text)) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  return out;
}

/** Resolves once the connection is closed: after the first call is answered, or LINGER_MS. */
export function refuseCalls(socket: Socket, message: string): Promise<void> {
  const server = createServer();
  server.on("stream", (stream: ServerHttp2Stream) => {
    stream.on("error", () => {});
    // Trailers-only: the status in the response headers, and the stream ends there.
    stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": String(UNAVAILABLE), "grpc-message": grpcMessage(message) }, { endStream: true });
    // GOAWAY once that answer is out: the client knows not to send more calls here.
    stream.session?.close();
  });
  server.on("sessionError", () => {});
  socket.on("error", () => {});
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  const closed = new Promise<void>((resolve) =>
    socket.once("close", () => {
      clearTimeout(timer);
      server.close();
      resolve();
    }),
  );
  server.emit("connection", socket);
  socket.resume();
  return closed;
}
