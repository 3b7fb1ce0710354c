// Benchmark: actions inside the VM guest (serve-vm, QEMU) against the same actions on the host
// (serve), in one run: N trivial actions (echo into an output) sent by our client, 2 at once,
// several repetitions alternating, medians; plus the guest's boot time to ready.
//
//   npm run build -- --vm && bun test/bench/vm.ts [--actions 50] [--reps 3] [--accel auto|kvm|tcg]
//
// Each repetition uses fresh action digests (a salt), so nothing is a cache hit. Not a `bun test` file.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { buildAction, execute, executionClient, uploadBlobs } from "../support/actions";
import { ReapiClient } from "../support/client";
import { startServer, tempDir, type ServerProcess } from "../support/server";

const { values } = parseArgs({ options: { actions: { type: "string", default: "50" }, reps: { type: "string", default: "3" }, accel: { type: "string" } } });
const N = Number(values.actions);
const REPS = Number(values.reps);
const AT_ONCE = 2;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** N fresh actions through `server`; wall ms from the first Execute to the last result. */
async function run(server: ServerProcess, salt: string): Promise<number> {
  const client = new ReapiClient(server.address);
  const exec = executionClient(server.address);
  const actions: ReturnType<typeof buildAction>["action"][] = [];
  for (let i = 0; i < N; i++) {
    const built = buildAction({ args: ["/bin/bash", "-c", `echo ${i} > out/g${i}.txt`], outputFiles: [`out/g${i}.txt`], salt });
    await uploadBlobs(client, built.blobs);
    actions.push(built.action);
  }
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: AT_ONCE }, async () => {
      while (next < actions.length) {
        const ops = await execute(exec, { actionDigest: actions[next++]! });
        const response = ops.at(-1)?.response;
        if (response?.result?.exitCode !== 0) throw new Error(`an action failed: ${response?.status?.message ?? "no response"}`);
      }
    }),
  );
  const ms = performance.now() - t0;
  exec.close();
  client.close();
  return ms;
}

const tmp = tempDir("actiond-bench-vm-");
const t0 = performance.now();
const vm = await startServer({ root: join(tmp, "vm"), subcommand: "serve-vm", args: ["--hypervisor", "qemu", "--cas-image-size-mib", "4096", "--cpus", "2", ...(values.accel ? ["--accel", values.accel] : [])], startTimeoutMs: 300_000 });
const bootWall = performance.now() - t0;
const bootGuest = /guest ready in ([\d.]+) s/.exec(vm.log())?.[1];
const host = await startServer({ root: join(tmp, "host"), args: ["--jobs", "2"] });
const onHost: number[] = [];
const inGuest: number[] = [];
await run(host, "warm-host");
await run(vm, "warm-vm");
for (let rep = 0; rep < REPS; rep++) {
  onHost.push(await run(host, `host-${rep}`));
  inGuest.push(await run(vm, `vm-${rep}`));
  console.log(`rep ${rep + 1}: host ${(onHost[rep]! / N).toFixed(1)} ms/action, guest ${(inGuest[rep]! / N).toFixed(1)} ms/action`);
}
const breakdown = (s: ServerProcess) => /executed \d+ actions; ms p50\/p95: (.*)$/m.exec(s.log())?.[1] ?? "?";
await host.stop();
await vm.stop();
const accel = /QEMU, ([^,]+),/.exec(vm.log())?.[1] ?? "?";
console.log("");
console.log(`| ${N} trivial actions, ${AT_ONCE} at once (medians of ${REPS}) | wall | per action |`);
console.log("|---|---|---|");
console.log(`| serve (host sandbox) | ${(median(onHost) / 1000).toFixed(2)} s | ${(median(onHost) / N).toFixed(1)} ms |`);
console.log(`| serve-vm (guest, QEMU ${accel}) | ${(median(inGuest) / 1000).toFixed(2)} s | ${(median(inGuest) / N).toFixed(1)} ms |`);
console.log(`| ratio guest / host | ${(median(inGuest) / median(onHost)).toFixed(2)} | |`);
console.log(`guest boot to ready: ${bootGuest} s (serve-vm start to serving: ${(bootWall / 1000).toFixed(1)} s)`);
console.log(`host per-phase p50/p95 ms: ${breakdown(host)}`);
rmSync(tmp, { recursive: true, force: true });
