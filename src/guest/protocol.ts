// What the host (serve-vm) and the guest (--guest-init) agree on.

/** The guest's gRPC port (vsock, or a stream of the serial multiplexer); its control port is the next. */
export const GUEST_GRPC_PORT = 8980;
export const controlPort = (grpcPort: number) => grpcPort + 1;
/** The name serve-vm gives the virtio-serial port that carries the multiplexed streams (QEMU). */
export const MUX_PORT_NAME = "actiond.mux";
/** Sent on the control port: stop the worker, unmount the disks, power off. The guest answers "ok". */
export const SHUTDOWN_COMMAND = "shutdown";
