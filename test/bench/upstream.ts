// Benchmark: actiond in front of a team cache (a real bazel-remote), against Bazel talking to that
// cache itself, in one run, alternating, several repetitions (medians and ratios):
//   cold   a clean build with every cache empty: actiond (executing) → bazel-remote, vs Bazel with
//          --remote_cache=bazel-remote (executing in its linux-sandbox), vs actiond with no upstream;
//   warm   a clean build with bazel-remote full: a fresh actiond (empty root) → bazel-remote, vs
//          Bazel's --remote_cache straight to bazel-remote;
//   repeat the warm build again through the same actiond, which now holds everything itself.
// Also the bytes actiond moved to and from the upstream.
//
//   bun test/bench/upstream.ts [--genrules 100] [--kib 64] [--reps 3]
//
// Targets: warm through actiond no slower than Bazel straight to bazel-remote; repeat faster.
// Not a `bun test` file.
import { parseArgs } from "node:util";
import { startBazelRemote, type Peer } from "../support/peers";
import { startServer, tempDir, type ServerProcess } from "../support/server";
import { genruleWorkspace } from "./genrule-workspace";

const { values } = parseArgs({ options: { genrules: { type: "string", default: "100" }, kib: { type: "string", default: "64" }, reps: { type: "string", default: "3" } } });
const GENRULES = Number(values.genrules);
const KIB = Number(values.kib);
const REPS = Number(values.reps);
// Each output is its number and KIB KiB more: something to move, distinct, the same on every machine.
const rules = Array.from({ length: GENRULES }, (_, i) => `genrule(name = "g${i}", outs = ["g${i}.txt"], cmd = "(echo ${i}; head -c ${KIB * 1024} /dev/zero | tr '\\\\0' x) > $@")`);
const common = ["--incompatible_strict_action_env", "--noshow_progress", "--color=no", "--curses=no", "--nosandbox_debug", "--jobs=4", "--remote_timeout=60"];
const { bazel, timedBuild } = genruleWorkspace("actiond-bench-upstream-", rules, common);

const throughActiond = (s: ServerProcess) => [`--remote_executor=grpc://${s.address}`, "--spawn_strategy=remote", "--genrule_strategy=remote", "--remote_local_fallback=false"];
const straightTo = (p: Peer) => [`--remote_cache=${p.url}`, "--spawn_strategy=linux-sandbox", "--genrule_strategy=linux-sandbox"];

async function actiond(upstream?: Peer): Promise<ServerProcess> {
  return startServer({ root: tempDir("actiond-bench-root-"), args: upstream ? ["--upstream", upstream.url] : [] });
}

/** actiond's own account of what it moved (its totals line, printed at shutdown). */
async function stopAndReport(s: ServerProcess): Promise<string> {
  await s.stop();
  return /since start: upstream (.*)/.exec(s.log())?.[1] ?? "";
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function main() {
  console.log(`${GENRULES} genrules of ${KIB} KiB each, ${REPS} repetitions, alternating (Bazel 4.2.3, bazel-remote v1.3.3 on loopback)`);
  // Warm-up, untimed: Bazel's server starts and analyses once.
  await bazel(["build", "//:all", ...common, "--spawn_strategy=linux-sandbox", "--genrule_strategy=linux-sandbox"]);
  const t: Record<string, number[]> = { coldActiond: [], coldBazel: [], coldLocal: [], warmActiond: [], warmBazel: [], repeatActiond: [] };
  const summaries: Record<string, string> = {};
  const moved: string[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    // cold, three ways, each against empty caches.
    {
      const team = await startBazelRemote();
      const a = await actiond(team);
      const r = await timedBuild(throughActiond(a));
      t.coldActiond!.push(r.ms);
      summaries.coldActiond = r.summary;
      // The pushes finish in the background; the warm build below wants them all there.
      await a.waitForLog(new RegExp(`upstream push queue is empty: ${GENRULES} results`), 120_000).catch(() => {});
      moved.push(`cold: ${await stopAndReport(a)}`);
      await team.stop();
    }
    {
      const team = await startBazelRemote();
      const r = await timedBuild(straightTo(team));
      t.coldBazel!.push(r.ms);
      summaries.coldBazel = r.summary;
      await team.stop();
    }
    {
      const alone = await actiond();
      const r = await timedBuild(throughActiond(alone));
      t.coldLocal!.push(r.ms);
      summaries.coldLocal = r.summary;
      await alone.stop();
    }
    // warm: bazel-remote holds every result (filled by Bazel itself), actiond starts empty.
    const team = await startBazelRemote();
    await timedBuild(straightTo(team));
    const order = rep % 2 === 0 ? ["actiond", "bazel"] : ["bazel", "actiond"];
    let fresh: ServerProcess | undefined;
    for (const who of order) {
      if (who === "bazel") {
        const r = await timedBuild(straightTo(team));
        t.warmBazel!.push(r.ms);
        summaries.warmBazel = r.summary;
      } else {
        fresh = await actiond(team);
        const r = await timedBuild(throughActiond(fresh));
        t.warmActiond!.push(r.ms);
        summaries.warmActiond = r.summary;
      }
    }
    const again = await timedBuild(throughActiond(fresh!));
    t.repeatActiond!.push(again.ms);
    summaries.repeatActiond = again.summary;
    moved.push(`warm + repeat: ${await stopAndReport(fresh!)}`);
    await team.stop();
  }
  const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)])) as Record<keyof typeof t, number>;
  const row = (label: string, key: keyof typeof t, ref?: keyof typeof t) =>
    console.log(`${label.padEnd(48)} ${fmt(m[key]!).padStart(8)}   [${t[key]!.map(fmt).join(", ")}]${ref ? `   ${(m[key]! / m[ref]!).toFixed(2)}× of ${ref}` : ""}   ${summaries[key]}`);
  console.log("\nmedian wall time of a clean build (client's view):");
  row("cold: actiond (executes) → bazel-remote", "coldActiond", "coldBazel");
  row("cold: bazel --remote_cache=bazel-remote", "coldBazel");
  row("cold: actiond alone (no upstream)", "coldLocal", "coldBazel");
  row("warm: actiond (empty root) → bazel-remote", "warmActiond", "warmBazel");
  row("warm: bazel --remote_cache=bazel-remote", "warmBazel");
  row("repeat: the same actiond again (local hits)", "repeatActiond", "warmBazel");
  console.log("\nwhat actiond moved (its totals at shutdown):");
  for (const line of moved.slice(-2)) console.log(`  ${line}`);
  await bazel(["shutdown"]);
}

await main();
