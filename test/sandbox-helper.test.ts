// The sandbox helper (shim/sandbox.c), run directly: what an action sees inside (identity, processes,
// network, mounts, /dev), how its end is reported (exit code, signal, status lines), and that nothing
// it starts outlives the helper. The host's /usr and /etc stand in for the runtime image. Run as root,
// every case runs twice: as root, and as an unprivileged uid (1001, through setpriv, which needs no
// passwd entry) with --userns. Run by a plain user, only the second.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, closeSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const REPO = join(import.meta.dir, "..");
const isRoot = process.getuid?.() === 0;
const UNPRIVILEGED_UID = 1001;

interface Mode {
  name: string;
  /** Prefix that runs the helper as the caller this mode is about. */
  wrap: string[];
  userns: boolean;
  /** The host uid the action's files belong to: 65534 as root, the caller with --userns. */
  owner: number;
}
const MODES: Mode[] = isRoot
  ? [
      // With supplementary groups, which the action must not keep.
      { name: "as root", wrap: ["setpriv", "--groups=4,27", "--"], userns: false, owner: 65534 },
      { name: `rootless (uid ${UNPRIVILEGED_UID}, --userns)`, wrap: ["setpriv", `--reuid=${UNPRIVILEGED_UID}`, `--regid=${UNPRIVILEGED_UID}`, "--clear-groups", "--"], userns: true, owner: UNPRIVILEGED_UID },
    ]
  : [{ name: "rootless (--userns)", wrap: [], userns: true, owner: process.getuid?.() ?? 0 }];

// One temp tree, reachable by the unprivileged user: the helper binary and each mode's directories.
const top = mkdtempSync(join(tmpdir(), "actiond-sandbox-test-"));
chmodSync(top, 0o755);
const HELPER = join(top, "bin", "actiond-sandbox");
beforeAll(() => {
  const b = Bun.spawnSync(["bash", join(REPO, "shim", "build.sh"), join(top, "bin")], { stdout: "pipe", stderr: "pipe" });
  if (b.exitCode !== 0) throw new Error(`shim/build.sh failed:\n${b.stderr.toString()}`);
});
afterAll(() => forceRemove(top));

/** rm -rf, also through the mode-0 "work" directory overlayfs leaves in a work dir. */
function forceRemove(path: string): void {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (st?.isDirectory()) {
    if ((st.mode & 0o700) !== 0o700) chmodSync(path, 0o700);
    for (const e of readdirSync(path)) forceRemove(join(path, e));
  }
  rmSync(path, { recursive: true, force: true });
}

/** A directory owned by `owner` (so the action can write it), made under the shared temp tree. */
function ownedDir(name: string, owner: number): string {
  const d = join(top, name);
  mkdirSync(d, { recursive: true, mode: 0o755 });
  if (isRoot) chownSync(d, owner, owner);
  return d;
}

/** The stand-in userland: /usr and /etc read-only, the usr-merge links as the host has them. */
function userland(): string[] {
  const args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"];
  for (const name of ["bin", "lib", "lib64", "sbin"]) {
    const host = `/${name}`;
    if (!existsSync(host)) continue;
    if (lstatSync(host).isSymbolicLink()) args.push("--symlink", readlinkSync(host), host);
    else args.push("--ro-bind", host, host);
  }
  return args;
}

const DEV_NODES = ["null", "zero", "full", "random", "urandom", "tty"];
const ENV = { PATH: "/usr/local/bin:/usr/bin:/bin", LC_ALL: "C" };

interface Result {
  code: number;
  out: string;
  err: string;
  /** The JSON lines written on --status-fd. */
  status: unknown[];
}

interface World {
  mode: Mode;
  execroot: string;
  inputs: string;
  /** Helper command line up to (not including) "--" PROGRAM. */
  argv(extra?: string[], layout?: boolean): string[];
  run(program: string[], opts?: { extra?: string[]; layout?: boolean; env?: Record<string, string> }): Promise<Result>;
  bash(script: string, opts?: { extra?: string[]; env?: Record<string, string> }): Promise<Result>;
}

