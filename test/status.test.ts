// The status endpoints on the gRPC port (/metrics, /api/status) and `actiond status`, against a
// real server: the counters must follow a known sequence of calls, read through a Prometheus
// text-format parser.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connect } from "node:net";
import parse, { type Family } from "parse-prometheus-text-format";
import { BatchUpdateBlobsRequestSchema, FindMissingBlobsRequestSchema, GetActionResultRequestSchema } from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { ReapiClient, RpcError, grpc, sha256 } from "./support/client";
import { execute, executionClient, prepareAction, run } from "./support/actions";
import { MAIN, startServer, type ServerProcess } from "./support/server";
import type { StatusSnapshot } from "../src/web";

let server: ServerProcess;
let client: ReapiClient;

beforeAll(async () => {
  server = await startServer({ args: ["--status-listen", "127.0.0.1:0"] });
  client = new ReapiClient(server.address);
});

afterAll(async () => {
  client.close();
  await server.stop();
});

async function metrics(address = server.address): Promise<Family[]> {
  const res = await fetch(`http://${address}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toStartWith("text/plain");
  return parse(await res.text());
}

/** A sample's value: the family by name, the sample by labels (all of them must match). */
function value(families: Family[], name: string, labels: Record<string, string> = {}): number {
  const family = families.find((f) => f.name === name);
  if (!family) throw new Error(`no metric ${name}`);
  const sample = family.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return Number(sample?.value ?? sample?.count ?? 0);
}

test("/metrics on the gRPC port counts calls by method and code, hits and misses, and what the store holds", async () => {
  const before = await metrics();
  const a = new TextEncoder().encode("metrics a");
  const b = new TextEncoder().encode("metrics b");
  for (let i = 0; i < 2; i++) await client.unary(client.cas, "findMissingBlobs", FindMissingBlobsRequestSchema, { blobDigests: [sha256(a)] });
  await client.unary(client.cas, "batchUpdateBlobs", BatchUpdateBlobsRequestSchema, { requests: [{ digest: sha256(a), data: a }, { digest: sha256(b), data: b }] });
  const miss = await client.unary(client.ac, "getActionResult", GetActionResultRequestSchema, { actionDigest: sha256("no such action") }).catch((e: RpcError) => e);
  expect((miss as RpcError).code).toBe(grpc.status.NOT_FOUND);
  const gone = await client.read(`blobs/${sha256("not stored").hash}/10`).catch((e: RpcError) => e);
  expect((gone as RpcError).code).toBe(grpc.status.NOT_FOUND);

  const after = await metrics();
  const delta = (name: string, labels?: Record<string, string>) => value(after, name, labels) - value(before, name, labels);
  expect(delta("actiond_grpc_calls_total", { method: "FindMissingBlobs", code: "OK" })).toBe(2);
  expect(delta("actiond_grpc_calls_total", { method: "BatchUpdateBlobs", code: "OK" })).toBe(1);
  expect(delta("actiond_grpc_calls_total", { method: "GetActionResult", code: "NOT_FOUND" })).toBe(1);
  expect(delta("actiond_grpc_calls_total", { method: "Read", code: "NOT_FOUND" })).toBe(1);
  expect(delta("actiond_action_cache_misses_total")).toBe(1);
  expect(delta("actiond_cas_blobs_stored_total")).toBe(2);
  expect(delta("actiond_cas_bytes_stored_total")).toBe(a.length + b.length);
  expect(delta("actiond_store_files")).toBe(2);
  expect(value(after, "actiond_store_max_bytes")).toBeGreaterThan(0);
});

test("an executed action shows in the phase histograms, in /api/status and in `actiond status`", async () => {
  // The parser drops a histogram's labels and count, so those are read from the text itself.
  const runs = async () => {
    const text = await (await fetch(`http://${server.address}/metrics`)).text();
    return Number(/^actiond_action_phase_seconds_count\{phase="run"\} (\d+)$/m.exec(text)?.[1] ?? 0);
  };
  const runsBefore = await runs();
  const before = await metrics();
  const { result } = await run(client, executionClient(server.address), { args: ["/bin/sh", "-c", "echo status > out.txt"], outputFiles: ["out.txt"] });
  expect(result?.exitCode).toBe(0);
  const after = await metrics();
  expect((await runs()) - runsBefore).toBe(1);
  expect(value(after, "actiond_actions_executed_total") - value(before, "actiond_actions_executed_total")).toBe(1);

  const status = (await (await fetch(`http://${server.address}/api/status`)).json()) as StatusSnapshot;
  expect(status.executed).toBeGreaterThanOrEqual(1);
  expect(status.worker.jobs).toBeGreaterThan(0);
  expect(status.worker.cgroups).toMatch(/^(available|not available: .+)$/);
  expect(status.worker.limits.length).toBeGreaterThan(0);
  expect(status.executions.some((e) => e.stage === "COMPLETED" && e.argv0 === "/bin/sh" && e.runtime !== "")).toBe(true);
  // Its phases are the runner's own: queue, execroot, sandbox start, run, outputs.
  const mine = status.recent.find((r) => r.outcome === "executed");
  expect(Object.keys(mine?.phases ?? {})).toEqual(["queue", "execroot", "sandbox start", "run", "outputs"]);

  const cli = Bun.spawnSync([process.execPath, MAIN, "status", "--address", server.address]);
  expect(cli.exitCode).toBe(0);
  expect(cli.stdout.toString()).toMatch(/actions: 0 running, 0 queued, \d+ executed since start/);
  const json = Bun.spawnSync([process.execPath, MAIN, "status", "--address", server.address, "--json"]);
  expect(JSON.parse(json.stdout.toString()).executed).toBe(status.executed);

  // An action that runs past its timeout is counted as failed, by its code.
  const late = await run(client, executionClient(server.address), { args: ["/bin/sh", "-c", "sleep 5"], timeoutSeconds: 1, salt: crypto.randomUUID() });
  expect(late.response.status?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  expect(value(await metrics(), "actiond_actions_failed_total", { code: "DEADLINE_EXCEEDED" }) - value(after, "actiond_actions_failed_total", { code: "DEADLINE_EXCEEDED" })).toBe(1);
});

