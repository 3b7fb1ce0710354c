// Benchmark: a clean build of N trivial genrules with Bazel 4.2.3, every action executed by a real
// `actiond serve` (--remote_executor), against Bazel's own --spawn_strategy=linux-sandbox, on the
// same machine, in the same run, alternating, several repetitions (medians and their ratio). Also
// actiond's own per-action breakdown (queue, execroot, sandbox start, run, output collection).
//
//   bun test/bench/exec.ts [--genrules 200] [--reps 5] [--jobs 4] [--actiond-jobs N] [--watch-status MS] [--wide-only]
//
// --watch-status MS also runs each actiond build a second time (alternating which goes first) with
// a client asking /api/status and /metrics every MS ms, as the status page does: the page's cost.
//
// Last, wide actions: 1,000 input files each, the same tree every time, sent by our client to a
// server with --shared-input-dirs auto and to one with it off, alternating; each one's execroot time
// (from its ExecutedActionMetadata) next to 1,000 bare hardlinks made in the same run. --wide-only
// runs just that part.
//
// Each repetition: `bazel clean`, then a timed build (Bazel's server stays up between builds, so
// JVM start-up is not counted on either side). actiond starts from an empty --root every time, so
// nothing is a cache hit. Not a `bun test` file.
import { linkSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startServer } from "../support/server";
import { genruleWorkspace } from "./genrule-workspace";
import { buildAction, execute, executionClient, uploadBlobs } from "../support/actions";
import { ReapiClient } from "../support/client";

const { values } = parseArgs({
  options: { genrules: { type: "string", default: "200" }, reps: { type: "string", default: "5" }, jobs: { type: "string", default: "4" }, "actiond-jobs": { type: "string" }, "watch-status": { type: "string" }, "wide-only": { type: "boolean", default: false } },
});
const GENRULES = Number(values.genrules);
const REPS = Number(values.reps);
const BAZEL_JOBS = values.jobs!;
const ACTIOND_JOBS = values["actiond-jobs"] ?? String(availableParallelism());
const WATCH_MS = values["watch-status"] ? Number(values["watch-status"]) : undefined;
const rules = Array.from({ length: GENRULES }, (_, i) => `genrule(name = "g${i}", outs = ["g${i}.txt"], cmd = "echo ${i} > $@")`);
const common = ["--incompatible_strict_action_env", "--noshow_progress", "--color=no", "--curses=no", "--nosandbox_debug", `--jobs=${BAZEL_JOBS}`];
const { tmp, bazel, timedBuild } = genruleWorkspace("actiond-bench-exec-", rules, common);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** CPU time (user + system) a process has used so far, in ms. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** The Bazel server (a JVM named "bazel(ws)") of this workspace. */
function bazelServerPid(): number {
  for (const p of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, "utf8");
      if (cmd.startsWith("bazel(ws)") && cmd.includes(tmp)) return Number(p);
    } catch {}
  }
  throw new Error("no Bazel server process found");
}

