// What an action cannot take from the machine whether or not cgroups are delegated (issue 16, item
// 9): processes beyond --action-pids, and RAM through /tmp and /dev/shm beyond --action-tmp-size.
// Each runs against a real server, as root and rootless (the server as the plain user "tester").
// On this project's machines no cgroup v2 controller is delegated, so what is checked here is the
// helper's RLIMIT_NPROC and tmpfs sizes; the cgroup path shares the same bounds (boundedLimits).
// The fork bomb is bounded by construction (a tree of 1,023 shells at most), so that on a server
// without the bound it still ends, and cannot starve the host of pids.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { boundedLimits } from "../../src/sandbox";
import { executionClient, run, stderr, stdout } from "../support/actions";
import { ReapiClient } from "../support/client";
import { MAIN, startServer, tempDir, type ServerProcess } from "../support/server";

const PIDS = 64;
const TMP_BYTES = 8 * 2 ** 20;

/** Host pids whose command line contains `marker`. */
function processesWith(marker: string): number[] {
  const found: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, "utf8").includes(marker)) found.push(Number(e));
    } catch {
      // gone while we looked
    }
  }
  return found;
}

/**
 * A binary tree of shells 9 levels deep (1,023 at most), each waiting on a FIFO nobody writes, while
 * the action's own shell counts the processes of its PID namespace for 2 s using builtins only (a
 * fork could fail once the bound is reached), prints the most it saw, and exits: the sandbox then
 * takes the whole tree down.
 */
const forkBomb = (marker: string) => String.raw`
# ${marker}
mkfifo /tmp/never && exec 9<>/tmp/never
bomb() { if [ "$1" -gt 0 ]; then bomb $(($1 - 1)) & bomb $(($1 - 1)) & fi; read -t 60 -u 9; }
bomb 9 &
max=0
for ((i = 0; i < 40; i++)); do
  procs=(/proc/[0-9]*)
  if ((${"$"}{#procs[@]} > max)); then max=${"$"}{#procs[@]}; fi
  read -t 0.05 -u 9
done
echo "max $max"`;