test("--status-listen serves the same endpoints on an address of their own", async () => {
  const m = await server.waitForLog(/status page on http:\/\/(127\.0\.0\.1:\d+)\//);
  expect(value(await metrics(m[1]!), "actiond_store_max_bytes")).toBeGreaterThan(0);
});

test("a connection that speaks neither HTTP/2 nor HTTP/1.1 is closed, and the server goes on", async () => {
  const socket = connect(server.port, "127.0.0.1");
  const closed = new Promise((resolve) => socket.on("close", resolve));
  socket.on("error", () => {});
  socket.write("\x16\x03\x01 not a request\r\n");
  await closed;
  await client.unary(client.cas, "findMissingBlobs", FindMissingBlobsRequestSchema, { blobDigests: [] });
});

test("`actiond logs -f` shows a running action's lines as it writes them, before it ends; after, `actiond logs` prints them all", async () => {
  const spec = { args: ["/bin/sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 1; done; echo to stderr >&2"], salt: crypto.randomUUID() };
  const action = await prepareAction(client, spec);
  let finished = false;
  const executing = execute(executionClient(server.address), { actionDigest: action }).finally(() => (finished = true));
  const follower = Bun.spawn([process.execPath, MAIN, "logs", "-f", "--address", server.address, action.hash.slice(0, 12)], { stdout: "pipe", stderr: "pipe" });
  let seen = "";
  const decoder = new TextDecoder();
  const reader = follower.stdout.getReader();
  const more = async () => {
    const { value, done } = await reader.read();
    if (value) seen += decoder.decode(value);
    return !done;
  };
  while (!seen.includes("line 1\n") && (await more()));
  // The first line arrived while the action still runs (it takes five seconds).
  expect(finished).toBe(false);
  await executing;
  while (await more());
  expect(await follower.exited).toBe(0);
  expect(seen).toBe("line 1\nline 2\nline 3\nline 4\nline 5\nto stderr\n");

  const after = Bun.spawnSync([process.execPath, MAIN, "logs", "--address", server.address, action.hash]);
  expect(after.exitCode).toBe(0);
  expect(after.stdout.toString()).toBe("line 1\nline 2\nline 3\nline 4\nline 5\nto stderr\n");
  const none = Bun.spawnSync([process.execPath, MAIN, "logs", "--address", server.address, "//no:such"]);
  expect(none.exitCode).toBe(1);
  expect(none.stderr.toString()).toMatch(/no action matches \/\/no:such/);
}, 30_000);

test("`actiond status` says plainly when nothing answers", () => {
  const cli = Bun.spawnSync([process.execPath, MAIN, "status", "--address", "127.0.0.1:1"]);
  expect(cli.exitCode).toBe(1);
  expect(cli.stderr.toString()).toMatch(/no actiond answers at 127\.0\.0\.1:1/);
});

test("`actiond explain ACTION`: an action that failed and is asked for again missed because failures are not cached", async () => {
  const spec = { args: ["/bin/sh", "-c", "echo no > out; echo this went wrong >&2; exit 3"], outputFiles: ["out"], salt: crypto.randomUUID() };
  const exec = executionClient(server.address);
  expect((await run(client, exec, spec)).result?.exitCode).toBe(3);
  expect((await run(client, exec, spec)).result?.exitCode).toBe(3);
  const action = await prepareAction(client, spec);
  const why = Bun.spawnSync([process.execPath, MAIN, "explain", "--address", server.address, action.hash.slice(0, 16)]);
  expect(why.exitCode).toBe(0);
  expect(why.stdout.toString()).toMatch(/missed: the same action ran at \S+: it exited 3, and failures are not cached/);
  // The page's recent actions show the failure with the end of its stderr, and why it ran again.
  const s = (await (await fetch(`http://${server.address}/api/status`)).json()) as StatusSnapshot;
  const failed = s.recent.find((r) => r.action.startsWith(action.hash) && r.outcome === "failed");
  expect(failed?.exitCode).toBe(3);
  expect(failed?.stderr).toBe("this went wrong\n");
  expect(failed?.why).toContain("it exited 3");
});

test("an executing operation names its stdout and stderr streams, and ByteStream Read of them follows the action as it writes", async () => {
  const spec = { args: ["/bin/sh", "-c", "for i in 1 2 3 4; do echo out $i; echo err $i >&2; sleep 0.5; done"], salt: crypto.randomUUID() };
  const action = await prepareAction(client, spec);
  let finished = false;
  let names: { stdout: string; stderr: string } | undefined;
  let named!: () => void;
  const gotNames = new Promise<void>((resolve) => (named = resolve));
  const executing = execute(executionClient(server.address), { actionDigest: action }, (o) => {
    if (o.meta.stdoutStreamName && !names) {
      names = { stdout: o.meta.stdoutStreamName, stderr: o.meta.stderrStreamName };
      named();
    }
  }).finally(() => (finished = true));
  await gotNames;
  expect(names!.stdout).toMatch(/^operations\/[0-9a-f-]{36}\/stdout$/);
  let firstWhileRunning: boolean | undefined;
  const out = client.read(names!.stdout, 0, 0, () => (firstWhileRunning ??= !finished));
  const err = client.read(names!.stderr, 4); // from an offset: "err 1\n" without its first four bytes
  expect(new TextDecoder().decode((await out).data)).toBe("out 1\nout 2\nout 3\nout 4\n");
  expect(new TextDecoder().decode((await err).data)).toBe("1\nerr 2\nerr 3\nerr 4\n");
  expect(firstWhileRunning).toBe(true);
  await executing;
  // After it ended, the same names still read it whole (from the CAS), and a limit is kept.
  expect(new TextDecoder().decode((await client.read(names!.stdout, 6, 6)).data)).toBe("out 2\n");
  const unknown = await client.read("operations/no-such/stdout").catch((e: RpcError) => e);
  expect((unknown as RpcError).code).toBe(grpc.status.NOT_FOUND);
}, 30_000);
