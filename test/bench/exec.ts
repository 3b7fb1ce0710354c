// Benchmark: a clean build of N trivial genrules with Bazel 4.2.3, every action executed by a real
// `actiond serve` (--remote_executor), against Bazel's own --spawn_strategy=linux-sandbox, on the
// same machine, in the same run, alternating, several repetitions (medians and their ratio). Also
// actiond's own per-action breakdown (queue, execroot, sandbox start, run, output collection).
//
//   bun test/bench/exec.ts [--genrules 200] [--reps 5] [--jobs 4] [--actiond-jobs N] [--watch-status MS] [--sdk-files N] [--shared-input-dirs auto|off] [--actiond-arg FLAG]... [--parts genrules,wide,cc] [--cc-variant "FLAGS"]...
//
// --sdk-files N gives every genrule the same N input files besides (a package sdk/, as a toolchain
// or a library's headers would be): the build then measures staging inputs too.
//
// --watch-status MS also runs each actiond build a second time (alternating which goes first) with
// a client asking /api/status and /metrics every MS ms, as the status page does: the page's cost.
//
// Last, wide actions: 1,000 input files each, the same tree every time, sent by our client to a
// server with --shared-input-dirs auto and to one with it off, alternating; each one's execroot time
// (from its ExecutedActionMetadata) next to 1,000 bare hardlinks made in the same run.
//
// Then a real C build (cc-workspace.ts: Lua 5.1–5.4, zstd and libwebp from crates.io, about 290
// actions) with linux-sandbox and through actiond (its cc runtime), alternating.
//
// --parts runs some of the three (genrules, wide, cc); all by default. --actiond-arg passes a flag
// to every actiond started (--actiond-arg=--jobs=4).
//
// Each repetition: `bazel clean`, then a timed build (Bazel's server stays up between builds, so
// JVM start-up is not counted on either side). actiond starts from an empty --root every time, so
// nothing is a cache hit; the genrules also run on one actiond kept for the whole run, each
// repetition's actions salted so they miss too. Not a `bun test` file.
import { linkSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startServer } from "../support/server";
import { bazelWorkspace, genruleWorkspace } from "./genrule-workspace";
import { CC_PACKAGES, countSources, writeCcWorkspace } from "./cc-workspace";
import { checkoutAssetPath } from "../../src/assets";
import { buildAction, execute, executionClient, uploadBlobs } from "../support/actions";
import { ReapiClient } from "../support/client";

const { values } = parseArgs({
  options: { genrules: { type: "string", default: "200" }, reps: { type: "string", default: "5" }, jobs: { type: "string", default: "4" }, "actiond-jobs": { type: "string" }, "watch-status": { type: "string" }, parts: { type: "string", default: "genrules,wide,cc" }, "sdk-files": { type: "string", default: "0" }, "shared-input-dirs": { type: "string", default: "auto" }, "actiond-arg": { type: "string", multiple: true, default: [] }, "cc-variant": { type: "string", multiple: true, default: [] } },
});
const GENRULES = Number(values.genrules);
const REPS = Number(values.reps);
const BAZEL_JOBS = values.jobs!;
const ACTIOND_JOBS = values["actiond-jobs"] ?? String(availableParallelism());
const WATCH_MS = values["watch-status"] ? Number(values["watch-status"]) : undefined;
/** More flags for every actiond the benchmark starts (--actiond-arg=--jobs=4, say). */
const EXTRA = values["actiond-arg"]!;
const SDK_FILES = Number(values["sdk-files"]);
const sdk: Record<string, string> = SDK_FILES === 0 ? {} : { "sdk/BUILD": 'filegroup(name = "sdk", srcs = glob(["**/*.h"]), visibility = ["//visibility:public"])\n' };
for (let i = 0; i < SDK_FILES; i++) sdk[`sdk/d${i % 10}/f${i}.h`] = `header ${i}\n`;
const srcs = SDK_FILES === 0 ? "" : `srcs = ["//sdk"], `;
const rules = Array.from({ length: GENRULES }, (_, i) => `genrule(name = "g${i}", ${srcs}outs = ["g${i}.txt"], cmd = "echo ${i} > $@")`);
const common = ["--incompatible_strict_action_env", "--noshow_progress", "--color=no", "--curses=no", "--nosandbox_debug", `--jobs=${BAZEL_JOBS}`];
const { tmp, bazel, timedBuild } = genruleWorkspace("actiond-bench-exec-", rules, common, sdk);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The flags every actiond of the benchmark gets, then `more`. */
const serverArgs = (...more: string[]) => ["--jobs", ACTIOND_JOBS, "--shared-input-dirs", values["shared-input-dirs"]!, ...EXTRA, ...more];

