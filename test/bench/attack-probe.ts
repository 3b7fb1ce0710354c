// The "second client" of test/bench/attacks.ts, in a process of its own so that the attacker's
// work never delays it: asks GetCapabilities every 20 ms and runs one trivial action after another,
// and prints each call's latency as a line of JSON ({"kind":"caps"|"exec","at":ms,"ms":ms,"ok":bool}).
//
//   bun test/bench/attack-probe.ts HOST:PORT
import { GetCapabilitiesRequestSchema } from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { executionClient, run } from "../support/actions";
import { ReapiClient } from "../support/client";

const address = process.argv[2]!;
const client = new ReapiClient(address);
const exec = executionClient(address);
const report = (kind: string, started: number, ok: boolean, error?: string) => console.log(JSON.stringify({ kind, at: Date.now(), ms: performance.now() - started, ok, error }));
const failed = (err: unknown) => String((err as Error).message ?? err).slice(0, 200);

async function capabilities(): Promise<never> {
  for (;;) {
    const started = performance.now();
    const error = await client.unary(client.caps, "getCapabilities", GetCapabilitiesRequestSchema, {}).then(() => undefined, failed);
    report("caps", started, !error, error);
    await Bun.sleep(20);
  }
}

async function trivialActions(): Promise<never> {
  for (;;) {
    const started = performance.now();
    const error = await run(client, exec, { args: ["true"], salt: crypto.randomUUID() }, { skipCacheLookup: true }).then((r) => (r.result?.exitCode === 0 ? undefined : `exit ${r.result?.exitCode}`), failed);
    report("exec", started, !error, error);
    await Bun.sleep(50);
  }
}

await Promise.all([capabilities(), trivialActions()]);