let runs = 0;
function world(mode: Mode, key: string): World {
  const execroot = ownedDir(`${key}/execroot`, mode.owner);
  const inputs = ownedDir(`${key}/inputs`, mode.owner);
  writeFileSync(join(inputs, "input.txt"), "input\n");
  if (isRoot) chownSync(join(inputs, "input.txt"), mode.owner, mode.owner);
  const layout = () => [...userland(), "--bind", execroot, "/execroot", "--ro-bind", inputs, "/inputs", "--dev", "/dev", "--tmpfs", "/tmp", "--proc", "/proc", "--chdir", "/execroot"];
  const w: World = {
    mode,
    execroot,
    inputs,
    argv: (extra = [], withLayout = true) => [...mode.wrap, HELPER, ...(mode.userns ? ["--userns"] : []), ...(withLayout ? layout() : []), ...extra],
    async run(program, opts = {}) {
      const statusPath = join(top, `status-${++runs}`);
      const statusFd = openSync(statusPath, "w");
      const leaked = openSync("/dev/null", "r"); // an fd the caller forgot to close: must not reach PROGRAM
      try {
        const p = Bun.spawn([...w.argv(opts.extra, opts.layout ?? true), "--status-fd", "3", "--", ...program], {
          stdio: ["ignore", "pipe", "pipe", statusFd, leaked],
          env: opts.env ?? ENV,
        });
        const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
        const text = readFileSync(statusPath, "utf8");
        return { code, out, err, status: text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l)) };
      } finally {
        closeSync(statusFd);
        closeSync(leaked);
      }
    },
    bash: (script, opts = {}) => w.run(["/bin/bash", "-c", script], opts),
  };
  return w;
}

/** Host pids of `sleep ARG` processes (ARG unique per test). */
function sleepers(arg: string): number[] {
  const found: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, "utf8") === `sleep\0${arg}\0`) found.push(Number(e));
    } catch {
      // gone while we looked
    }
  }
  return found;
}

async function until(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

async function readUntil(stream: ReadableStream<Uint8Array>, marker: string): Promise<void> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes(marker)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`stream ended before ${JSON.stringify(marker)}; got ${JSON.stringify(text)}`);
    text += decoder.decode(value, { stream: true });
  }
  reader.releaseLock();
}

/** The lines of /proc/self/status as a map. */
function procStatus(text: string): Map<string, string> {
  return new Map(text.split("\n").filter((l) => l.includes(":")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()] as const));
}

/** Mount point -> per-mount options, from /proc/self/mountinfo. */
function mountOptions(mountinfo: string): Map<string, string[]> {
  return new Map(mountinfo.trim().split("\n").map((l) => { const f = l.split(" "); return [f[4] ?? "", (f[5] ?? "").split(",")] as const; }));
}

describe("actiond-sandbox command line", () => {
  test("--version and --help answer without setting anything up", () => {
    const v = Bun.spawnSync([HELPER, "--version"]);
    expect(v.exitCode).toBe(0);
    expect(v.stdout.toString()).toMatch(/^actiond-sandbox \d+\.\d+\.\d+\n$/);
    const h = Bun.spawnSync([HELPER, "--help"]);
    expect(h.exitCode).toBe(0);
    for (const flag of ["--userns", "--ro-bind", "--overlay", "--dev", "--status-fd", "--cgroup", "--nproc", "--tmpfs-size", "--args-fd"]) expect(h.stdout.toString()).toContain(flag);
  });

  test("bad command lines are one line on stderr and exit 125", () => {
    for (const args of [["--bogus", "--", "true"], ["--uid"], ["--uid", "x", "--", "true"], ["--bind", "/usr", "relative", "--", "true"], ["--tmpfs", "/tmp"], ["--status-fd", "2", "--", "true"], ["--chdir", "/", "--chdir", "/", "--", "true"], ["--nproc", "0", "--", "true"], ["--tmpfs-size", "lots", "--", "true"], ["--args-fd", "2", "--", "true"], ["--args-fd", "99", "--", "true"]]) {
      const r = Bun.spawnSync([HELPER, ...args], { stderr: "pipe" });
      expect(r.exitCode).toBe(125);
      expect(r.stderr.toString()).toMatch(/^actiond-sandbox: [^\n]+\n$/);
    }
  });
});

