// core/: what every layer shares. Knows nothing of gRPC, the disk layout or the sandbox.
export { archNamed, hostArch, hostArchName, type Arch, type ArchName } from "./arch";
export { systemClock, type Clock } from "./clock";
export { Code, SetupError, StatusError, asStatusError, errnoCode, missingBlobsError, okStatus, type StatusDetail } from "./errors";
export { isLoopback, readFirstBytes, speaks, type Speaks } from "./first-bytes";
export { processAlive, removeTree, removeTreeAsync, writeFileAtomically } from "./fs";
export { hashBytes, hashFile, newHasher, type DigestFunctionName, type Hasher } from "./hashing";
export { LOG_LEVELS, createLogger, type LogLevel, type Logger } from "./log";
export { mountAt, mountHolding, parseMountinfo, readMounts, type MountEntry } from "./mountinfo";
export { isPrivileged } from "./privilege";
export { startProgress, type Progress, type ProgressOptions } from "./progress";
export { formatMiB, formatSize, parseSize } from "./sizes";
export { nextTurn, slices, sortInSlices, timeSlices } from "./slices";
export { WIRE_LEN, WIRE_VARINT, WireReader, WireWriter, asInt64, lengthFieldSize, varintSize } from "./wire";
export { Teardown } from "./teardown";
export { GUEST_GRPC_PORT, GUEST_UPSTREAM_SOCKET, HOST_CONFIG_PORT, HOST_DOWNLOADS_PORT, HOST_UPSTREAM_PORT, MUX_PORT_NAME, SHUTDOWN_COMMAND, controlPort, guestKernelCmdline, parseGuestCmdline, type GuestBoot, type VmState, type WorkerConfig } from "./guest-protocol";