/** The per-action phases (p50/p95) of the last summary a server logged. */
function phasesIn(log: string): string {
  return [...log.matchAll(/executed \d+ actions; ms p50\/p95: (.*)$/gm)].at(-1)?.[1] ?? "?";
}

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
  const parts = values.parts!.split(",");
  const unknown = parts.filter((p) => !["genrules", "wide", "cc"].includes(p));
  if (unknown.length > 0) throw new Error(`--parts: no part named ${unknown.join(", ")} (genrules, wide, cc)`);
  if (parts.includes("genrules")) await genruleBuilds();
  if (parts.includes("wide")) await wideActions();
  if (parts.includes("cc")) await ccBuilds();
  makeWritable(tmp);
  rmSync(tmp, { recursive: true, force: true });
}

/** Clean builds of the genrules with linux-sandbox and through actiond (fresh and kept running), alternating; then our client alone. */
async function genruleBuilds() {
  console.log(`${GENRULES} genrules${SDK_FILES > 0 ? ` with ${SDK_FILES} sdk input files each` : ""}, ${REPS} repetitions, bazel --jobs=${BAZEL_JOBS}, actiond --jobs=${ACTIOND_JOBS} (${availableParallelism()} CPUs)`);
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
  // A user's actiond runs all day: besides a fresh server per build (its first build, JIT and all),
  // one server kept for the whole run, each repetition's actions made new by an --action_env salt
  // (every side of a repetition gets the same), so nothing on it is a cache hit either.
  const warm = await startServer({ root: join(tmp, "actiond-warm"), args: serverArgs() });
  const warmWalls: number[] = [];
  const warmCpu: number[] = [];
  const remoteFlags = (address: string) => [`--remote_executor=grpc://${address}`, "--spawn_strategy=remote", "--genrule_strategy=remote", "--remote_local_fallback=false"];
  /** One actiond build on a fresh root, with the status endpoints polled every WATCH_MS when watch is set: wall and server CPU ms. */
  const watchedBuild = async (rep: number, watch: boolean) => {
    const server = await startServer({ root: join(tmp, `actiond-w-${rep}-${watch}`), args: serverArgs() });
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
    const salt = `--action_env=ACTIOND_BENCH_REP=${rep}`;
    const warmFirst = rep % 2 === 1;
    const warmBuild = async () => {
      const cpu0 = cpuMs(warm.proc.pid);
      const r = await timedBuild([salt, ...remoteFlags(warm.address)]);
      if (rep > 0) {
        warmWalls.push(r.ms);
        warmCpu.push(cpuMs(warm.proc.pid) - cpu0);
      }
      return r;
    };
    const warmRun = warmFirst ? await warmBuild() : undefined;
    let jvm0 = cpuMs(jvm);
    const local = await timedBuild([salt, "--spawn_strategy=linux-sandbox", "--genrule_strategy=linux-sandbox"]);
    const jvmLocalMs = cpuMs(jvm) - jvm0;
    const server = await startServer({ root: join(tmp, `actiond-${rep}`), args: serverArgs() });
    jvm0 = cpuMs(jvm);
    const server0 = cpuMs(server.proc.pid);
    const remote = await timedBuild([salt, ...remoteFlags(server.address)]);
    const jvmRemoteMs = cpuMs(jvm) - jvm0;
    const serverMs = cpuMs(server.proc.pid) - server0;
    const warmed = warmRun ?? (await warmBuild());
    await server.stop();
    rmSync(join(tmp, `actiond-${rep}`), { recursive: true, force: true });
    const breakdown = phasesIn(server.log());
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
    console.log(`rep ${rep}: linux-sandbox ${(local.ms / 1000).toFixed(2)} s (${local.summary}) | actiond ${(remote.ms / 1000).toFixed(2)} s (${remote.summary}) | warm actiond ${(warmed.ms / 1000).toFixed(2)} s, server CPU ${warmCpu.at(-1)} ms`);
    console.log(`       actiond per action, ms p50/p95: ${breakdown}`);
    console.log(`       CPU: Bazel JVM ${jvmLocalMs} ms with linux-sandbox, ${jvmRemoteMs} ms with actiond; actiond server ${serverMs} ms`);
  }
  await bazel(["shutdown"]);
  await warm.stop();
  const warmPhases = phasesIn(warm.log());
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
  const w = median(warmWalls);
  console.log(`| actiond kept running (one server for every repetition) | ${(w / 1000).toFixed(2)} s | ${(w / GENRULES).toFixed(1)} ms |`);
  console.log(`| ratio warm actiond / linux-sandbox | ${(w / s).toFixed(2)} | server CPU ${median(warmCpu)} ms, ${(median(warmCpu) / GENRULES).toFixed(1)} ms per action |`);
  console.log(`| warm actiond per action, ms p50/p95 (since it started) | ${warmPhases} | |`);
  console.log(`| CPU per build (medians): Bazel JVM | ${median(jvmLocal)} ms (linux-sandbox) | ${median(jvmRemote)} ms (remote) |`);
  console.log(`| CPU per build (median): actiond server process | ${median(serverCpu)} ms | ${(median(serverCpu) / GENRULES).toFixed(1)} ms per action |`);
  if (WATCH_MS !== undefined) {
    console.log(`| actiond, status endpoints polled every ${WATCH_MS} ms | ${(median(watched) / 1000).toFixed(2)} s | ${(median(watched) / GENRULES).toFixed(1)} ms | ${(median(watched) / a).toFixed(2)}× of unwatched, server CPU ${median(watchedCpu)} ms vs ${median(serverCpu)} ms |`);
  }
  console.log(`| ${GENRULES} such actions straight to actiond (our client, ${BAZEL_JOBS} at once, no Bazel) | ${(d / 1000).toFixed(2)} s | ${(d / GENRULES).toFixed(1)} ms |`);
  console.log(JSON.stringify({ genrules: GENRULES, reps: REPS, linuxSandboxMs: sandbox, actiondMs: actiond, directMs: direct, ratio: a / s, warmMs: warmWalls, warmCpu, warmRatio: w / s, jvmLocal, jvmRemote, serverCpu, breakdowns }));
}