for (const mode of ["root", "rootless"] as const) {
  describe(`action limits (${mode})`, () => {
    let server: ServerProcess;
    let client: ReapiClient;
    let exec: ReturnType<typeof executionClient>;

    beforeAll(async () => {
      server = await startServer({
        root: tempDir(),
        user: mode === "rootless" ? "tester" : undefined,
        args: ["--action-pids", String(PIDS), "--action-tmp-size", "8M", "--jobs", "1"],
      });
      client = new ReapiClient(server.address);
      exec = executionClient(server.address);
    });

    afterAll(async () => {
      exec.close();
      client.close();
      expect(await server.stop()).toBe(0);
    });

    test("an action cannot start more processes than --action-pids: a fork bomb stops there, ends with its action and leaves nothing behind", async () => {
      const marker = `fork-bomb-${mode}-${Math.random()}`;
      const started = Date.now();
      const r = await run(client, exec, { args: ["bash", "-c", forkBomb(marker)], timeoutSeconds: 60, salt: marker });
      const took = Date.now() - started;
      expect(r.response.status?.code ?? 0).toBe(0);
      expect(r.result!.exitCode).toBe(0);
      const max = Number(/^max (\d+)$/m.exec(await stdout(client, r.result))?.[1]);
      // What the namespace's /proc shows: the action's processes and, as root, the helper's PID 1,
      // which runs as root and is not counted with uid 65534 (rootless it is counted).
      expect(max).toBeLessThanOrEqual(PIDS + 1);
      // It did reach the bound (1,023 shells wanted to run), and forks beyond it failed with EAGAIN.
      expect(max).toBeGreaterThan(PIDS / 2);
      expect(await stderr(client, r.result)).toContain("Resource temporarily unavailable");
      // It ended when its shell did, not at the timeout, and took every shell it started with it.
      expect(took).toBeLessThan(30_000);
      expect(processesWith(marker)).toEqual([]);
    }, 90_000);

    test("an action's /tmp and /dev/shm hold at most --action-tmp-size each, and one file per 4 KiB of it", async () => {
      const script = String.raw`
        for d in /tmp /dev/shm; do
          head -c 64M /dev/zero > $d/fill 2>err.txt; echo "$d $? $(stat -c %s $d/fill) $(cat err.txt)"
          rm -f $d/fill
        done
        n=0; while [ $n -lt 100000 ] && : 2>/dev/null > /tmp/e$n; do n=$((n + 1)); done; echo "files $n"`;
      const r = await run(client, exec, { args: ["bash", "-c", script], salt: `${Math.random()}` });
      expect(r.result!.exitCode).toBe(0);
      const lines = (await stdout(client, r.result)).trim().split("\n");
      for (const [i, dir] of ["/tmp", "/dev/shm"].entries()) {
        const [where, code, bytes, ...err] = lines[i]!.split(" ");
        expect(where).toBe(dir);
        expect(code).not.toBe("0");
        expect(err.join(" ")).toContain("No space left on device");
        expect(Number(bytes)).toBeLessThanOrEqual(TMP_BYTES);
        expect(Number(bytes)).toBeGreaterThan(TMP_BYTES - 2 ** 20);
      }
      // Empty files take no pages but kernel memory: nr_inodes (one per 4 KiB) bounds them.
      const files = Number(/^files (\d+)$/m.exec(lines.join("\n"))?.[1]);
      expect(files).toBeLessThanOrEqual(TMP_BYTES / 4096);
      expect(files).toBeGreaterThan(TMP_BYTES / 4096 / 2);
    }, 60_000);

    test("the server keeps serving after an action ran into its limits", async () => {
      const r = await run(client, exec, { args: ["bash", "-c", "echo ok; ls /tmp | wc -l"], salt: `${Math.random()}` });
      expect(r.result!.exitCode).toBe(0);
      // A fresh /tmp: nothing of the earlier actions' files.
      expect(await stdout(client, r.result)).toBe("ok\n0\n");
    });

    test("the server's log says at start which limits apply to actions and which cannot be bounded here", () => {
      const log = server.log();
      expect(log).toContain(`actions are bounded: processes and threads: at most ${PIDS} `);
      expect(log).toContain("/tmp and /dev/shm: at most 8MiB each (tmpfs size=, --action-tmp-size)");
      if (log.includes("cgroup v2 limits cannot be applied")) {
        expect(log).toContain(mode === "root" ? "counted for all running actions together" : "counted per action");
        expect(log).toMatch(/INFO not bounded here: memory: without the cgroup v2 memory controller nothing bounds an action's memory \(RLIMIT_AS is not used/);
      } else {
        expect(log).toContain("memory: at most");
      }
    });
  });
}

describe("action limits, as doctor and the cgroup path see them", () => {
  test("doctor says which limits apply to actions and which cannot be bounded here", () => {
    const r = Bun.spawnSync([process.execPath, MAIN, "doctor", "--root", tempDir(), "--action-pids", "100", "--action-tmp-size", "1G"], { stdout: "pipe", stderr: "pipe" });
    const out = r.stdout.toString();
    expect(out).toMatch(/\n {2}ok {4}action limits +processes and threads: at most 100 /);
    expect(out).toMatch(/\n {2}ok {4}action limits +\/tmp and \/dev\/shm: at most 1GiB each/);
    if (out.includes("per-action cgroup limits (memory, pids, cpu) cannot be applied")) {
      expect(out).toMatch(/\n {2}warn {2}action limits +not bounded here: memory: /);
    }
  });

  // Pure: where cgroups are delegated (not here), these are the values the action's cgroup gets.
  test("with cgroups, an action's platform may ask for less than --action-memory and --action-pids, never for more", () => {
    const bounds = { memoryBytes: 4 * 2 ** 30, pids: 4096, tmpBytes: 2 ** 30 };
    expect(boundedLimits({}, bounds)).toEqual({ limits: { memoryBytes: 4 * 2 ** 30, pids: 4096, cpuCores: undefined }, above: [] });
    expect(boundedLimits({ memoryBytes: 2 ** 30, pids: 16, cpuCores: 1.5 }, bounds).limits).toEqual({ memoryBytes: 2 ** 30, pids: 16, cpuCores: 1.5 });
    const more = boundedLimits({ memoryBytes: 64 * 2 ** 30, pids: 100_000 }, bounds);
    expect(more.limits).toEqual({ memoryBytes: 4 * 2 ** 30, pids: 4096, cpuCores: undefined });
    expect(more.above).toEqual(["memory 64GiB (--action-memory is 4GiB)", "100000 pids (--action-pids is 4096)"]);
  });
});
