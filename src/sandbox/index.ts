// sandbox/: running one command isolated from the host, and what limits it.
export { CgroupLimiter, cgroupLimitsUnavailable, type ResourceLimits } from "./cgroups";
export { HostProcess } from "./host-process";
export { DEFAULT_ACTION_PIDS, boundedLimits, defaultActionBounds, defaultActionMemory, defaultActionTmpSize, describeActionLimits, logActionLimits, type ActionBounds, type LimitsReport } from "./limits";
export { HELPER_ARGV, NamespaceSandbox } from "./namespaces";
export { probeSandbox, probeSharedDirs, type ProbeOptions } from "./probe";
export { SANDBOX_EXECROOT, SANDBOX_UID, type Sandbox, type SandboxResult, type SandboxRun, type SharedDir } from "./sandbox";
export { TreeRemover } from "./tree-remover";
export { createWorkFolder, type WorkFolder } from "./work-folder";
