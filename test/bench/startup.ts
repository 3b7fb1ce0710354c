// Benchmark: how long the compiled executable takes to start, beside `bun src/main.ts` from the
// checkout: `version`, the first `serve` on an empty --root (extracts the embedded assets, mounts the
// runtime, probes the sandbox), and a later `serve` on the same root (assets already there).
// Medians over several runs; each serve is timed until it prints that it is serving.
//
//   npm run build && bun test/bench/startup.ts [--reps 7]
import { rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { aloneCopy, BARE_ENV, HOST_TARGET, distBinary } from "../support/dist";
import { MAIN, startServer, tempDir } from "../support/server";

const { values } = parseArgs({ options: { reps: { type: "string", default: "7" } } });
const REPS = Number(values.reps);
if (!(await Bun.file(distBinary(HOST_TARGET)).exists())) throw new Error(`${distBinary(HOST_TARGET)} is missing: run npm run build`);
const alone = aloneCopy();
const compiled = [alone.exe];
const source = [process.execPath, MAIN];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const fmt = (ms: number) => `${ms.toFixed(0).padStart(5)} ms`;

function timeVersion(command: string[]): number {
  const t = performance.now();
  const r = Bun.spawnSync([...command, "version"], { env: BARE_ENV });
  if (r.exitCode !== 0) throw new Error(r.stderr.toString());
  return performance.now() - t;
}

/** Milliseconds until "serving", and the extraction time the server logged (if any). */
async function timeServe(command: string[], root: string): Promise<{ ms: number; extractMs?: number }> {
  const t = performance.now();
  const s = await startServer({ root, command, inheritEnv: command === compiled ? false : true, env: command === compiled ? BARE_ENV : {}, startTimeoutMs: 120_000 });
  const ms = performance.now() - t;
  await s.stop();
  const extract = /embedded assets ready in ([\d.]+) ms/.exec(s.log())?.[1];
  return { ms, extractMs: extract ? Number(extract) : undefined };
}

const rows: Record<string, { compiled: number[]; source: number[]; extract: number[] }> = {
  "version": { compiled: [], source: [], extract: [] },
  "serve, first start (empty --root)": { compiled: [], source: [], extract: [] },
  "serve, later start (same --root)": { compiled: [], source: [], extract: [] },
};
for (let i = 0; i < REPS; i++) {
  rows["version"]!.compiled.push(timeVersion(compiled));
  rows["version"]!.source.push(timeVersion(source));
  for (const [name, command] of [["compiled", compiled], ["source", source]] as const) {
    const root = tempDir("actiond-bench-startup-");
    const first = await timeServe(command, root);
    const later = await timeServe(command, root);
    rows["serve, first start (empty --root)"]![name].push(first.ms);
    rows["serve, later start (same --root)"]![name].push(later.ms);
    if (first.extractMs !== undefined) rows["serve, first start (empty --root)"]!.extract.push(first.extractMs);
    if (later.extractMs !== undefined) rows["serve, later start (same --root)"]!.extract.push(later.extractMs);
    rmSync(root, { recursive: true, force: true });
  }
}
rmSync(alone.dir, { recursive: true, force: true });

console.log(`startup, medians of ${REPS} (${HOST_TARGET}, ${Bun.file(distBinary(HOST_TARGET)).size / 2 ** 20 | 0} MiB executable)`);
console.log(`${"".padEnd(36)} ${"compiled".padStart(8)} ${"source".padStart(8)}  ratio   of which asset extraction/check`);
for (const [name, r] of Object.entries(rows)) {
  const c = median(r.compiled), s = median(r.source);
  console.log(`${name.padEnd(36)} ${fmt(c)} ${fmt(s)}  ${(c / s).toFixed(2).padStart(5)}   ${r.extract.length ? `${median(r.extract).toFixed(1)} ms` : "-"}`);
}
