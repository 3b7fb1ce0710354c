// The soak: trivial actions through one real `actiond serve`, 4 at a time, each executed
// (skip_cache_lookup) and its output read back now and then. The first 10,000 fill the window of
// finished executions the server keeps for WaitExecution (its memory grows by design until then);
// over the 10,000 after them nothing may fail, and the server must end as it was: no descriptor or
// process left behind (the tree remover is its one child), its memory flat.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import type { ExecuteResponse } from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { KEEP_FINISHED_COUNT } from "../src/exec/executions";
import { execute, executionClient, prepareAction, text } from "./support/actions";
import { rssMiB, suiteServer } from "./support/helpers";

const WARM_UP = KEEP_FINISHED_COUNT;
const ACTIONS = WARM_UP + 10_000;
const AT_ONCE = 4;

const suite = suiteServer();

const openFds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

/** Processes whose parent is pid: the sandbox helpers it started, were any left, and its tree remover. */
function children(pid: number): number[] {
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, "utf8");
        return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid;
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

test(`${ACTIONS - WARM_UP} trivial actions after ${WARM_UP}, ${AT_ONCE} at a time: every one succeeds; no descriptor, process or memory is left behind`, async () => {
  const { server, client: c } = suite;
  const pid = server.proc.pid;
  const exec = executionClient(server.address);
  // One action per worker, so no two identical ones are in flight (they would be merged).
  const actions = await Promise.all(
    Array.from({ length: AT_ONCE }, (_, w) => prepareAction(c, { args: ["/bin/sh", "-c", `echo soak ${w} > out.txt`], outputFiles: ["out.txt"], salt: `soak-${w}-${crypto.randomUUID()}` })),
  );
  let done = 0;
  let after: { fds: number; rss: number } | undefined;
  const rss: number[] = [];
  const failures: string[] = [];
  await Promise.all(
    actions.map(async (action, w) => {
      while (done < ACTIONS) {
        done++;
        const ops = await execute(exec, { actionDigest: action, skipCacheLookup: true });
        const response: ExecuteResponse | undefined = ops.at(-1)?.response;
        const out = response?.result?.outputFiles[0];
        if (response?.status?.code !== 0 || response.result?.exitCode !== 0 || !out) failures.push(`action ${done}: ${response?.status?.message ?? "no response"}`);
        else if (done % 500 === w) expect(await text(c, out.digest)).toBe(`soak ${w}\n`);
        if (done === WARM_UP) after = { fds: openFds(pid), rss: rssMiB(pid) };
        if (done % 1000 === 0) rss.push(rssMiB(pid));
      }
    }),
  );
  exec.close();
  expect(failures.slice(0, 5)).toEqual([]);
  console.log(`RSS every 1,000 actions (MiB): ${rss.map((r) => r.toFixed(0)).join(" ")}; descriptors after the warm-up ${after!.fds}, at the end ${openFds(pid)}`);
  // Descriptors: those of the calls still closing may linger a moment, never thousands.
  expect(openFds(pid) - after!.fds).toBeLessThanOrEqual(8);
  // The tree remover starts with the first work folder to remove, and stays; no helper outlives its action.
  expect(children(pid).length).toBeLessThanOrEqual(1);
  expect(rssMiB(pid) - after!.rss).toBeLessThan(48);
}, 900_000);
