// zig cross-compiles the native helpers for every target. It comes from PyPI (`ziglang`, a wheel
// holding the zig binary); when it is not on PATH the build installs that pinned version under
// build/tools with pip.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { which } from "bun";

export const ZIG_VERSION = "0.17.1";

/** The directory holding a `zig` executable, installing it first if needed. */
export async function ensureZig(repo: string, say: (msg: string) => void): Promise<string> {
  const onPath = which("zig");
  if (onPath) return join(onPath, "..");
  const dir = join(repo, "build/tools/ziglang-" + ZIG_VERSION);
  const zigDir = join(dir, "ziglang");
  if (existsSync(join(zigDir, "zig"))) return zigDir;
  if (!which("python3") || Bun.spawnSync(["python3", "-m", "pip", "--version"]).exitCode !== 0) {
    throw new Error(`the build needs zig ${ZIG_VERSION} to cross-compile the native helpers: put zig on PATH, or install python3 with pip (apt-get install python3-pip) so the build can fetch ziglang from PyPI`);
  }
  say(`installing zig ${ZIG_VERSION} from PyPI (ziglang) into ${dir}`);
  const pip = Bun.spawnSync(["python3", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--only-binary=:all:", "--target", dir, `ziglang==${ZIG_VERSION}`], { stderr: "pipe" });
  if (pip.exitCode !== 0 || !existsSync(join(zigDir, "zig"))) throw new Error(`pip could not install ziglang==${ZIG_VERSION}:\n${pip.stderr.toString().trim()}`);
  return zigDir;
}