async function main() {
  if (values["wide-only"]) {
    await wideActions();
    rmSync(tmp, { recursive: true, force: true });
    return;
  }
  console.log(`${GENRULES} genrules, ${REPS} repetitions, bazel --jobs=${BAZEL_JOBS}, actiond --jobs=${ACTIOND_JOBS} (${availableParallelism()} CPUs)`);
  // Warm-up: Bazel's server starts and analyses once, and both strategies run once untimed.
  await bazel(["build", "//:all", ...common, "--spawn_strategy=linux-sandbox", "--genrule_strategy=linux-sandbox"]);
  const sandbox: number[] = [];
  const actiond: number[] = [];
  const breakdowns: string[] = [];
  // CPU per build: Bazel's JVM in each mode, and actiond's server process.
  const jvmLocal: number[] = [];
  const jvmRemote: number[] = [];
  const serverCpu: number[] = [];
  const watched: number[] = [];
  const watchedCpu: number[] = [];
  const jvm = bazelServerPid();
  /** One actiond build on a fresh root, with the status endpoints polled every WATCH_MS when watch is set: wall and server CPU ms. */
  const watchedBuild = async (rep: number, watch: boolean) => {
    const server = await startServer({ root: join(tmp, `actiond-w-${rep}-${watch}`), args: ["--jobs", ACTIOND_JOBS] });
    let polling = watch;
    const poller = (async () => {
      while (polling) {
        await fetch(`http://${server.address}/api/status`).then((r) => r.arrayBuffer());
        await fetch(`http://${server.address}/metrics`).then((r) => r.arrayBuffer());
        await Bun.sleep(WATCH_MS!);
      }
    })();
    const cpu0 = cpuMs(server.proc.pid);
    const r = await timedBuild([`--remote_executor=grpc://${server.address}`, "--spawn_strategy=remote", "--genrule_strategy=remote", "--remote_local_fallback=false"]);
    const cpu = cpuMs(server.proc.pid) - cpu0;
    polling = false;
    await poller;
    await server.stop();
    rmSync(join(tmp, `actiond-w-${rep}-${watch}`), { recursive: true, force: true });
    return { ms: r.ms, cpu };
  };
  for (let rep = 0; rep <= REPS; rep++) {
    let jvm0 = cpuMs(jvm);
    const local = await timedBuild(["--spawn_strategy=linux-sandbox", "--genrule_strategy=linux-sandbox"]);
    const jvmLocalMs = cpuMs(jvm) - jvm0;
    const server = await startServer({ root: join(tmp, `actiond-${rep}`), args: ["--jobs", ACTIOND_JOBS] });
    jvm0 = cpuMs(jvm);
    const server0 = cpuMs(server.proc.pid);
    const remote = await timedBuild([
      `--remote_executor=grpc://${server.address}`,
      "--spawn_strategy=remote",
      "--genrule_strategy=remote",
      "--remote_local_fallback=false",
    ]);
    const jvmRemoteMs = cpuMs(jvm) - jvm0;
    const serverMs = cpuMs(server.proc.pid) - server0;
    await server.stop();
    rmSync(join(tmp, `actiond-${rep}`), { recursive: true, force: true });
    const breakdown = /executed \d+ actions; ms p50\/p95: (.*)$/m.exec(server.log())?.[1] ?? "?";
    // Repetition 0 warms actiond's side (runtime mount, page cache); it is not counted.
    if (rep === 0) continue;
    if (WATCH_MS !== undefined) {
      // The same build again with the status endpoints polled, before or after an unwatched one in turn.
      const order = rep % 2 === 0 ? [true, false] : [false, true];
      for (const watch of order) {
        const w = await watchedBuild(rep, watch);
        if (watch) {
          watched.push(w.ms);
          watchedCpu.push(w.cpu);
        } else {
          actiond.push(w.ms);
          serverCpu.push(w.cpu);
        }
      }
    }
    sandbox.push(local.ms);
    actiond.push(remote.ms);
    breakdowns.push(breakdown);
    jvmLocal.push(jvmLocalMs);
    jvmRemote.push(jvmRemoteMs);
    serverCpu.push(serverMs);
    console.log(`rep ${rep}: linux-sandbox ${(local.ms / 1000).toFixed(2)} s (${local.summary}) | actiond ${(remote.ms / 1000).toFixed(2)} s (${remote.summary})`);
    console.log(`       actiond per action, ms p50/p95: ${breakdown}`);
    console.log(`       CPU: Bazel JVM ${jvmLocalMs} ms with linux-sandbox, ${jvmRemoteMs} ms with actiond; actiond server ${serverMs} ms`);
  }
  await bazel(["shutdown"]);
  // The same number of trivial actions sent by our own client (Bazel's JVM out of the picture): what
  // actiond itself sustains on this machine.
  const direct: number[] = [];
  for (let rep = 0; rep < REPS; rep++) direct.push(await directRun(join(tmp, `direct-${rep}`)));
  const s = median(sandbox);
  const a = median(actiond);
  const d = median(direct);
  console.log("");
  console.log("| clean build of", GENRULES, "genrules | median wall | per action |");
  console.log("|---|---|---|");
  console.log(`| Bazel --spawn_strategy=linux-sandbox | ${(s / 1000).toFixed(2)} s | ${(s / GENRULES).toFixed(1)} ms |`);
  console.log(`| actiond (--remote_executor) | ${(a / 1000).toFixed(2)} s | ${(a / GENRULES).toFixed(1)} ms |`);
  console.log(`| ratio actiond / linux-sandbox | ${(a / s).toFixed(2)} | |`);
  console.log(`| CPU per build (medians): Bazel JVM | ${median(jvmLocal)} ms (linux-sandbox) | ${median(jvmRemote)} ms (remote) |`);
  console.log(`| CPU per build (median): actiond server process | ${median(serverCpu)} ms | ${(median(serverCpu) / GENRULES).toFixed(1)} ms per action |`);
  if (WATCH_MS !== undefined) {
    console.log(`| actiond, status endpoints polled every ${WATCH_MS} ms | ${(median(watched) / 1000).toFixed(2)} s | ${(median(watched) / GENRULES).toFixed(1)} ms | ${(median(watched) / a).toFixed(2)}× of unwatched, server CPU ${median(watchedCpu)} ms vs ${median(serverCpu)} ms |`);
  }
  console.log(`| ${GENRULES} such actions straight to actiond (our client, ${BAZEL_JOBS} at once, no Bazel) | ${(d / 1000).toFixed(2)} s | ${(d / GENRULES).toFixed(1)} ms |`);
  console.log(JSON.stringify({ genrules: GENRULES, reps: REPS, linuxSandboxMs: sandbox, actiondMs: actiond, directMs: direct, ratio: a / s, jvmLocal, jvmRemote, serverCpu, breakdowns }));
  await wideActions();
  makeWritable(tmp);
  rmSync(tmp, { recursive: true, force: true });
}

