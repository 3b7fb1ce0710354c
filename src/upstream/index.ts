// upstream/: a team's cache (any REAPI server) behind the local store: read-through, checked, and
// the results made here pushed to it in the background. The transport is the caller's (a Remote).
export type { Remote, RemoteLimits } from "./remote";
export { UPSTREAM_COUNTERS, UpstreamHealth, type UpstreamCounter } from "./health";
export { startUpstreamTier, type UpstreamTier, type UpstreamTierOptions, type UpstreamWrites } from "./tier";
