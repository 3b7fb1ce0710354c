// Execute and WaitExecution against a real `actiond serve`: the operation stream, caching, merging,
// cancellation, timeouts, missing inputs, every output kind, and the refusals of paths that escape.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { status as Code } from "@grpc/grpc-js";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { fromBinary } from "@bufbuild/protobuf";
import {
  Command_OutputDirectoryFormat,
  DirectorySchema,
  ExecuteOperationMetadataSchema,
  ExecuteResponseSchema,
  ExecutionStage_Value as Stage,
  GetActionResultRequestSchema,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import {
  CancelOperationRequestSchema,
  DeleteOperationRequestSchema,
  GetOperationRequestSchema,
  ListOperationsRequestSchema,
  WaitOperationRequestSchema,
} from "../src/gen/google/longrunning/operations_pb";
import { PreconditionFailureSchema } from "../src/gen/google/rpc/error_details_pb";
import {
  buildAction,
  execute,
  executionClient,
  operationsClient,
  prepareAction,
  readTree,
  run,
  type DecodedOperation,
  stderr,
  stdout,
  text,
  uploadBlobs,
  waitExecution,
} from "./support/actions";
import { ReapiClient } from "./support/client";
import { checkoutAssetPath } from "../src/assets";
import { rejects, waitUntil } from "./support/helpers";
import { startServer, workFolders, type ServerProcess } from "./support/server";

let server: ServerProcess;
let client: ReapiClient;
let exec: ReturnType<typeof executionClient>;

beforeAll(async () => {
  server = await startServer({ args: ["--jobs", "2"] });
  client = new ReapiClient(server.address);
  exec = executionClient(server.address);
});

afterAll(async () => {
  exec.close();
  client.close();
  expect(await server.stop()).toBe(0);
});

/** Processes on this machine whose command line contains marker (the sandbox's are visible from here). */
function processesWith(marker: string): number[] {
  return readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(marker);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Runs fn against a server of its own (started with args), which must then stop cleanly. */
async function withOwnServer(args: string[], fn: (own: ServerProcess, c: ReapiClient, e: ReturnType<typeof executionClient>) => Promise<void>) {
  const own = await startServer({ args });
  const c = new ReapiClient(own.address);
  const e = executionClient(own.address);
  let code: number;
  try {
    await fn(own, c, e);
  } finally {
    e.close();
    c.close();
    code = await own.stop();
  }
  expect(code).toBe(0);
}

function getActionResult(action: { hash: string; sizeBytes: bigint }) {
  return client.unary(client.ac, "getActionResult", GetActionResultRequestSchema, { actionDigest: action });
}

describe("the operation stream", () => {
  test("QUEUED, EXECUTING, then COMPLETED with the response; one name; metadata on every message", async () => {
    const { action, ops, response, result } = await run(client, exec, { args: ["sh", "-c", "echo hello; echo oops >&2; exit 0"], salt: "stream" });
    expect(ops.map((o) => o.meta.stage)).toEqual([Stage.QUEUED, Stage.EXECUTING, Stage.COMPLETED]);
    expect(new Set(ops.map((o) => o.op.name)).size).toBe(1);
    expect(ops.every((o) => o.meta.actionDigest?.hash === action.hash)).toBe(true);
    expect(ops.map((o) => o.op.done)).toEqual([false, false, true]);
    expect(ops.at(-1)!.op.result.case).toBe("response");
    expect(response.status?.code ?? 0).toBe(0);
    expect(response.cachedResult).toBe(false);
    expect(result!.exitCode).toBe(0);
    expect(await stdout(client, result)).toBe("hello\n");
    expect(await stderr(client, result)).toBe("oops\n");
    const m = result!.executionMetadata!;
    expect(m.worker).toStartWith("actiond@");
    for (const t of [m.queuedTimestamp, m.workerStartTimestamp, m.inputFetchStartTimestamp, m.inputFetchCompletedTimestamp, m.executionStartTimestamp, m.executionCompletedTimestamp, m.outputUploadStartTimestamp, m.outputUploadCompletedTimestamp, m.workerCompletedTimestamp]) {
      expect(t?.seconds).toBeGreaterThan(0n);
    }
  });

  test("a successful result is cached: the next Execute answers at once from the action cache", async () => {
    const spec = { args: ["sh", "-c", "echo $$ > out.txt"], outputFiles: ["out.txt"], salt: "cached" };
    const first = await run(client, exec, spec);
    const second = await run(client, exec, spec);
    expect(second.ops.length).toBe(1);
    expect(second.response.cachedResult).toBe(true);
    expect(second.result!.outputFiles[0]!.digest).toEqual(first.result!.outputFiles[0]!.digest);
    const cached = await getActionResult(first.action);
    expect(cached.outputFiles[0].digest.hash).toBe(first.result!.outputFiles[0]!.digest!.hash);
  });

  test("skip_cache_lookup runs again and overwrites the cached result", async () => {
    const spec = { args: ["sh", "-c", "date +%s%N > t"], outputFiles: ["t"], salt: "skip" };
    const first = await run(client, exec, spec);
    const again = await run(client, exec, spec, { skipCacheLookup: true });
    expect(again.response.cachedResult).toBe(false);
    expect(again.result!.outputFiles[0]!.digest!.hash).not.toBe(first.result!.outputFiles[0]!.digest!.hash);
    expect((await getActionResult(first.action)).outputFiles[0].digest.hash).toBe(again.result!.outputFiles[0]!.digest!.hash);
  });

  test("non-zero exits and do_not_cache actions are not cached", async () => {
    const failing = await run(client, exec, { args: ["sh", "-c", "echo no; exit 3"], salt: "fail" });
    expect(failing.result!.exitCode).toBe(3);
    expect(failing.response.status?.code ?? 0).toBe(0);
    expect((await rejects(getActionResult(failing.action))).code).toBe(Code.NOT_FOUND);
    const notCached = await run(client, exec, { args: ["true"], doNotCache: true, salt: "dnc" });
    expect(notCached.result!.exitCode).toBe(0);
    expect((await rejects(getActionResult(notCached.action))).code).toBe(Code.NOT_FOUND);
  });

  test("identical actions in flight run once, and every caller gets the result", async () => {
    const action = await prepareAction(client, { args: ["sh", "-c", "sleep 1; date +%s%N"], salt: `merge-${Math.random()}` });
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => execute(exec, { actionDigest: action })));
    const names = new Set([a!, b!, c!].map((ops) => ops.at(-1)!.op.name));
    expect(names.size).toBe(1);
    const outs = await Promise.all([a!, b!, c!].map((ops) => stdout(client, ops.at(-1)!.response!.result)));
    expect(new Set(outs).size).toBe(1);
  });

  test("a caller that goes away does not stop the action for another caller waiting on it", async () => {
    const action = await prepareAction(client, { args: ["sh", "-c", "sleep 1; echo finished"], salt: `leave-${Math.random()}` });
    let leftFrom = "";
    let left!: () => void;
    const hasLeft = new Promise<void>((resolve) => (left = resolve));
    const leaving = execute(exec, { actionDigest: action }, (o, call) => {
      leftFrom = o.op.name;
      if (o.meta.stage === Stage.EXECUTING) {
        call.cancel();
        left();
      }
    });
    await hasLeft;
    const staying = await execute(exec, { actionDigest: action });
    await leaving;
    // The same execution, joined: not a second run.
    expect(staying.at(-1)!.op.name).toBe(leftFrom);
    expect(staying.at(-1)!.response!.status?.code ?? 0).toBe(0);
    expect(await stdout(client, staying.at(-1)!.response!.result)).toBe("finished\n");
  });

  test("WaitExecution re-attaches to a running execution, which goes on without restarting; and to a finished one", async () => {
    const action = await prepareAction(client, { args: ["sh", "-c", "sleep 2; echo done"], salt: `wait-${Math.random()}` });
    let name = "";
    let leftAt = 0;
    // The client leaves once the action runs, as Bazel does when its stream breaks.
    await execute(exec, { actionDigest: action }, (o, call) => {
      name = o.op.name;
      if (o.meta.stage !== Stage.EXECUTING) return;
      leftAt = Date.now();
      call.cancel();
    });
    expect(name).toStartWith("operations/");
    const ops = await waitExecution(exec, name);
    // Attached while it still ran: first the stage it is in, then the result.
    expect(ops.map((o) => [o.op.name, o.meta.stage, o.op.done])).toEqual([
      [name, Stage.EXECUTING, false],
      [name, Stage.COMPLETED, true],
    ]);
    const result = ops.at(-1)!.response!.result!;
    expect(await stdout(client, result)).toBe("done\n");
    // The run that finished is the one the worker started before the first caller left (it takes the
    // action up as it reports EXECUTING), not a new one.
    const started = result.executionMetadata!.workerStartTimestamp!;
    expect(Math.floor(Number(started.seconds) * 1000 + started.nanos / 1e6)).toBeLessThanOrEqual(leftAt);
    const again = await waitExecution(exec, name);
    expect(again.length).toBe(1);
    expect(again[0]!.op.done).toBe(true);
    const unknown = await waitExecution(exec, "operations/nonesuch").catch((e) => e);
    expect(unknown.code).toBe(Code.NOT_FOUND);
  });

  test("an action nobody waits for any more is cancelled and its processes killed", async () => {
    const marker = `${Math.floor(Math.random() * 1e6)}.5`;
    const action = await prepareAction(client, { args: ["sh", "-c", `sleep ${marker} & sleep ${marker}; wait`] });
    await execute(exec, { actionDigest: action }, (o, call) => {
      if (o.meta.stage === Stage.EXECUTING) setTimeout(() => call.cancel(), 300);
    });
    expect(await waitUntil(() => processesWith(`sleep\0${marker}`).length === 2, 3000)).toBe(true);
    // After the short re-attach grace period, the whole process tree is gone.
    expect(await waitUntil(() => processesWith(`sleep\0${marker}`).length === 0, 8000)).toBe(true);
  });

  test("a timeout kills the whole tree; DEADLINE_EXCEEDED with the output so far; not cached", async () => {
    const marker = `${Math.floor(Math.random() * 1e6)}.25`;
    const started = Date.now();
    const { action, response, result } = await run(client, exec, {
      args: ["sh", "-c", `echo before; echo err-before >&2; (sleep ${marker}) & sleep ${marker}`],
      timeoutSeconds: 1,
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(response.status?.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(await stdout(client, result)).toBe("before\n");
    expect(await stderr(client, result)).toBe("err-before\n");
    expect(processesWith(`sleep\0${marker}`)).toEqual([]);
    expect((await rejects(getActionResult(action))).code).toBe(Code.NOT_FOUND);
  });

  test("--jobs bounds how many actions run at once, and uses them all", async () => {
    const specs = [1, 2, 3].map((i) => ({ args: ["sh", "-c", "sleep 1"], salt: `jobs-${i}-${Math.random()}` }));
    const results = await Promise.all(specs.map((s) => run(client, exec, s)));
    const ms = (t: any) => Number(t.seconds) * 1000 + t.nanos / 1e6;
    const spans = results.map((r) => [ms(r.result!.executionMetadata!.executionStartTimestamp), ms(r.result!.executionMetadata!.executionCompletedTimestamp)] as const);
    const overlap = (a: readonly [number, number], b: readonly [number, number]) => Math.min(a[1], b[1]) > Math.max(a[0], b[0]);
    // With --jobs 2, two of them run side by side, and at no moment do all three.
    const pairs = [[0, 1], [0, 2], [1, 2]].filter(([a, b]) => overlap(spans[a!]!, spans[b!]!));
    expect(pairs.length).toBeGreaterThan(0);
    expect(Math.min(...spans.map((s) => s[1])) > Math.max(...spans.map((s) => s[0]))).toBe(false);
  });

  test("actions waiting for a slot run in priority order: lower ExecutionPolicy.priority first, then in order of arrival", async () => {
    await withOwnServer(["--jobs", "1"], async (_own, c, e) => {
      // A blocker holds the one slot until the others are all in line; then its caller leaves and,
      // after the re-attach grace, it is cancelled and the line moves.
      const blocker = await prepareAction(c, { args: ["sleep", "600"], salt: `${Math.random()}` });
      let running!: () => void;
      const isRunning = new Promise<void>((resolve) => (running = resolve));
      let leave: () => void = () => {};
      const blocked = execute(e, { actionDigest: blocker }, (o, call) => {
        leave = () => call.cancel();
        if (o.meta.stage === Stage.EXECUTING) running();
      });
      await isRunning;
      const order = ["p5-first", "p-1", "p5-second", "p3"];
      const queued: Promise<void>[] = [];
      const done: Promise<DecodedOperation[]>[] = [];
      for (const name of order) {
        const priority = Number(/^p(-?\d+)/.exec(name)![1]);
        const action = await prepareAction(c, { args: ["true", name], salt: `${Math.random()}` });
        let inLine!: () => void;
        queued.push(new Promise<void>((resolve) => (inLine = resolve)));
        done.push(execute(e, { actionDigest: action, executionPolicy: { priority } }, (o) => o.meta.stage === Stage.QUEUED && inLine()));
        await queued.at(-1);
      }
      leave();
      await blocked;
      const ms = (t: any) => Number(t.seconds) * 1000 + t.nanos / 1e6;
      const starts = (await Promise.all(done)).map((ops, i) => ({ name: order[i]!, at: ms(ops.at(-1)!.response!.result!.executionMetadata!.executionStartTimestamp) }));
      expect(starts.sort((a, b) => a.at - b.at).map((s) => s.name)).toEqual(["p-1", "p3", "p5-first", "p5-second"]);
    });
  });
});

describe("the Operations service", () => {
  test("CancelOperation stops a running action: its processes go, and its Execute stream ends with CANCELLED", async () => {
    const ops = operationsClient(server.address);
    try {
      const marker = `${Math.floor(Math.random() * 1e6)}.5`;
      const action = await prepareAction(client, { args: ["sh", "-c", `sleep ${marker} & sleep ${marker}; wait`] });
      let name = "";
      let running!: () => void;
      const isRunning = new Promise<void>((resolve) => (running = resolve));
      const stream = execute(exec, { actionDigest: action }, (o) => {
        name = o.op.name;
        if (o.meta.stage === Stage.EXECUTING) running();
      });
      await isRunning;
      expect(await waitUntil(() => processesWith(`sleep\0${marker}`).length === 2, 5000)).toBe(true);
      const now = await ops.call("getOperation", GetOperationRequestSchema, { name });
      expect(now.done).toBe(false);
      expect(anyUnpack(now.metadata, ExecuteOperationMetadataSchema)?.stage).toBe(Stage.EXECUTING);
      await ops.call("cancelOperation", CancelOperationRequestSchema, { name });
      const last = (await stream).at(-1)!;
      expect(last.op.done).toBe(true);
      expect(last.response!.status?.code).toBe(Code.CANCELLED);
      expect(last.response!.status?.message).toContain("CancelOperation");
      expect(await waitUntil(() => processesWith(`sleep\0${marker}`).length === 0, 5000)).toBe(true);
      const after = await ops.call("getOperation", GetOperationRequestSchema, { name });
      expect(after.done).toBe(true);
    } finally {
      ops.close();
    }
  });

  test("GetOperation, WaitOperation, ListOperations and DeleteOperation on the names Execute hands out, cache hits too", async () => {
    const ops = operationsClient(server.address);
    try {
      const spec = { args: ["sh", "-c", "sleep 1; echo slow"], salt: `ops-${Math.random()}` };
      const action = await prepareAction(client, spec);
      let name = "";
      let named!: () => void;
      const hasName = new Promise<void>((resolve) => (named = resolve));
      const stream = execute(exec, { actionDigest: action }, (o) => {
        name = o.op.name;
        named();
      });
      await hasName;
      // A short wait returns it as it stands; a long one returns it done, with its response.
      const early = await ops.call("waitOperation", WaitOperationRequestSchema, { name, timeout: { nanos: 50_000_000 } });
      expect(early.done).toBe(false);
      const done = await ops.call("waitOperation", WaitOperationRequestSchema, { name, timeout: { seconds: 60n } });
      expect(done.done).toBe(true);
      const response = anyUnpack(done.result.value, ExecuteResponseSchema)!;
      expect(await stdout(client, response.result)).toBe("slow\n");
      await stream;
      // The same action again is a cache hit, and its operation has a name too.
      const hit = (await execute(exec, { actionDigest: action })).at(-1)!;
      expect(hit.response!.cachedResult).toBe(true);
      expect((await ops.call("getOperation", GetOperationRequestSchema, { name: hit.op.name })).done).toBe(true);

      const listed: string[] = [];
      let token = "";
      do {
        const page = await ops.call("listOperations", ListOperationsRequestSchema, { name: "operations", pageSize: 2, pageToken: token });
        expect(page.operations.length).toBeLessThanOrEqual(2);
        listed.push(...page.operations.map((o: any) => o.name));
        token = page.nextPageToken;
      } while (token);
      expect(listed).toContain(name);
      expect(listed).toContain(hit.op.name);
      expect(new Set(listed).size).toBe(listed.length);

      await ops.call("deleteOperation", DeleteOperationRequestSchema, { name });
      const gone = await ops.call("getOperation", GetOperationRequestSchema, { name }).catch((e) => e);
      expect(gone.code).toBe(Code.NOT_FOUND);
      const bad = await ops.call("listOperations", ListOperationsRequestSchema, { filter: "done=true" }).catch((e) => e);
      expect(bad.code).toBe(Code.INVALID_ARGUMENT);
    } finally {
      ops.close();
    }
  });
});

describe("what newer clients ask of Execute", () => {
  test("inline_stdout, inline_stderr and inline_output_files fill the result, for a run and for a cache hit", async () => {
    const spec = { args: ["sh", "-c", "echo out; echo err >&2; echo file > f; echo other > g"], outputPaths: ["f", "g"], salt: `inline-${Math.random()}` };
    const inline = { inlineStdout: true, inlineStderr: true, inlineOutputFiles: ["f"] };
    for (const pass of ["run", "hit"]) {
      const { result, response } = await run(client, exec, spec, inline);
      expect({ pass, cached: response.cachedResult }).toEqual({ pass, cached: pass === "hit" });
      expect(new TextDecoder().decode(result!.stdoutRaw)).toBe("out\n");
      expect(new TextDecoder().decode(result!.stderrRaw)).toBe("err\n");
      const files = Object.fromEntries(result!.outputFiles.map((f) => [f.path, new TextDecoder().decode(f.contents)]));
      expect(files).toEqual({ f: "file\n", g: "" });
    }
    // A caller that asks for nothing gets nothing inlined.
    const plain = await run(client, exec, spec);
    expect(plain.result!.stdoutRaw.length).toBe(0);
  });

  test("output_directory_format: Directory blobs from a root instead of (or beside) a Tree, and such results are cached", async () => {
    const make = "mkdir -p d/a/b && echo 1 > d/a/one && echo 2 > d/a/b/two && echo top > d/top";
    for (const format of [Command_OutputDirectoryFormat.DIRECTORY_ONLY, Command_OutputDirectoryFormat.TREE_AND_DIRECTORY]) {
      const spec = { args: ["sh", "-c", make], outputDirectories: ["d"], outputDirectoryFormat: format, salt: `fmt-${Math.random()}` };
      const { result } = await run(client, exec, spec);
      const out = result!.outputDirectories[0]!;
      expect(out.path).toBe("d");
      expect(out.treeDigest === undefined).toBe(format === Command_OutputDirectoryFormat.DIRECTORY_ONLY);
      // Walk the Directory blobs from the root: every file is there, with its content.
      const readDir = async (d: any) => fromBinary(DirectorySchema, (await client.read(`blobs/${d.hash}/${d.sizeBytes}`)).data);
      const root = await readDir(out.rootDirectoryDigest);
      expect(root.files.map((f) => f.name)).toEqual(["top"]);
      const a = await readDir(root.directories[0]!.digest);
      expect(a.files.map((f) => f.name)).toEqual(["one"]);
      const b = await readDir(a.directories[0]!.digest);
      expect(await text(client, b.files[0]!.digest)).toBe("2\n");
      if (out.treeDigest) expect((await readTree(client, out.treeDigest)).children.length).toBe(2);
      const hit = await run(client, exec, spec);
      expect(hit.response.cachedResult).toBe(true);
    }
  });
});

describe("missing and malformed actions", () => {
  function violations(response: any): string[] {
    const details = response.status?.details ?? [];
    return details.flatMap((d: any) => anyUnpack(d, PreconditionFailureSchema)?.violations.map((v) => `${v.type} ${v.subject}`) ?? []);
  }

  test("every missing input blob is listed as MISSING in a FAILED_PRECONDITION response", async () => {
    const built = buildAction({ args: ["cat", "a", "d/b", "d/e/c"], inputs: { a: "A-missing", "d/b": "B-missing", "d/e/c": "C-present" }, salt: `${Math.random()}` });
    const missing = ["A-missing", "B-missing"].map((s) => new Bun.CryptoHasher("sha256").update(s).digest("hex"));
    await uploadBlobs(client, built.blobs, (h) => missing.includes(h));
    const ops = await execute(exec, { actionDigest: built.action });
    expect(ops.length).toBe(1);
    const r = ops[0]!.response!;
    expect(ops[0]!.op.done).toBe(true);
    expect(r.status?.code).toBe(Code.FAILED_PRECONDITION);
    expect(violations(r).sort()).toEqual(missing.map((h) => `MISSING blobs/${h}/9`).sort());
  });

  test("a missing Action, Command or Directory is MISSING too", async () => {
    const unique = `${Math.random()}`;
    const built = buildAction({ args: ["true", unique], inputs: { "sub/x": unique } });
    let ops = await execute(exec, { actionDigest: built.action });
    expect(violations(ops[0]!.response)).toEqual([`MISSING blobs/${built.action.hash}/${built.action.sizeBytes}`]);
    await uploadBlobs(client, built.blobs, (h) => h === built.command.hash);
    ops = await execute(exec, { actionDigest: built.action });
    expect(violations(ops[0]!.response)).toEqual([`MISSING blobs/${built.command.hash}/${built.command.sizeBytes}`]);
  });

  test("platform properties it does not know run, each named once (log and ExecuteResponse.message); bad values of known ones are refused", async () => {
    // What Bazel 9 sends on worker-capable actions, and what RBE platform definitions carry.
    const platform = { persistentWorkerProtocol: "json", "container-image": "docker://x", OSFamily: "Linux", Pool: "default" };
    const first = await run(client, exec, { args: ["true"], platform, salt: `${Math.random()}` });
    expect(first.response.status?.code ?? 0).toBe(0);
    expect(first.result!.exitCode).toBe(0);
    expect(first.response.message).toContain('container-image="docker://x" is not used: actiond runs actions in its own runtime images, not in container images (this one ran in the base runtime, glibc2.36)');
    expect(first.response.message).toContain('persistentWorkerProtocol="json" means nothing to actiond and is ignored');
    expect(first.response.message).toContain('Pool="default"');
    expect(first.response.message).not.toContain("OSFamily");
    expect(server.log()).toContain('platform property persistentWorkerProtocol="json" means nothing to actiond');
    // Once each: the next such action runs quietly.
    const again = await run(client, exec, { args: ["true"], platform, salt: `${Math.random()}` });
    expect(again.result!.exitCode).toBe(0);
    expect(again.response.message).toBe("");

    let r = await run(client, exec, { args: ["true"], platform: { libc: "musl9.9" } });
    expect(r.response.status?.code).toBe(Code.INVALID_ARGUMENT);
    expect(r.response.status?.message).toContain("musl9.9");
    r = await run(client, exec, { args: ["true"], platform: { OSFamily: "Windows" } });
    expect(r.response.status?.code).toBe(Code.INVALID_ARGUMENT);
    // Only Command.platform (older clients) is honoured too.
    r = await run(client, exec, { args: ["true"], platform: { pids: "many" }, platformInCommandOnly: true });
    expect(r.response.status?.code).toBe(Code.INVALID_ARGUMENT);
  });

  test("with --strict-platform a property it does not know is INVALID_ARGUMENT naming it", async () => {
    await withOwnServer(["--strict-platform"], async (_own, c, e) => {
      const r = await run(c, e, { args: ["true"], platform: { OSFamily: "Linux", "container-image": "docker://x" } });
      expect(r.response.status?.code).toBe(Code.INVALID_ARGUMENT);
      expect(r.response.status?.message).toContain('unknown platform property "container-image"');
      expect(r.response.status?.message).toContain("--strict-platform");
      expect((await run(c, e, { args: ["true"], platform: { OSFamily: "Linux" } })).result!.exitCode).toBe(0);
    });
  });

  test("names and paths that would escape the execroot are INVALID_ARGUMENT, and nothing outside is touched", async () => {
    const cases: [string, Parameters<typeof buildAction>[0]][] = [
      ["input named ..", { args: ["true"], inputs: { "../x": "x" } }],
      ["symlink out of the execroot", { args: ["true"], inputs: { "d/l": { symlink: "../../etc/passwd" } } }],
      ["working directory outside", { args: ["true"], workingDirectory: "../.." }],
      ["output outside", { args: ["true"], outputFiles: ["../../escape"] }],
      ["absolute output", { args: ["true"], outputPaths: ["/tmp/escape"] }],
      ["output through an input symlink", { args: ["true"], inputs: { l: { symlink: "." } }, outputFiles: ["l/escape"] }],
    ];
    for (const [what, spec] of cases) {
      const r = await run(client, exec, { ...spec, salt: what });
      expect({ what, code: r.response.status?.code }).toEqual({ what, code: Code.INVALID_ARGUMENT });
    }
    // Names with "/", "." or NUL cannot be built with the helper; encode such a Directory by hand.
    const { create, toBinary } = await import("@bufbuild/protobuf");
    const { DirectorySchema, ActionSchema, CommandSchema } = await import("../src/gen/build/bazel/remote/execution/v2/remote_execution_pb");
    const { sha256 } = await import("./support/client");
    for (const name of ["a/b", ".", "nul\0"]) {
      const file = new TextEncoder().encode("x");
      const dir = toBinary(DirectorySchema, create(DirectorySchema, { files: [{ name, digest: sha256(file) }] }));
      const cmd = toBinary(CommandSchema, create(CommandSchema, { arguments: ["true"] }));
      const act = toBinary(ActionSchema, create(ActionSchema, { commandDigest: sha256(cmd), inputRootDigest: sha256(dir) }));
      await uploadBlobs(client, new Map([[sha256(file).hash, file], [sha256(dir).hash, dir], [sha256(cmd).hash, cmd], [sha256(act).hash, act]]));
      const ops = await execute(exec, { actionDigest: sha256(act) });
      expect({ name, code: ops.at(-1)!.response!.status?.code }).toEqual({ name, code: Code.INVALID_ARGUMENT });
    }
    expect(existsSync(join(server.root, "escape"))).toBe(false);
    expect(existsSync("/tmp/escape")).toBe(false);
  });
});

describe("outputs", () => {
  test("files keep their executable bit; missing outputs are left out; parents are created", async () => {
    const { result } = await run(client, exec, {
      args: ["sh", "-c", "echo run > out/bin/tool && chmod +x out/bin/tool && echo data > out/data.txt && : > empty"],
      outputFiles: ["out/bin/tool", "out/data.txt", "empty", "never/made"],
    });
    expect(result!.exitCode).toBe(0);
    const files = Object.fromEntries(result!.outputFiles.map((f) => [f.path, f]));
    expect(Object.keys(files).sort()).toEqual(["empty", "out/bin/tool", "out/data.txt"]);
    expect(files["out/bin/tool"]!.isExecutable).toBe(true);
    expect(files["out/data.txt"]!.isExecutable).toBe(false);
    expect(await text(client, files["out/data.txt"]!.digest)).toBe("data\n");
    expect(files["empty"]!.digest!.sizeBytes).toBe(0n);
  });

  test("an output directory is a Tree: nested dirs, empty dirs kept, symlinks, each Directory once", async () => {
    const { result } = await run(client, exec, {
      args: ["sh", "-c", "mkdir -p d/a d/b d/empty && echo same > d/a/f && echo same > d/b/f && chmod +x d/b/f && echo x > d/top && ln -s top d/link"],
      outputDirectories: ["d"],
    });
    expect(result!.outputDirectories.map((d) => d.path)).toEqual(["d"]);
    const tree = await readTree(client, result!.outputDirectories[0]!.treeDigest);
    expect(tree.root!.directories.map((d) => d.name)).toEqual(["a", "b", "empty"]);
    expect(tree.root!.files.map((f) => f.name)).toEqual(["top"]);
    expect(tree.root!.symlinks.map((s) => [s.name, s.target])).toEqual([["link", "top"]]);
    // a and b differ only in the executable bit; the empty directory is one more child.
    expect(tree.children.length).toBe(3);
    const b = tree.children.find((c) => c.files[0]?.isExecutable);
    expect(b?.files[0]?.name).toBe("f");
  });

  test("symlinks are reported as symlinks, in output_symlinks and the legacy lists", async () => {
    const { result } = await run(client, exec, {
      args: ["sh", "-c", "echo t > target && ln -s target link && mkdir realdir && ln -s realdir dirlink"],
      outputFiles: ["link"],
      outputDirectories: ["dirlink"],
    });
    expect(result!.outputFileSymlinks.map((s) => [s.path, s.target])).toEqual([["link", "target"]]);
    expect(result!.outputDirectorySymlinks.map((s) => [s.path, s.target])).toEqual([["dirlink", "realdir"]]);
    expect(result!.outputSymlinks.map((s) => s.path).sort()).toEqual(["dirlink", "link"]);
  });

  test("output_paths: the kind is decided by what the action made; legacy lists are ignored", async () => {
    const { result } = await run(client, exec, {
      args: ["sh", "-c", "echo f > f && mkdir -p d/sub && echo g > d/sub/g && ln -s f s && echo legacy > legacy"],
      outputPaths: ["d", "f", "s"],
      outputFiles: ["legacy"],
    });
    expect(result!.outputFiles.map((f) => f.path)).toEqual(["f"]);
    expect(result!.outputDirectories.map((d) => d.path)).toEqual(["d"]);
    expect(result!.outputSymlinks.map((s) => [s.path, s.target])).toEqual([["s", "f"]]);
    expect(result!.outputFileSymlinks).toEqual([]);
  });

  test("a legacy output file that is a directory is FAILED_PRECONDITION", async () => {
    const { response } = await run(client, exec, { args: ["mkdir", "x"], outputFiles: ["x"] });
    expect(response.status?.code).toBe(Code.FAILED_PRECONDITION);
  });

  test("the working directory: the command runs there and outputs are relative to it", async () => {
    const { result } = await run(client, exec, {
      args: ["sh", "-c", "pwd > out/where; cat ../in.txt >> out/where"],
      inputs: { "in.txt": "input", "pkg/keep": "" },
      workingDirectory: "pkg",
      outputFiles: ["out/where"],
    });
    expect(result!.outputFiles[0]!.path).toBe("out/where");
    expect(await text(client, result!.outputFiles[0]!.digest)).toBe("/execroot/pkg\ninput");
  });

  test("inputs arrive as given: contents, executable bits, symlinks, empty directories", async () => {
    const { result } = await run(client, exec, {
      args: ["sh", "-c", "./tool; cat link; test -d empty && echo empty-dir; test -x tool && test ! -x data && echo modes; cat data"],
      inputs: { tool: { content: "#!/bin/sh\necho from-tool\n", executable: true }, data: "data\n", link: { symlink: "data" }, empty: { dir: true } },
    });
    expect(await stdout(client, result)).toBe("from-tool\ndata\nempty-dir\nmodes\ndata\n");
  });

  test("argv[0] is found through the action's PATH, or relative to the working directory", async () => {
    let r = await run(client, exec, { args: ["printf", "%s", "via-path"] });
    expect(await stdout(client, r.result)).toBe("via-path");
    r = await run(client, exec, { args: ["./bin/hi"], inputs: { "w/bin/hi": { content: "#!/bin/sh\necho rel\n", executable: true } }, workingDirectory: "w" });
    expect(await stdout(client, r.result)).toBe("rel\n");
    r = await run(client, exec, { args: ["no-such-program-here"] });
    expect(r.result?.exitCode ?? r.response.status?.code).not.toBe(0);
  });
});

describe("a server that dies", () => {
  test("takes its running actions with it (kill -9), so none runs on untimed", async () => {
    const own = await startServer();
    const c = new ReapiClient(own.address);
    const e = executionClient(own.address);
    const marker = `${Math.floor(Math.random() * 1e6)}.75`;
    const action = await prepareAction(c, { args: ["sh", "-c", `sleep ${marker} & sleep ${marker}; wait`] });
    const running = execute(e, { actionDigest: action }).catch(() => []);
    expect(await waitUntil(() => processesWith(`sleep\0${marker}`).length === 2, 5000)).toBe(true);
    await own.kill();
    expect(await waitUntil(() => processesWith(`sleep\0${marker}`).length === 0, 5000)).toBe(true);
    await running;
    e.close();
    c.close();
  });
});

describe("--sandbox=none", () => {
  test("runs actions directly on this machine, in the execroot, with outputs collected as usual", async () => {
    await withOwnServer(["--sandbox", "none"], async (own, c, e) => {
      const { result } = await run(c, e, { args: ["sh", "-c", "echo host > out.txt; test -d /root && echo host-filesystem"], outputFiles: ["out.txt"] });
      expect(await text(c, result!.outputFiles[0]!.digest)).toBe("host\n");
      expect(await stdout(c, result)).toBe("host-filesystem\n");
      expect(own.log()).toContain("--sandbox=none: actions run directly on this machine");
    });
  });
});

describe("exit status and work folders", () => {
  test("an action killed by a signal exits 128+signal", async () => {
    const { result, response } = await run(client, exec, { args: ["sh", "-c", "kill -9 $$"], salt: `${Math.random()}` });
    expect(response.status?.code ?? 0).toBe(0);
    expect(result!.exitCode).toBe(137);
  });

  test("work folders are removed, unless --keep-failed keeps a failed action's", async () => {
    await run(client, exec, { args: ["sh", "-c", "exit 1"], salt: `${Math.random()}` });
    expect(await waitUntil(() => workFolders(server.root).length === 0, 3000)).toBe(true);
    await withOwnServer(["--keep-failed"], async (own, c, e) => {
      await run(c, e, { args: ["sh", "-c", "echo kept > evidence; exit 1"] });
      await run(c, e, { args: ["true"], salt: "succeeds" });
      // The successful action's folder goes (in the background, after its response); the failed one stays.
      expect(await waitUntil(() => workFolders(own.root).length === 1, 5000)).toBe(true);
      const kept = workFolders(own.root);
      expect(readFileSync(join(own.root, "exec", kept[0]!, "execroot/evidence"), "utf8")).toBe("kept\n");
      expect(own.log()).toContain("kept the work folder of failed action");
    });
  });
});

describe("concurrency", () => {
  test("actions starting together with the same new executable input all run, the store intact", async () => {
    await withOwnServer(["--jobs", "8"], async (own, c, e) => {
      for (let round = 0; round < 15; round++) {
        // A new executable blob per round: every action needs its executable twin at the same moment.
        const tool = { content: `#!/bin/sh\necho tool-${round}-${Math.random()}\n`, executable: true };
        const actions = await Promise.all(Array.from({ length: 8 }, (_, i) => prepareAction(c, { args: ["./tool"], inputs: { tool }, salt: `${round}-${i}` })));
        const ops = await Promise.all(actions.map((a) => execute(e, { actionDigest: a })));
        for (const o of ops) expect(o.at(-1)!.response!.result?.exitCode).toBe(0);
      }
      expect(own.log()).not.toContain("vanished from disk");
    });
  });
});

describe("runtimes", () => {
  test("the libc platform property picks among several runtimes; the first is the default", async () => {
    const images = ["base", "cc"].map((profile) => checkoutAssetPath("runtime", { profile }));
    await withOwnServer(images.flatMap((i) => ["--runtime-image", i]), async (_own, c, e) => {
      const probe = { args: ["sh", "-c", "command -v gcc || echo no-gcc"] };
      const byDefault = await run(c, e, probe);
      expect(await stdout(c, byDefault.result)).toBe("no-gcc\n");
      const withCc = await run(c, e, { ...probe, platform: { libc: "cc" } });
      expect(await stdout(c, withCc.result)).toBe("/usr/bin/gcc\n");
    });
  });
});

describe("limits and refusals found in review", () => {
  test("the server does not keep a file descriptor per action", async () => {
    await run(client, exec, { args: ["true"], salt: "fd-warmup" });
    const fds = () => readdirSync(`/proc/${server.proc.pid}/fd`).length;
    const before = fds();
    for (let i = 0; i < 30; i++) await run(client, exec, { args: ["true"], salt: `fd-${i}-${Math.random()}` });
    expect(fds()).toBeLessThan(before + 5);
  });

  test("absolute symlinks stay symlinks, never followed: as inputs, as outputs, and inside output directories", async () => {
    const { result } = await run(client, exec, {
      args: ["sh", "-c", "readlink in; ln -s /etc/passwd abs; mkdir d; ln -s /usr/bin d/tools; echo f > d/f"],
      inputs: { in: { symlink: "/etc/hosts" } },
      outputPaths: ["abs", "d"],
    });
    expect(result!.exitCode).toBe(0);
    expect(await stdout(client, result)).toBe("/etc/hosts\n");
    expect(result!.outputSymlinks.map((s) => [s.path, s.target])).toEqual([["abs", "/etc/passwd"]]);
    const tree = await readTree(client, result!.outputDirectories[0]!.treeDigest);
    expect(tree.root!.symlinks.map((s) => [s.name, s.target])).toEqual([["tools", "/usr/bin"]]);
    expect(tree.root!.files.map((f) => f.name)).toEqual(["f"]);
  });

  test("nested output paths each come back", async () => {
    const { result } = await run(client, exec, { args: ["sh", "-c", "mkdir -p out && echo a > out/a"], outputPaths: ["out", "out/a"] });
    expect(result!.outputDirectories.map((d) => d.path)).toEqual(["out"]);
    expect(result!.outputFiles.map((f) => f.path)).toEqual(["out/a"]);
    expect(await text(client, result!.outputFiles[0]!.digest)).toBe("a\n");
  });

  test("NUL in arguments, bad environment names, and timeouts above the maximum are INVALID_ARGUMENT", async () => {
    const specs: Parameters<typeof run>[2][] = [
      { args: ["echo", "a\0b"] },
      { args: ["true"], env: { "A=B": "x" } },
      { args: ["true"], env: { "": "x" } },
      { args: ["true"], timeoutSeconds: 400 * 24 * 3600 },
    ];
    for (const spec of specs) {
      const { response } = await run(client, exec, spec);
      expect({ spec, code: response.status?.code }).toEqual({ spec, code: Code.INVALID_ARGUMENT });
    }
  });

  test("a small input tree that expands to millions of directories is refused quickly", async () => {
    const { create, toBinary } = await import("@bufbuild/protobuf");
    const { DirectorySchema, ActionSchema, CommandSchema } = await import("../src/gen/build/bazel/remote/execution/v2/remote_execution_pb");
    const { sha256 } = await import("./support/client");
    const blobs = new Map<string, Uint8Array>();
    const add = (b: Uint8Array) => (blobs.set(sha256(b).hash, b), sha256(b));
    const cmd = add(toBinary(CommandSchema, create(CommandSchema, { arguments: ["true"] })));
    // 24 levels of {a: D, b: D}: 24 small blobs, 2^24 directories once expanded.
    let d = add(toBinary(DirectorySchema, create(DirectorySchema)));
    for (let i = 0; i < 24; i++) d = add(toBinary(DirectorySchema, create(DirectorySchema, { directories: [{ name: "a", digest: d }, { name: "b", digest: d }] })));
    // One directory of 20,000 symlinks, named 300 times from the root: 6 million symlinks.
    const links = add(toBinary(DirectorySchema, create(DirectorySchema, { symlinks: Array.from({ length: 20_000 }, (_, i) => ({ name: `l${String(i).padStart(5, "0")}`, target: "x" })) })));
    const wide = add(toBinary(DirectorySchema, create(DirectorySchema, { directories: Array.from({ length: 300 }, (_, i) => ({ name: `d${String(i).padStart(3, "0")}`, digest: links })) })));
    await uploadBlobs(client, blobs);
    for (const root of [d, wide]) {
      const act = add(toBinary(ActionSchema, create(ActionSchema, { commandDigest: cmd, inputRootDigest: root })));
      await uploadBlobs(client, new Map([[act.hash, blobs.get(act.hash)!]]));
      const started = Date.now();
      const ops = await execute(exec, { actionDigest: act });
      expect(ops.at(-1)!.response!.status?.code).toBe(Code.INVALID_ARGUMENT);
      expect(Date.now() - started).toBeLessThan(30_000);
    }
  });
});
