// A real C workspace for the build benchmarks: Lua 5.1, 5.2, 5.3 and 5.4, zstd and libwebp, as their
// sources come in crates on crates.io (lua-src, zstd-sys, libwebp-sys: one registry this project
// can reach), each package a cc_library: about 290 compile and archive actions, with Bazel's
// auto-configured gcc toolchain (the cc runtime's gcc on actiond's side). The crates are fetched
// once into ~/.cache/actiond-bench and checked against their sha256.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { REPO } from "../support/server";

interface Crate {
  name: string;
  version: string;
  sha256: string;
}

const CRATES: Crate[] = [
  { name: "lua-src", version: "547.0.0", sha256: "1edaf29e3517b49b8b746701e5648ccb5785cde1c119062cbabbc5d5cd115e42" },
  { name: "zstd-sys", version: "2.0.13+zstd.1.5.6", sha256: "38ff0f21cfee8f97d94cef41359e0c89aa6113028ab0291aa8ca0038995a95aa" },
  { name: "libwebp-sys", version: "0.9.6", sha256: "54cd30df7c7165ce74a456e4ca9732c603e8dc5e60784558c1c6dc047f876733" },
];

const LUA = ["5.1.5", "5.2.4", "5.3.6", "5.4.7"];
/** The packages writeCcWorkspace makes, one cc_library each. */
export const CC_PACKAGES = [...LUA.map((v) => `lua${v.split(".").slice(0, 2).join("")}`), "zstd", "webp"];

const CACHE = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "actiond-bench", "crates");

/** The crate's unpacked folder, downloaded and checked the first time. */
async function crate(c: Crate): Promise<string> {
  const dir = join(CACHE, `${c.name}-${c.version}`);
  if (existsSync(join(dir, "Cargo.toml"))) return dir;
  mkdirSync(CACHE, { recursive: true });
  const url = `https://static.crates.io/crates/${c.name}/${c.name}-${c.version}.crate`;
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const sum = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
  if (sum !== c.sha256) throw new Error(`${url}: sha256 ${sum}, expected ${c.sha256}`);
  const file = join(CACHE, `${c.name}-${c.version}.crate`);
  await Bun.write(file, bytes);
  // Unpacked aside, then renamed: an interrupted run never leaves a half-unpacked crate that looks whole.
  const unpacking = mkdtempSync(join(CACHE, ".unpacking-"));
  try {
    const tar = Bun.spawnSync(["tar", "-xzf", file, "-C", unpacking]);
    if (tar.exitCode !== 0) throw new Error(`tar -xzf ${file}: ${tar.stderr.toString()}`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(join(unpacking, `${c.name}-${c.version}`), dir);
  } finally {
    rmSync(unpacking, { recursive: true, force: true });
  }
  return dir;
}

const ZSTD_BUILD = `cc_library(
    name = "zstd",
    srcs = glob(["lib/common/*.c", "lib/compress/*.c", "lib/decompress/*.c", "lib/dictBuilder/*.c", "lib/common/*.h", "lib/compress/*.h", "lib/decompress/*.h", "lib/dictBuilder/*.h"]),
    hdrs = ["lib/zstd.h", "lib/zdict.h", "lib/zstd_errors.h"],
    copts = ["-DZSTD_DISABLE_ASM"],
    includes = ["lib"],
)
`;

const WEBP_BUILD = `cc_library(
    name = "webp",
    srcs = glob(["src/dec/*.c", "src/demux/*.c", "src/dsp/*.c", "src/enc/*.c", "src/mux/*.c", "src/utils/*.c", "sharpyuv/*.c", "src/**/*.h", "sharpyuv/*.h"]),
    hdrs = glob(["src/webp/*.h"]),
    # sharpyuv_cpu.c includes it.
    textual_hdrs = ["src/dsp/cpu.c"],
    includes = ["."],
)
`;

const LUA_BUILD = `cc_library(name = "lua", srcs = glob(["*.c"]), hdrs = glob(["*.h"]), copts = ["-DLUA_USE_POSIX"])\n`;

/** Writes the workspace into ws (which exists and is empty): CC_PACKAGES. */
export async function writeCcWorkspace(ws: string): Promise<void> {
  const [lua, zstd, webp] = await Promise.all(CRATES.map(crate));
  // Offline stand-ins for the repositories Bazel 4.2.3 would download for C++ rules (as the e2e workspace has).
  cpSync(join(REPO, "test/e2e/workspace/third_party"), join(ws, "third_party"), { recursive: true });
  writeFileSync(
    join(ws, "WORKSPACE"),
    ['workspace(name = "ccbench")', ...["rules_cc", "rules_java", "remote_coverage_tools"].map((r) => `local_repository(name = "${r}", path = "third_party/${r}")`)].join("\n") + "\n",
  );
  LUA.forEach((v, i) => {
    cpSync(join(lua!, `lua-${v}`), join(ws, CC_PACKAGES[i]!), { recursive: true });
    writeFileSync(join(ws, CC_PACKAGES[i]!, "BUILD"), LUA_BUILD);
  });
  cpSync(join(zstd!, "zstd", "lib"), join(ws, "zstd", "lib"), { recursive: true });
  writeFileSync(join(ws, "zstd", "BUILD"), ZSTD_BUILD);
  for (const part of ["src", "sharpyuv"]) cpSync(join(webp!, "vendor", part), join(ws, "webp", part), { recursive: true });
  writeFileSync(join(ws, "webp", "BUILD"), WEBP_BUILD);
}

/** How many C files the workspace holds (for the report). */
export function countSources(ws: string): number {
  let n = 0;
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else if (e.name.endsWith(".c")) n++;
    }
  };
  for (const p of CC_PACKAGES) walk(join(ws, p));
  return n;
}
