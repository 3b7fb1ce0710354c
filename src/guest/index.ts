// guest/: inside the VM. --guest-init (the supervisor /init starts) and the worker's flags.
export { guestInit, guestWorkerArgs } from "./init";