for (const [i, mode] of MODES.entries()) {
  describe(`actiond-sandbox ${mode.name}`, () => {
    const w = world(mode, `mode${i}`);

    test("the action runs as 65534:65534 with no groups, no capabilities, no_new_privs and the seccomp filter", async () => {
      const r = await w.run(["cat", "/proc/self/status"]);
      expect(r.code).toBe(0);
      const s = procStatus(r.out);
      expect(s.get("Uid")?.split(/\s+/)).toEqual(["65534", "65534", "65534", "65534"]);
      expect(s.get("Gid")?.split(/\s+/)).toEqual(["65534", "65534", "65534", "65534"]);
      expect(s.get("Groups")).toBe("");
      for (const set of ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]) expect([set, s.get(set)]).toEqual([set, "0000000000000000"]);
      expect(s.get("NoNewPrivs")).toBe("1");
      expect(s.get("Seccomp")).toBe("2");
    });

    test("it sees only its own processes: it is PID 2, under the sandbox's init", async () => {
      const r = await w.bash("echo $$; echo /proc/[0-9]*");
      expect(r.out).toBe("2\n/proc/1 /proc/2\n");
    });

    test("the network is a loopback of its own: the host's 127.0.0.1 is out of reach, its own works", async () => {
      const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => void s.end("host\n"), data() {} } });
      try {
        const port = server.port;
        const probe = `if (exec 3<>/dev/tcp/127.0.0.1/${port}) 2>/dev/null; then echo reached; else echo unreachable; fi`;
        expect(Bun.spawnSync(["bash", "-c", probe]).stdout.toString()).toBe("reached\n"); // from the host it is there
        // Inside, the same port is free, and a listener there answers (so lo is up).
        const r = await w.bash(`${probe}
          perl -MIO::Socket::INET -e '
            my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => ${port}, Listen => 1, ReuseAddr => 1) or die "listen: $!";
            exit 0 if fork;
            my $c = $s->accept; print $c "inside\\n";'
          exec 4<>/dev/tcp/127.0.0.1/${port}; read -r line <&4; echo "got $line"
          tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "`);
        expect(r.err).toBe("");
        expect(r.out).toBe("unreachable\ngot inside\nlo\n");
      } finally {
        server.stop(true);
      }
    });

    test("the root, the read-only binds and /dev are read-only; /execroot, /tmp and /dev/shm are writable", async () => {
      const r = await w.bash(`for d in / /usr /etc /inputs /dev /execroot /tmp /dev/shm; do
          if out=$(mkdir "$d/probe-ro" 2>&1); then echo "$d writable"
          else case "$out" in *"Read-only file system"*) echo "$d read-only";; *) echo "$d: $out";; esac; fi
        done
        echo changed 2>&1 >/inputs/input.txt | grep -o "Read-only file system"
        cat /proc/self/mountinfo >&2`);
      expect(r.out).toBe(
        ["/ read-only", "/usr read-only", "/etc read-only", "/inputs read-only", "/dev read-only", "/execroot writable", "/tmp writable", "/dev/shm writable", "Read-only file system", ""].join("\n"),
      );
      expect(readFileSync(join(w.inputs, "input.txt"), "utf8")).toBe("input\n");
      expect(statSync(join(w.execroot, "probe-ro")).uid).toBe(mode.owner);
      const opts = mountOptions(r.err);
      for (const [mnt, want] of [["/", "ro"], ["/usr", "ro"], ["/inputs", "ro"], ["/execroot", "rw"], ["/tmp", "rw"]] as const) {
        expect([mnt, opts.get(mnt)]).toEqual([mnt, expect.arrayContaining([want, "nosuid", "nodev"])]);
      }
      expect(opts.get("/dev")).toEqual(expect.arrayContaining(["ro", "nosuid", "noexec"]));
    });

    test("nothing of the host is there but what was bound", async () => {
      const r = await w.bash("ls -A /; for p in /root /home /work /sys /var " + JSON.stringify(top) + "; do [ -e $p ] && echo \"$p exists\"; done; true");
      const expected = ["bin", "dev", "etc", "execroot", "inputs", "lib", "lib64", "proc", "sbin", "tmp", "usr"].filter((n) => !["bin", "lib", "lib64", "sbin"].includes(n) || existsSync(`/${n}`));
      expect(r.out.trim().split("\n")).toEqual(expected);
    });

    test("/dev holds exactly the minimal set, and the nodes work", async () => {
      const r = await w.bash(`ls -A /dev; echo data > /dev/null && echo null-ok; head -c 4 /dev/zero | od -An -tx1
        echo x 2>&1 >/dev/full | grep -o "No space left on device"; head -c 16 /dev/urandom | wc -c; readlink /dev/stdout /dev/ptmx
        script -qec tty /dev/null </dev/null | tr -d "\r"`);
      const nodes = DEV_NODES.filter((n) => existsSync(`/dev/${n}`));
      const listing = [...nodes, "fd", "ptmx", "pts", "shm", "stderr", "stdin", "stdout"].sort();
      expect(r.out).toBe([...listing, "null-ok", " 00 00 00 00", "No space left on device", "16", "/proc/self/fd/1", "pts/ptmx", "/dev/pts/0", ""].join("\n"));
    });

    test("hostname is localhost, or --hostname", async () => {
      expect((await w.run(["cat", "/proc/sys/kernel/hostname"])).out).toBe("localhost\n");
      expect((await w.run(["hostname"], { extra: ["--hostname", "build-box"] })).out).toBe("build-box\n");
    });

    test("PROGRAM gets the helper's environment, is looked up on its PATH, and keeps no fd but stdio", async () => {
      const r = await w.run(["bash", "-c", 'echo "$ACTIOND_VALUE"; ls /proc/$$/fd; true'], { env: { ...ENV, ACTIOND_VALUE: "a b 'c'" } });
      expect(r.out).toBe("a b 'c'\n0\n1\n2\n");
    });

    test("the exit code is mirrored, and reported after the ready line", async () => {
      const r = await w.bash("echo out; echo err >&2; exit 42");
      expect([r.code, r.out, r.err, r.status]).toEqual([42, "out\n", "err\n", [{ ready: true }, { exit_code: 42 }]]);
      const ok = await w.run(["true"]);
      expect([ok.code, ok.status]).toEqual([0, [{ ready: true }, { exit_code: 0 }]]);
    });

    test("a program killed by a signal exits 128+N and reports the signal", async () => {
      const r = await w.bash("kill -KILL $$");
      expect([r.code, r.status]).toEqual([137, [{ ready: true }, { signal: 9 }]]);
      const t = await w.bash("kill -TERM $$");
      expect([t.code, t.status]).toEqual([143, [{ ready: true }, { signal: 15 }]]);
    });

    test("a program that cannot be executed is an error line and exit 127", async () => {
      const r = await w.run(["no-such-program"]);
      expect(r.code).toBe(127);
      expect(r.status).toEqual([{ ready: true }, { error: "execvp no-such-program: No such file or directory" }]);
      expect(r.err).toBe("actiond-sandbox: execvp no-such-program: No such file or directory\n");
    });

    test("a sandbox that cannot be set up is one error line naming the step and path, and exit 125", async () => {
      const missing = join(top, "missing");
      const a = await w.run(["true"], { extra: ["--ro-bind", missing, "/missing"] });
      expect([a.code, a.status]).toEqual([125, [{ error: `--ro-bind: cannot open source ${missing}: No such file or directory` }]]);
      expect(a.err).toBe(`actiond-sandbox: --ro-bind: cannot open source ${missing}: No such file or directory\n`);
      const b = await w.run(["true"], { extra: ["--chdir", "/nowhere"], layout: false });
      expect([b.code, b.status]).toEqual([125, [{ error: "chdir /nowhere (--chdir): No such file or directory" }]]);
    });

    test("the kernel keyrings are out of reach: add_key, request_key and keyctl fail with EPERM", async () => {
      // Every action runs as the same uid: a key one left would be readable by the next, and one
      // could use up that uid's key quota for all. (Numbers: add_key, request_key, keyctl.)
      const nr = process.arch === "arm64" ? [217, 218, 219] : [248, 249, 250];
      const probe = `
        my ($type, $name, $data) = ("user", "actiond-test", "secret");
        syscall(${nr[0]}, $type, $name, $data, 6, -4) < 0 and print "add_key: $!\n";
        syscall(${nr[1]}, $type, $name, 0, 0) < 0 and print "request_key: $!\n";
        syscall(${nr[2]}, 0, -4, 0) < 0 and print "keyctl: $!\n";`;
      const r = await w.run(["perl", "-e", probe]);
      expect(r.out).toBe("add_key: Operation not permitted\nrequest_key: Operation not permitted\nkeyctl: Operation not permitted\n");
      // Outside the sandbox they work, so the refusal is the filter's.
      const outside = Bun.spawnSync(["perl", "-e", `syscall(${nr[2]}, 0, -4, 0) < 0 ? print "keyctl: $!\n" : print "keyctl: ok\n";`]);
      expect(outside.stdout.toString()).toBe("keyctl: ok\n");
    });

    test("socket(AF_VSOCK) and io_uring_setup fail with EPERM", async () => {
      // Both work outside the sandbox here (io_uring_setup is 425 on x86_64 and aarch64 alike).
      const ioUring = process.arch === "x64" || process.arch === "arm64" ? 'my $p = "\\0" x 120; syscall(425, 1, $p) < 0 and print "io_uring: $!\\n";' : 'print "io_uring: Operation not permitted\\n";';
      const r = await w.run(["perl", "-e", `socket(my $s, 40, 1, 0) or print "vsock: $!\\n"; ${ioUring}`]);
      expect(r.out).toBe("vsock: Operation not permitted\nio_uring: Operation not permitted\n");
    });

    test("--overlay: writes and chmods of a hardlinked input go to UPPER; LOWER and the other links stay as they were", async () => {
      const base = ownedDir(`overlay-${i}`, mode.owner);
      const [lower, upper, work] = ["lower", "upper", "work"].map((n) => ownedDir(`overlay-${i}/${n}`, mode.owner)) as [string, string, string];
      const stored = join(base, "stored-blob"); // as in the CAS: read-only, owned by the action's user
      writeFileSync(stored, "original\n");
      if (isRoot) chownSync(stored, mode.owner, mode.owner);
      chmodSync(stored, 0o444);
      linkSync(stored, join(lower, "input"));
      const r = await w.bash("cd /ovl && chmod u+w input && echo changed > input && cat input", { extra: ["--overlay", lower, upper, work, "/ovl"] });
      expect([r.code, r.out, r.err]).toEqual([0, "changed\n", ""]);
      expect(readFileSync(stored, "utf8")).toBe("original\n");
      expect(statSync(stored).mode & 0o777).toBe(0o444);
      expect(readFileSync(join(upper, "input"), "utf8")).toBe("changed\n");
      forceRemove(base);
    });

    test("--args-fd: the arguments FD holds stand in its place, PROGRAM's too, and stay out of argv; an unterminated one is refused", async () => {
      const spec = join(top, `args-${i}`);
      const script = 'echo "$0 $1 $(hostname)"; tr "\\0" " " </proc/1/cmdline';
      writeFileSync(spec, [...w.argv([], true).slice(mode.wrap.length + 1), "--hostname", "from-fd", "--", "bash", "-c", script, "prog", "arg one"].map((a) => `${a}\0`).join(""));
      const run = async (file: string) => {
        const fd = openSync(file, "r");
        try {
          const p = Bun.spawn([...mode.wrap, HELPER, "--args-fd", "5"], { stdio: ["ignore", "pipe", "pipe", "ignore", "ignore", fd], env: ENV });
          const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
          return { out, err, code };
        } finally {
          closeSync(fd);
        }
      };
      const r = await run(spec);
      expect([r.code, r.err]).toEqual([0, ""]);
      expect(r.out).toBe(`prog arg one from-fd\n${HELPER} --args-fd 5 `);
      writeFileSync(spec, "--hostname\0cut-short");
      const bad = await run(spec);
      expect([bad.code, bad.err]).toEqual([125, "actiond-sandbox: --args-fd 5: the last argument does not end with a NUL byte\n"]);
    });

    test("--nproc sets PROGRAM's RLIMIT_NPROC; --tmpfs-size bounds each --tmpfs and /dev/shm, with an inode per 4 KiB", async () => {
      const r = await w.bash("ulimit -u; ulimit -Hu; df -B1 --output=size,itotal /tmp /dev/shm | tail -n 2", { extra: ["--nproc", "50", "--tmpfs-size", "4194304"] });
      expect(r.out.split(/\s+/).filter(Boolean)).toEqual(["50", "50", "4194304", "1024", "4194304", "1024"]);
    });

    /** Starts `sleep ARG` in the background inside; returns once it runs on the host. */
    async function startSleeper(statusFd?: number) {
      const arg = `${1000 + Math.floor(Math.random() * 1e6) / 1e6}`;
      const p = Bun.spawn([...w.argv(), ...(statusFd === undefined ? [] : ["--status-fd", "3"]), "--", "bash", "-c", `sleep ${arg} & echo started; wait`], {
        stdio: ["ignore", "pipe", "ignore", ...(statusFd === undefined ? [] : [statusFd])],
        env: ENV,
      });
      await readUntil(p.stdout, "started");
      await until("the sleep to start", () => sleepers(arg).length === 1);
      return { p, arg };
    }
    /** If the test failed half-way, leave nothing running. */
    function cleanUp(p: { kill(sig: "SIGKILL"): void }, arg: string) {
      p.kill("SIGKILL");
      for (const pid of sleepers(arg)) process.kill(pid, "SIGKILL");
    }

    test("SIGKILL of the helper kills everything the action started", async () => {
      const { p, arg } = await startSleeper();
      try {
        p.kill("SIGKILL");
        await p.exited;
        await until("the sleep to die with the helper", () => sleepers(arg).length === 0);
      } finally {
        cleanUp(p, arg);
      }
    });

    test("SIGTERM to the helper kills the action (exit 137, signal 9) and everything it started", async () => {
      const statusPath = join(top, `status-term-${i}`);
      const fd = openSync(statusPath, "w");
      const { p, arg } = await startSleeper(fd).finally(() => closeSync(fd));
      try {
        p.kill("SIGTERM");
        await until("the helper to exit", () => p.exitCode !== null);
        expect(p.exitCode).toBe(137);
        expect(readFileSync(statusPath, "utf8")).toBe('{"ready":true}\n{"signal":9}\n');
        expect(sleepers(arg)).toEqual([]);
      } finally {
        cleanUp(p, arg);
      }
    });

    if (mode.userns) {
      test("without --userns a non-root caller is refused with a clear message", () => {
        const r = Bun.spawnSync([...mode.wrap, HELPER, "--", "true"], { stderr: "pipe" });
        expect(r.exitCode).toBe(125);
        expect(r.stderr.toString()).toBe(`actiond-sandbox: running as uid ${isRoot ? UNPRIVILEGED_UID : process.getuid?.()} needs --userns: only root can create the namespaces without a user namespace\n`);
      });
    }
  });
}

