// web/: the worker seen from a browser or a script, on the gRPC port itself: /metrics (Prometheus
// text), /api/status (JSON), and the summary `actiond status` prints from it.
export { startStatusWeb, type StatusWeb } from "./server";
export { startVmFront, type VmFrontSource } from "./vm-front";
export { statusMetrics, type StatusMetrics } from "./metrics";
export { formatStatus, formatVm } from "./status-text";
export { formatExplain } from "./explain-text";
export type { ActionLogs, ExplainedAction, RecentAction, StatusSnapshot, StatusSource } from "./snapshot";
