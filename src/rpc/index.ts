// rpc/: the gRPC edge. One file per service, each translating wire messages to the store's and the
// executor's types and back; status.ts is the one place an error becomes a wire status.
export { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from "./connections";
export { DEFAULT_MAX_BATCH_BYTES, type ServerContext } from "./context";
export { CallTracker } from "./grpc-service";
export { WIRE_BYTES, grpcServiceDefinition } from "./grpc-client";
export { answersCapabilities } from "./probe";
export { listenText, startServer, type ListenAddress, type RunningServer } from "./server";
export { Stats, type Lookup } from "./stats";
export { UpstreamClient, parseUpstreamUrl, upstreamAuthority, type UpstreamOptions, type UpstreamTarget } from "./upstream-client";
export { startRelay, type Relay } from "./upstream-relay";
