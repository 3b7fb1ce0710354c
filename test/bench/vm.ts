// Benchmark: actions inside the VM guests (serve-vm, QEMU; the x86_64 guest and, when built, the
// arm64 one in software emulation) against the same actions on the host (serve), in one run: N
// trivial actions (echo into an output) sent by our client, 2 at once, several repetitions
// alternating host and guest, medians; plus each guest's boot time to ready.
//
//   npm run build -- --all --vm && bun test/bench/vm.ts [--actions 50] [--reps 3] [--accel auto|kvm|tcg]
//       [--arch x86_64,aarch64] [--vm-transport serial,vsock]
// (each guest with each transport: vsock when .tools/bin/vhost-device-vsock is built)
//
// Each repetition uses fresh action digests (a salt), so nothing is a cache hit. Not a `bun test` file.
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { buildAction, execute, executionClient, uploadBlobs } from "../support/actions";
import { ReapiClient } from "../support/client";
import { REPO, startServer, tempDir, type ServerProcess } from "../support/server";

const { values } = parseArgs({ options: { actions: { type: "string", default: "50" }, reps: { type: "string", default: "3" }, accel: { type: "string" }, arch: { type: "string" }, "vm-transport": { type: "string" } } });
// Both guests when both are built (npm run build -- --all --vm), else this machine's.
const built = (arch: string) => existsSync(join(REPO, "build/vm", `kernel-${arch}`));
const ARCHES = values.arch ? values.arch.split(",") : ["x86_64", "aarch64"].filter(built);
// The serial multiplexer, and virtio-vsock when vhost-device-vsock is built (test/tools/build-tools.sh).
const VHOST_BIN = join(REPO, ".tools/bin");
const TRANSPORTS = values["vm-transport"] ? values["vm-transport"].split(",") : ["serial", ...(existsSync(join(VHOST_BIN, "vhost-device-vsock")) ? ["vsock"] : [])];
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
const host = await startServer({ root: join(tmp, "host"), args: ["--jobs", "2"] });
await run(host, "warm-host");
const rows: string[] = [];
const boots: string[] = [];
let onHostAll: number[] = [];
// One guest at a time (two emulated guests would share these CPUs), each against the host, alternating.
for (const [arch, transport] of ARCHES.flatMap((a) => TRANSPORTS.map((t) => [a, t] as const))) {
  const t0 = performance.now();
  const vm = await startServer({
    root: join(tmp, `vm-${arch}-${transport}`),
    subcommand: "serve-vm",
    args: ["--hypervisor", "qemu", "--arch", arch, "--vm-transport", transport, "--cas-image-size-mib", "4096", "--cpus", "2", ...(values.accel ? ["--accel", values.accel] : [])],
    env: { PATH: `${VHOST_BIN}:${process.env.PATH}` },
    startTimeoutMs: 300_000,
  });
  const bootWall = performance.now() - t0;
  const bootGuest = /guest ready in ([\d.]+) s/.exec(vm.log())?.[1];
  const onHost: number[] = [];
  const inGuest: number[] = [];
  await run(vm, `warm-vm-${arch}-${transport}`);
  for (let rep = 0; rep < REPS; rep++) {
    onHost.push(await run(host, `host-${arch}-${transport}-${rep}`));
    inGuest.push(await run(vm, `vm-${arch}-${transport}-${rep}`));
    console.log(`${arch} ${transport} rep ${rep + 1}: host ${(onHost[rep]! / N).toFixed(1)} ms/action, guest ${(inGuest[rep]! / N).toFixed(1)} ms/action`);
  }
  await vm.stop();
  const accel = /QEMU, ([^,]+)/.exec(vm.log())?.[1] ?? "?";
  onHostAll = onHostAll.concat(onHost);
  rows.push(`| serve-vm, ${arch} guest, ${transport} (QEMU ${accel}) | ${(median(inGuest) / 1000).toFixed(2)} s | ${(median(inGuest) / N).toFixed(1)} ms | ${(median(inGuest) / median(onHost)).toFixed(1)}× the host in the same reps |`);
  boots.push(`${arch} guest (${transport}) boot to ready: ${bootGuest} s (serve-vm start to serving: ${(bootWall / 1000).toFixed(1)} s, blank CAS disk)`);
}
const breakdown = (s: ServerProcess) => /executed \d+ actions; ms p50\/p95: (.*)$/m.exec(s.log())?.[1] ?? "?";
await host.stop();
console.log("");
console.log(`| ${N} trivial actions, ${AT_ONCE} at once (medians of ${REPS}) | wall | per action | |`);
console.log("|---|---|---|---|");
console.log(`| serve (host sandbox) | ${(median(onHostAll) / 1000).toFixed(2)} s | ${(median(onHostAll) / N).toFixed(1)} ms | |`);
for (const r of rows) console.log(r);
for (const b of boots) console.log(b);
console.log(`host per-phase p50/p95 ms: ${breakdown(host)}`);
rmSync(tmp, { recursive: true, force: true });
