// The runtime image recipe (runtimes/build.ts) and the loader that makes an image a host directory
// (src/runtime/). The images are built once into build/runtimes/ and cached there, so only
// the first run on a machine pays for the build (about half a minute each, plus the downloads).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { which } from "bun";
import { openRuntimes, type RuntimeManifest, type RuntimeSet } from "../src/runtime";
import { archNamed, hostArchName, isPrivileged, type Logger } from "../src/core";
import { checkoutAssetPath } from "../src/assets";
import { resolvePackages } from "../runtimes/recipe/apt";
import { checkRoot } from "../runtimes/recipe/check";
import { REPO, tempDir as newTempDir } from "./support/server";

const ARCH = hostArchName();
const privileged = isPrivileged();
const IMAGES = join(REPO, "build/runtimes");
const isRoot = process.getuid?.() === 0;
/** The plain user for the rootless case (the CI machine has `tester`), if there is one. */
const tester = Number(Bun.spawnSync(["id", "-u", "tester"]).stdout.toString().trim()) || undefined;
const BUILD_TIMEOUT = 15 * 60_000;

/** Temp dirs of this suite (unpacked runtimes are 20 MB each), removed at the end unless still mounted on. */
const scratch: string[] = [];
function tempDir(prefix: string): string {
  const dir = newTempDir(prefix);
  scratch.push(dir);
  return dir;
}
afterAll(() => {
  const mountinfo = readFileSync("/proc/self/mountinfo", "utf8");
  for (const dir of scratch) if (!mountinfo.includes(` ${dir}/`)) rmSync(dir, { recursive: true, force: true });
});

interface Ran {
  code: number;
  out: string;
  err: string;
}

async function spawn(cmd: string[], opts: { env?: Record<string, string | undefined>; cwd?: string } = {}): Promise<Ran> {
  const proc = Bun.spawn(cmd, { cwd: opts.cwd ?? REPO, env: opts.env ?? process.env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, out, err };
}

/** Runs the recipe; fails the test with its output unless it succeeds. */
async function build(profile: string, ...args: string[]): Promise<{ image: string; out: string }> {
  const r = await spawn([process.execPath, "runtimes/build.ts", "--profile", profile, ...args]);
  if (r.code !== 0) throw new Error(`runtimes/build.ts --profile ${profile} failed:\n${r.out}${r.err}`);
  const outDir = args.includes("--out") ? (args[args.indexOf("--out") + 1] as string) : IMAGES;
  return { image: join(outDir, `${profile}-${ARCH}.sqfs`), out: r.out };
}

function sha256(path: string): string {
  return new Bun.CryptoHasher("sha256").update(readFileSync(path)).digest("hex");
}

/** A logger that keeps every line, to see which method the loader used. */
function captureLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const keep = (level: string) => (msg: string) => lines.push(`${level} ${msg}`);
  return { lines, debug: keep("debug"), info: keep("info"), warn: keep("warn"), error: keep("error") };
}

function mountedFsType(path: string): string | undefined {
  const line = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .find((l) => l.split(" ")[4] === path);
  return line ? line.split(" - ")[1]?.split(" ")[0] : undefined;
}

/**
 * Runs `script` with bash chrooted into a runtime root, in a private mount namespace (so nothing
 * leaks to the host) with /tmp, /dev and /proc mounted on the image's empty mount points, as the
 * sandbox would. `user` is "uid:gid" for chroot --userspec.
 */
async function inRuntime(root: string, script: string, user = "0:0"): Promise<Ran> {
  const setup = 'mount -t tmpfs tmpfs "$R/tmp" && mount --rbind /dev "$R/dev" && mount -t proc proc "$R/proc" && ' +
    'exec chroot --userspec="$U" "$R" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/ /bin/bash -c "$S"';
  return spawn(["unshare", "--mount", "--propagation", "private", "bash", "-c", setup], { env: { ...process.env, R: root, S: script, U: user } });
}

let base: string;
beforeAll(async () => {
  base = (await build("base")).image;
}, BUILD_TIMEOUT);

