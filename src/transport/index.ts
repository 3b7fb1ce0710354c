// transport/: gRPC over HTTP/2, the server's side, straight on a socket (Bun's node:http2 and
// grpc-js cost most of a small call's CPU). HPACK, frames and flow control, calls, routing.
export { GrpcCall, MAX_MESSAGE_BYTES, type WireStatus } from "./call";
export { H2Connection, MAX_FRAME_BYTES } from "./connection";
export { BIG_MESSAGE_BYTES, MessageBudget } from "./message-budget";
export { goAwayFrame, settingsFrame, ErrorCode } from "./frames";
export { serveConnection, type CallHandler, type TransportOptions } from "./server";
