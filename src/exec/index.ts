// exec/: the Executor, from an action digest to its result: check, queue, execroot, sandbox, outputs.
export { Execution, type Requester } from "./executions";
export type { ExecuteOptions, Executor, WorkerDescription } from "./executor";
export { MAX_TIMEOUT_MS } from "./prepare";
export { followOutput, type OutputStream } from "./output-follow";
export { namespaceSandbox, startLocalExecutor, type BuiltInAssets, type ExecutorDeps, type ExecutorOptions } from "./setup";
export type { SharedDirsUsage } from "./shared-dirs";
export { ExecTimings, type ActionTiming } from "./timings";
export type { ActionRecord, Change, MissExplanation } from "./why-missed";