// cgroup v2: the helper joins the directory before it creates anything. Needs root and a writable
// cgroup2 hierarchy (limits cannot be checked on every machine; membership can).
const cgroup2 = readFileSync("/proc/self/mountinfo", "utf8").split("\n").map((l) => l.split(" ")).find((f) => f[f.indexOf("-") + 1] === "cgroup2")?.[4];
describe("actiond-sandbox --remove-trees", () => {
  test("removes each tree it is given, however deep and however its modes were left, answering a line per path", () => {
    const base = mkdtempSync(join(top, "remove-"));
    // 4,000 levels: deeper than any path can reach (a path-based removal fails with ENAMETOOLONG).
    const deep = join(base, "deep");
    mkdirSync(deep);
    const chain = Bun.spawnSync(["bash", "-c", "cd $0 && p=$(printf 'd/%.0s' $(seq 500)); for i in $(seq 8); do mkdir -p $p && cd $p; done; echo bottom > f", deep]);
    expect(chain.exitCode).toBe(0);
    // Empty directories beside files, a directory with no permissions at all, a read-only one with entries.
    const odd = join(base, "odd");
    mkdirSync(join(odd, "empty"), { recursive: true });
    mkdirSync(join(odd, "locked/inner"), { recursive: true });
    writeFileSync(join(odd, "locked/inner/x"), "x");
    writeFileSync(join(odd, "file"), "f");
    chmodSync(join(odd, "locked/inner"), 0o555);
    chmodSync(join(odd, "locked"), 0);
    const r = Bun.spawnSync([HELPER, "--remove-trees"], { stdin: Buffer.from(`${deep}\0${odd}\0${join(base, "never-there")}\0`) });
    expect(r.stdout.toString()).toBe("ok\nok\nok\n");
    expect(readdirSync(base)).toEqual([]);
    rmdirSync(base);
  });
});

describe("actiond-sandbox --cgroup", () => {
  test.skipIf(!isRoot || !cgroup2)("every process of the action is in the given cgroup", async () => {
    const w = world(MODES[0]!, "cgroup");
    const name = `actiond-sandbox-test-${process.pid}`;
    const dir = join(cgroup2!, name);
    mkdirSync(dir);
    try {
      const r = await w.bash("grep '^0::' /proc/self/cgroup; sleep 0.01 & grep '^0::' /proc/$!/cgroup", { extra: ["--cgroup", dir] });
      expect(r.out).toBe(`0::/${name}\n0::/${name}\n`);
    } finally {
      rmdirSync(dir);
    }
    const bad = await w.run(["true"], { extra: ["--cgroup", join(cgroup2!, "actiond-no-such-group")] });
    expect([bad.code, bad.status]).toEqual([125, [{ error: `--cgroup: open ${cgroup2}/actiond-no-such-group/cgroup.procs: No such file or directory` }]]);
  });
});
