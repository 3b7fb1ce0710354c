// runtime/: the actions' userland. Runtime images (SquashFS from runtimes/build.ts) made available
// as directories, and the set an action picks from by its libc platform property.
export { MOUNT_METHODS, type MountMethod } from "./images";
export { MANIFEST_FILE, probeLibc, readManifest, type RuntimeManifest } from "./manifest";
export { openRuntimes, type OpenRuntimesOptions, type Runtime, type RuntimeSet } from "./runtimes";
