// cli/: one file per command, turning flags (and their ACTIOND_ variables) into options and wiring
// the layers below into a running command.
export { doctor } from "./doctor";
export { parseFlags, UsageError } from "./flags";
export { SERVE_HELP, parseServeFlags, serve } from "./serve";
export { SERVE_VM_HELP, parseServeVmFlags, serveVm } from "./serve-vm";
export { status } from "./status";
export { logs } from "./logs";
export { explain } from "./explain";
export { VERSION_HELP, versionText } from "./version";