describe("runtime recipe", () => {
  test("the base image: manifest, merged /usr, sh and awk, /etc basics, copyrights kept, docs pruned", async () => {
    const manifest = JSON.parse((await spawn(["unsquashfs", "-cat", base, "actiond-runtime.json"])).out) as RuntimeManifest;
    expect(manifest).toMatchObject({ name: "base", libc: "glibc2.36", arch: ARCH, debian: "12" });
    expect(Object.keys(manifest.packages)).toEqual(expect.arrayContaining(["libc6", "libgcc-s1", "libstdc++6", "bash", "coreutils", "mawk", "tar"]));
    for (const absent of ["perl-base", "dpkg", "apt", "dash"]) expect(manifest.packages[absent]).toBeUndefined();
    expect(manifest.libc).toBe(`glibc${/^(\d+\.\d+)/.exec(manifest.packages.libc6 ?? "")?.[1]}`);
    expect(Number.isInteger(manifest.sourceDateEpoch)).toBe(true);

    const listing = (await spawn(["unsquashfs", "-lls", base])).out;
    const entries = new Map(listing.split("\n").map((l) => /squashfs-root(\/\S*)(?: -> (\S+))?$/.exec(l)).filter((m) => m !== null).map((m) => [m[1] as string, m[2] ?? ""]));
    expect(entries.get("/bin")).toBe("usr/bin");
    expect(entries.get("/sbin")).toBe("usr/sbin");
    expect(entries.get("/lib")).toBe("usr/lib");
    expect(entries.get("/lib64")).toBe("usr/lib64");
    expect(entries.get("/usr/bin/sh")).toBe("bash");
    expect(entries.get("/usr/bin/awk")).toBe("mawk");
    for (const p of ["/usr/bin/bash", "/usr/lib64/ld-linux-x86-64.so.2", "/usr/share/doc/bash/copyright", "/usr/share/doc/libc6/copyright", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"]) {
      if (ARCH === "x86_64" || !p.includes("x86-64")) expect(entries.has(p)).toBe(true);
    }
    for (const gone of ["/usr/share/man", "/usr/share/info", "/usr/share/locale", "/usr/share/lintian", "/usr/share/common-licenses", `/usr/lib/${ARCH}-linux-gnu/gconv`, "/usr/share/doc/bash/changelog.Debian.gz"]) {
      expect(entries.has(gone)).toBe(false);
    }
    expect([...entries.keys()].filter((p) => p.startsWith("/usr/share/doc/") && p.split("/").length > 5 && !p.endsWith("/copyright"))).toEqual([]);
    expect((await spawn(["unsquashfs", "-cat", base, "etc/hosts"])).out).toBe("127.0.0.1\tlocalhost\n::1\tlocalhost\n");
  });

  test("a second build with the same inputs does nothing", async () => {
    const before = statSync(base).mtimeMs;
    const started = performance.now();
    const { out } = await build("base");
    expect(out).toContain("up to date");
    expect(statSync(base).mtimeMs).toBe(before);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  test("a rebuild elsewhere from the same packages is byte-identical", async () => {
    const out = tempDir("actiond-runtime-repro-");
    const again = await build("base", "--out", out, "--debs", join(IMAGES, "debs"));
    expect(sha256(again.image)).toBe(sha256(base));
  }, BUILD_TIMEOUT);

  test("a missing tool is named with the Debian package to install", async () => {
    const r = await spawn([process.execPath, "runtimes/build.ts"], { env: { ...process.env, PATH: "/nonexistent" } });
    expect(r.code).toBe(1);
    expect(r.err).toContain("apt-get (apt-get install apt)");
    expect(r.err).toContain("dpkg-deb (apt-get install dpkg)");
    expect(r.err).toContain("mksquashfs (apt-get install squashfs-tools)");
  });

  test("a package apt cannot find fails the build instead of being left out", async () => {
    await expect(resolvePackages(["bash", "no-such-package-for-actiond"], archNamed(ARCH))).rejects.toThrow(/no-such-package-for-actiond/);
    const r = await spawn([process.execPath, "runtimes/build.ts", "--profile", "no-such-profile"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("no such profile: no-such-profile");
  });

  test("the linkage check reports a program whose loader or libraries are not in the root", () => {
    const root = tempDir("actiond-runtime-check-");
    mkdirSync(join(root, "usr/bin"), { recursive: true });
    copyFileSync("/usr/bin/true", join(root, "usr/bin/true"));
    const { elfFiles, problems } = checkRoot(root, archNamed(ARCH), ["/bin/sh"]);
    expect(elfFiles).toBe(1);
    expect(problems.some((p) => p.startsWith("/usr/bin/true: interpreter"))).toBe(true);
    expect(problems).toContain("/usr/bin/true: needs libc.so.6, which is not in the image");
    expect(problems).toContain("/bin/sh: missing");
  });
});

describe.skipIf(!isRoot)("commands chrooted into the base runtime (root)", () => {
  let set: RuntimeSet;
  beforeAll(async () => {
    set = await openRuntimes({ images: [base], roots: [], stateDir: tempDir("actiond-runtime-state-"), privileged, log: captureLog() });
  });
  afterAll(() => set.close());

  const script = String.raw`
    set -euo pipefail
    cd "$(mktemp -d)"
    echo "hello world" | cat | sed s/world/runtime/ | awk '{print $2}' | grep -x runtime
    mkdir -p d/e && echo data > d/e/f && find d -type f | grep -qx d/e/f
    tar czf d.tgz d && mkdir out && tar xzf d.tgz -C out && diff -r d out/d && echo tar-gzip-diff-ok
    printf 'b\na\nc\n' | sort | tr -d '\n'; echo
    printf 'x\ny\n' | wc -l
    env | grep -c '^PATH=/usr/bin:/bin$'
    /bin/sh -c 'echo "sh is $0"'
    echo "$(id -u) $(id -g) $(whoami) $(id -gn)"
  `;

  test("bash runs a pipeline of the everyday tools as root", async () => {
    const r = await inRuntime(set.default.root, script);
    expect(r.err).toBe("");
    expect(r.out.trim().split("\n")).toEqual(["runtime", "tar-gzip-diff-ok", "abc", "2", "1", "sh is /bin/sh", "0 0 root root"]);
  });

  test("and as nobody (65534), with names from /etc/passwd and /etc/group", async () => {
    const r = await inRuntime(set.default.root, script, "65534:65534");
    expect(r.err).toBe("");
    expect(r.out.trim().split("\n").at(-1)).toBe("65534 65534 nobody nogroup");
  });

  test("localhost resolves through /etc/hosts (bash's /dev/tcp to a server on 127.0.0.1)", async () => {
    const server = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { data: (s, d) => void s.end(`echo:${d.toString().trim()}\n`) },
    });
    try {
      const r = await inRuntime(set.default.root, `exec 3<>/dev/tcp/localhost/${server.port}; echo ping >&3; read -r line <&3; echo "$line"; (exec 4<>/dev/tcp/nosuchhost.invalid/1) 2>/dev/null || echo unknown-host-fails`);
      expect(r.out).toBe("echo:ping\nunknown-host-fails\n");
    } finally {
      server.stop(true);
    }
  });
});

describe("runtime loader", () => {
  test.skipIf(!isRoot)("as root, the kernel mounts the image; a mount left by a crashed run is reused; close() unmounts", async () => {
    const stateDir = tempDir("actiond-runtime-state-");
    const log = captureLog();
    const first = await openRuntimes({ images: [base], roots: [], stateDir, privileged, log });
    const mnt = join(stateDir, "mnt", sha256(base).slice(0, 16));
    expect(first.default).toMatchObject({ name: "base", libc: "glibc2.36", arch: ARCH, root: mnt, source: base });
    expect(mountedFsType(mnt)).toBe("squashfs");
    expect(log.lines.some((l) => l.includes("mounted with the kernel's squashfs"))).toBe(true);

    // `first` is never closed, as if the server had been killed: the next start adopts its mount.
    const second = await openRuntimes({ images: [base], roots: [], stateDir, privileged, log });
    expect(second.default.root).toBe(mnt);
    expect(log.lines.some((l) => l.includes("reusing the kernel squashfs mount"))).toBe(true);
    await second.close();
    expect(mountedFsType(mnt)).toBeUndefined();
    await second.close(); // twice is harmless
  });

  test.skipIf(!isRoot || !which("squashfuse"))("squashfuse mounts it when asked (as root: usable by nobody), and close() unmounts", async () => {
    const stateDir = tempDir("actiond-runtime-state-");
    const set = await openRuntimes({ images: [base], roots: [], stateDir, privileged, log: captureLog(), methods: ["squashfuse"] });
    expect(mountedFsType(set.default.root)).toStartWith("fuse");
    // Mounted by root with allow_other, so the sandbox's nobody can use it too.
    expect((await inRuntime(set.default.root, "echo works; id -u", "65534:65534")).out).toBe("works\n65534\n");
    await set.close();
    expect(mountedFsType(set.default.root)).toBeUndefined();
  });

  test("without a mount it unpacks the image once; the next start reuses the unpacked copy", async () => {
    const stateDir = tempDir("actiond-runtime-state-");
    const log = captureLog();
    const first = await openRuntimes({ images: [base], roots: [], stateDir, privileged, log, methods: ["extract"] });
    const dir = join(stateDir, "extracted", sha256(base));
    expect(first.default).toMatchObject({ name: "base", libc: "glibc2.36", root: dir });
    expect(existsSync(join(dir, "usr/bin/bash"))).toBe(true);
    await first.close();
    expect(existsSync(join(dir, "usr/bin/bash"))).toBe(true); // kept for the next start
    const second = await openRuntimes({ images: [base], roots: [], stateDir, privileged, log, methods: ["extract"] });
    expect(second.default.root).toBe(dir);
    expect(log.lines.filter((l) => l.includes("unpacked with unsquashfs"))).toHaveLength(1);
    expect(log.lines.filter((l) => l.includes("reusing the extraction"))).toHaveLength(1);
    expect(readdirSync(join(stateDir, "extracted"))).toEqual([sha256(base)]);
  });

  test("two processes unpacking the same image at once both get the one complete copy", async () => {
    const stateDir = tempDir("actiond-runtime-state-");
    const script = join(stateDir, "open.ts");
    writeFileSync(
      script,
      `import { openRuntimes } from ${JSON.stringify(join(REPO, "src/runtime"))};
       const log = { debug() {}, info() {}, warn() {}, error() {} };
       const set = await openRuntimes({ images: [${JSON.stringify(base)}], roots: [], stateDir: ${JSON.stringify(stateDir)}, privileged: ${privileged}, log, methods: ["extract"] });
       console.log(set.default.root);`,
    );
    const runs = await Promise.all([1, 2].map(() => spawn([process.execPath, script])));
    for (const r of runs) expect(r).toMatchObject({ code: 0, err: "" });
    expect(runs.map((r) => r.out.trim())).toEqual([join(stateDir, "extracted", sha256(base)), join(stateDir, "extracted", sha256(base))]);
    expect(readdirSync(join(stateDir, "extracted"))).toEqual([sha256(base)]);
  });

  test.skipIf(!isRoot || tester === undefined)("as a plain user (tester) it falls back on its own, and the unpacked root runs commands", async () => {
    const stateDir = tempDir("actiond-runtime-state-");
    chownSync(stateDir, tester as number, tester as number);
    const script = join(stateDir, "open.ts");
    writeFileSync(
      script,
      `import { openRuntimes } from ${JSON.stringify(join(REPO, "src/runtime"))};
       import { createLogger, isPrivileged } from ${JSON.stringify(join(REPO, "src/core"))};
       const set = await openRuntimes({ images: [${JSON.stringify(base)}], roots: [], stateDir: ${JSON.stringify(stateDir)}, privileged: isPrivileged(), log: createLogger("debug") });
       console.log(set.default.root);
       await set.close();`,
    );
    chmodSync(script, 0o644);
    const r = await spawn(["runuser", "-u", "tester", "--", process.execPath, script], { cwd: stateDir });
    expect(r.code).toBe(0);
    expect(r.err).toContain("kernel not used: needs root");
    expect(r.err).toContain("unpacked with unsquashfs");
    const root = r.out.trim();
    expect(root).toBe(join(stateDir, "extracted", sha256(base)));
    expect(statSync(join(root, "usr/bin/bash")).uid).toBe(tester as number);
    expect((await inRuntime(root, "echo works; id -u", "65534:65534")).out).toBe("works\n65534\n");
  });

  test("a runtime directory: its manifest if it has one, else \"custom\" with the glibc found in it", async () => {
    const withLibc = tempDir("actiond-runtime-root-");
    const triplet = `${ARCH}-linux-gnu`;
    mkdirSync(join(withLibc, "usr/lib", triplet), { recursive: true });
    copyFileSync(`/usr/lib/${triplet}/libc.so.6`, join(withLibc, "usr/lib", triplet, "libc.so.6"));
    const empty = tempDir("actiond-runtime-root-");
    const stateDir = tempDir("actiond-runtime-state-");
    const set = await openRuntimes({ images: [base], roots: [withLibc, empty], stateDir, privileged, log: captureLog(), methods: ["extract"] });
    expect(set.runtimes.map((r) => [r.name, r.libc, r.arch])).toEqual([["base", "glibc2.36", ARCH], ["custom", "glibc2.36", ARCH], ["custom", "unknown", ARCH]]);
    expect(set.runtimes[1]).toMatchObject({ root: withLibc, source: withLibc });

    // pick(): nothing asked → the first; a libc or a name → the first that has it; else undefined.
    expect(set.pick(undefined)).toBe(set.default);
    expect(set.pick("")).toBe(set.default);
    expect(set.default.name).toBe("base");
    expect(set.pick("glibc2.36")).toBe(set.default);
    expect(set.pick("unknown")).toBe(set.runtimes[2]);
    expect(set.pick("base")).toBe(set.default);
    expect(set.pick("glibc2.31")).toBeUndefined();
    expect(set.pick("musl")).toBeUndefined();
    await set.close();
  });

  test("plain errors: no runtime, a missing image, a file that is not SquashFS, a root that is not a directory", async () => {
    const stateDir = tempDir("actiond-runtime-state-");
    const open = (images: string[], roots: string[] = []) => openRuntimes({ images, roots, stateDir, privileged, log: captureLog() });
    await expect(open([])).rejects.toThrow("no runtime given: pass --runtime-image FILE or --runtime-root DIR");
    await expect(open([join(stateDir, "nope.sqfs")])).rejects.toThrow(/nope\.sqfs does not exist/);
    const notSquashfs = join(stateDir, "not.sqfs");
    writeFileSync(notSquashfs, "this is not a filesystem image");
    await expect(open([notSquashfs])).rejects.toThrow(/not\.sqfs is not a SquashFS image/);
    await expect(open([], [notSquashfs])).rejects.toThrow(/not\.sqfs is not a directory/);
    // A bad second runtime must not leave the first one mounted.
    await expect(open([base], [join(stateDir, "missing-dir")])).rejects.toThrow(/missing-dir is not a directory/);
    expect(existsSync(join(stateDir, "mnt", sha256(base).slice(0, 16)))).toBe(false);
  });

  test("when no way works, the error says what to install or which flag to use", async () => {
    const path = process.env.PATH;
    process.env.PATH = "/nonexistent"; // no squashfuse, no unsquashfs
    try {
      const err = await openRuntimes({ images: [base], roots: [], stateDir: tempDir("actiond-runtime-state-"), privileged, log: captureLog(), methods: ["squashfuse", "extract"] }).then(
        async (unexpected) => void (await unexpected.close()),
        (e: Error) => e,
      );
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toContain("squashfuse: squashfuse is not installed (apt-get install squashfuse)");
      expect((err as Error).message).toContain("extract: unsquashfs is not installed (apt-get install squashfs-tools)");
      expect((err as Error).message).toContain("--runtime-root DIR");
    } finally {
      process.env.PATH = path;
    }
  });

  test("a source checkout's default image is build/runtimes/base-<arch>.sqfs", () => {
    expect(checkoutAssetPath("runtime")).toBe(join(REPO, "build/runtimes", `base-${ARCH}.sqfs`));
  });
});

describe("the cc runtime", () => {
  let cc: string;
  beforeAll(async () => {
    cc = (await build("cc")).image;
    console.log(`cc runtime image: ${(statSync(cc).size / 2 ** 20).toFixed(1)} MiB (base: ${(statSync(base).size / 2 ** 20).toFixed(1)} MiB)`);
  }, BUILD_TIMEOUT);

  test.skipIf(!isRoot)("gcc and g++ compile, link and run hello world inside it (as nobody)", async () => {
    const set = await openRuntimes({ images: [cc], roots: [], stateDir: tempDir("actiond-runtime-state-"), privileged, log: captureLog() });
    try {
      expect(set.default).toMatchObject({ name: "cc", libc: "glibc2.36" });
      const r = await inRuntime(
        set.default.root,
        String.raw`
          set -euo pipefail
          cd "$(mktemp -d)"
          printf '#include <stdio.h>\nint main(void) { printf("hello from %%s\\n", "C"); return 0; }\n' > hello.c
          cc -O2 -Wall -o hello hello.c && ./hello
          printf '#include <iostream>\nint main() { std::cout << "hello from C++" << std::endl; }\n' > hello.cc
          c++ -O2 -o hello++ hello.cc && ./hello++
          gcc -c hello.c -o hello.o && ar rcs libhello.a hello.o && gcc -o linked hello.o && ./linked
        `,
        "65534:65534",
      );
      expect(r.err).toBe("");
      expect(r.out).toBe("hello from C\nhello from C++\nhello from C\n");
    } finally {
      await set.close();
    }
  });
});