/** GENRULES genrule-like actions (echo into an output) executed by our client; wall ms. */
async function directRun(root: string): Promise<number> {
  const server = await startServer({ root, args: ["--jobs", ACTIOND_JOBS] });
  const client = new ReapiClient(server.address);
  const exec = executionClient(server.address);
  const actions: ReturnType<typeof buildAction>["action"][] = [];
  for (let i = 0; i < GENRULES; i++) {
    const built = buildAction({ args: ["/bin/bash", "-c", `echo ${i} > bazel-out/g${i}.txt`], outputFiles: [`bazel-out/g${i}.txt`], salt: root });
    await uploadBlobs(client, built.blobs);
    actions.push(built.action);
  }
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Number(BAZEL_JOBS) }, async () => {
      while (next < actions.length) await execute(exec, { actionDigest: actions[next++]! });
    }),
  );
  const ms = performance.now() - t0;
  exec.close();
  client.close();
  await server.stop();
  rmSync(root, { recursive: true, force: true });
  return ms;
}

const WIDE_FILES = 1000;
/** Actions per server and repetition; with sharing, the first two link their inputs (a directory is laid out on its second sighting). */
const WIDE_ACTIONS = 12;

/** The execroot of an action with 1,000 input files: shared input directories vs linking each file, vs bare hardlinks. */
async function wideActions(): Promise<void> {
  const inputs = Object.fromEntries(Array.from({ length: WIDE_FILES }, (_, i) => [`src/d${i % 10}/f${i}.h`, `header ${i}\n`]));
  const runs: Record<"auto" | "off", { execroot: number[]; start: number[] }> = { auto: { execroot: [], start: [] }, off: { execroot: [], start: [] } };
  const links: number[] = [];
  for (let rep = 0; rep <= REPS; rep++) {
    const order = rep % 2 === 0 ? (["auto", "off"] as const) : (["off", "auto"] as const);
    for (const mode of order) {
      const root = join(tmp, `wide-${mode}-${rep}`);
      const server = await startServer({ root, args: ["--shared-input-dirs", mode] });
      const client = new ReapiClient(server.address);
      const exec = executionClient(server.address);
      for (let n = 0; n < WIDE_ACTIONS; n++) {
        const built = buildAction({ args: ["/bin/sh", "-c", "mkdir -p out && ls src/d0 > out/list"], inputs, outputFiles: ["out/list"], salt: `${rep}-${n}` });
        await uploadBlobs(client, built.blobs);
        const ops = await execute(exec, { actionDigest: built.action });
        if (ops.at(-1)?.response?.result?.exitCode !== 0) throw new Error(`a wide action failed: ${JSON.stringify(ops.at(-1)?.response?.status)}`);
      }
      exec.close();
      client.close();
      await server.stop();
      rmSync(root, { recursive: true, force: true });
      // The server's own p50 over its actions (the two that lay the directories out are the slow tail).
      const phases = /executed \d+ actions; ms p50\/p95: .*execroot ([\d.]+)\/[\d.]+, sandboxStart ([\d.]+)\//m.exec(server.log());
      if (!phases) throw new Error("no phase summary in the server's log");
      if (rep > 0) {
        runs[mode].execroot.push(Number(phases[1]));
        runs[mode].start.push(Number(phases[2]));
      }
    }
    if (rep > 0) links.push(bareLinks(join(tmp, `links-${rep}`)));
  }
  const fmt = (xs: number[]) => `${median(xs).toFixed(2)} ms`;
  console.log("");
  console.log(`| an action with ${WIDE_FILES} input files, ${WIDE_ACTIONS} times (p50; median of ${REPS}) | execroot | sandbox start |`);
  console.log("|---|---|---|");
  console.log(`| --shared-input-dirs auto (goal: execroot ≤ 3 ms) | ${fmt(runs.auto.execroot)} | ${fmt(runs.auto.start)} |`);
  console.log(`| --shared-input-dirs off (a hardlink per file) | ${fmt(runs.off.execroot)} | ${fmt(runs.off.start)} |`);
  console.log(`| ${WIDE_FILES} bare hardlinks on the same filesystem | ${fmt(links)} | |`);
  console.log(JSON.stringify({ wideFiles: WIDE_FILES, shared: runs.auto, linked: runs.off, bareLinksMs: links }));
}

/** Milliseconds for WIDE_FILES hardlinks of one file into an empty folder under dir. */
function bareLinks(dir: string): number {
  mkdirSync(join(dir, "links"), { recursive: true });
  writeFileSync(join(dir, "blob"), "x");
  const t0 = performance.now();
  for (let i = 0; i < WIDE_FILES; i++) linkSync(join(dir, "blob"), join(dir, "links", `f${i}`));
  const ms = performance.now() - t0;
  rmSync(dir, { recursive: true, force: true });
  return ms;
}

function makeWritable(dir: string) {
  Bun.spawnSync(["chmod", "-R", "u+rwX", dir]);
}

await main();