/** GENRULES genrule-like actions (echo into an output) executed by our client; wall ms. */
async function directRun(root: string): Promise<number> {
  const server = await startServer({ root, args: serverArgs() });
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
      const server = await startServer({ root, args: ["--shared-input-dirs", mode, ...EXTRA] });
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

/**
 * Clean builds of the C workspace with linux-sandbox and through actiond, alternating: walls, ratio,
 * server CPU, phases. Each --cc-variant (flags for actiond, space-separated) is one more actiond side
 * in every repetition, so settings are compared inside one run.
 */
async function ccBuilds(): Promise<void> {
  const flags = ["--noshow_progress", "--color=no", "--curses=no", "--nosandbox_debug", `--jobs=${BAZEL_JOBS}`];
  const cc = bazelWorkspace("actiond-bench-cc-", flags, CC_PACKAGES.map((p) => `//${p}/...`));
  await writeCcWorkspace(cc.ws);
  const runtime = checkoutAssetPath("runtime", { profile: "cc" });
  const local = ["--spawn_strategy=linux-sandbox"];
  await cc.bazel(["build", ...CC_PACKAGES.map((p) => `//${p}/...`), ...flags, ...local]);
  const variants = values["cc-variant"]!.length > 0 ? values["cc-variant"]! : [""];
  // Side 0 is linux-sandbox, side k the k-th variant.
  const sides = variants.length + 1;
  const walls: number[][] = Array.from({ length: sides }, () => []);
  const cpu: number[][] = variants.map(() => []);
  const phases: string[] = variants.map(() => "?");
  let summary = "";
  for (let rep = 0; rep <= REPS; rep++) {
    const order = Array.from({ length: sides }, (_, k) => (rep % 2 === 0 ? k : sides - 1 - k));
    for (const k of order) {
      if (k === 0) {
        const r = await cc.timedBuild(local);
        if (rep > 0) walls[0]!.push(r.ms);
        continue;
      }
      const v = k - 1;
      const root = join(cc.tmp, `actiond-${rep}-${v}`);
      const extra = variants[v]!.split(" ").filter(Boolean);
      const server = await startServer({ root, args: serverArgs("--runtime-image", runtime, ...extra) });
      const cpu0 = cpuMs(server.proc.pid);
      const r = await cc.timedBuild([`--remote_executor=grpc://${server.address}`, "--spawn_strategy=remote", "--remote_local_fallback=false"]);
      const used = cpuMs(server.proc.pid) - cpu0;
      const metrics = await (await fetch(`http://${server.address}/metrics`)).text();
      await server.stop();
      rmSync(root, { recursive: true, force: true });
      summary = `${r.summary} ${/^actiond_shared_input_dirs_mounted_total (\d+)$/m.exec(metrics)?.[1] ?? "0"} shared directories mounted`;
      if (rep === 0) continue;
      walls[k]!.push(r.ms);
      cpu[v]!.push(used);
      phases[v] = phasesIn(server.log());
    }
  }
  await cc.bazel(["shutdown"]);
  const s = median(walls[0]!);
  const actions = Number(/(\d+) remote/.exec(summary)?.[1] ?? "1");
  console.log("");
  console.log(`| clean build of Lua 5.1–5.4, zstd, libwebp (${countSources(cc.ws)} C files; ${summary}), median of ${REPS} | wall | ratio (goal ≤ 1.0) | server CPU per action | per action, ms p50/p95 (last repetition) |`);
  console.log("|---|---|---|---|---|");
  console.log(`| Bazel --spawn_strategy=linux-sandbox | ${(s / 1000).toFixed(2)} s | | | |`);
  variants.forEach((v, i) => {
    const a = median(walls[i + 1]!);
    console.log(`| Bazel --remote_executor → actiond ${v === "" ? "(defaults)" : v} | ${(a / 1000).toFixed(2)} s | ${(a / s).toFixed(2)} | ${(median(cpu[i]!) / actions).toFixed(1)} ms | ${phases[i]} |`);
  });
  console.log(JSON.stringify({ cc: { variants, sandboxMs: walls[0], actiondMs: walls.slice(1), serverCpu: cpu, phases } }));
  makeWritable(cc.tmp);
  rmSync(cc.tmp, { recursive: true, force: true });
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
