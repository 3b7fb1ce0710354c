// Whether this process runs as root: it decides the sandbox's shape (root, or rootless with a user
// namespace and an overlay), how runtime images can be mounted, and who owns stored outputs.
export const RUNNING_AS_ROOT = process.getuid?.() === 0;
