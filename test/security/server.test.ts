// What no client or action can do to the server, each a test that failed before the fix. The test
// names are the list of what actiond guarantees here; more of the list lives beside the code each
// promise is about (test/sandbox-helper.test.ts: the kernel keyrings; test/execution.test.ts: paths
// that would escape the execroot).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { zstdCompressSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ActionSchema,
  BatchUpdateBlobsRequestSchema,
  CommandSchema,
  Compressor_Value as Compressor,
  DirectorySchema,
  FindMissingBlobsRequestSchema,
  GetCapabilitiesRequestSchema,
  UpdateActionResultRequestSchema,
  type Digest,
} from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { WriteRequestSchema } from "../../src/gen/google/bytestream/bytestream_pb";
import { execute, executionClient, prepareAction, run, uploadBlobs, type ActionSpec } from "../support/actions";
import { ReapiClient, grpc, sha256 } from "../support/client";
import { randomBytes, rejects, rssMiB, waitUntil } from "../support/helpers";
import { frame, framesIn, message, openCall, ping, rawConnect, settingsFrame, statusTrailer, within, type RawConnection } from "../support/raw-h2";
import { startServer, workFolders, type ServerProcess } from "../support/server";

const MiB = 1024 * 1024;
const up = (d: Digest) => `uploads/${crypto.randomUUID()}/blobs/${d.hash}/${d.sizeBytes}`;

async function missing(c: ReapiClient, ds: Digest[]): Promise<string[]> {
  const res = await c.unary(c.cas, "findMissingBlobs", FindMissingBlobsRequestSchema, { blobDigests: ds });
  return res.missingBlobDigests.map((d: Digest) => d.hash);
}

let server: ServerProcess;
let c: ReapiClient;
let exec: ReturnType<typeof executionClient>;

beforeAll(async () => {
  server = await startServer({ args: ["--max-cas-size", "8M", "--max-output-size", "1M"] });
  c = new ReapiClient(server.address);
  exec = executionClient(server.address);
});

afterAll(async () => {
  exec.close();
  c.close();
  expect(await server.stop()).toBe(0);
});

describe("connections", () => {
  const capabilities = (client: ReapiClient) => client.unary(client.caps, "getCapabilities", GetCapabilitiesRequestSchema, {});

  test("a frame over HTTP/2's 16 KiB limit closes that connection before it is held in memory", async () => {
    const before = rssMiB(server.proc.pid);
    // 40 clients each announcing a 16 MiB SETTINGS frame and sending it.
    const conns = await Promise.all(Array.from({ length: 40 }, () => rawConnect(server.port)));
    for (const conn of conns) {
      conn.socket.write(settingsFrame(Buffer.alloc(16 * MiB - 1)));
    }
    for (const conn of conns) expect(await within(conn.closed, 10_000)).toBe(true);
    expect(rssMiB(server.proc.pid) - before).toBeLessThan(64);
    expect(server.log()).toContain("a frame of 16777215 bytes (type 4), over the 16384 allowed");
    expect((await capabilities(c)).cacheCapabilities).toBeDefined();
  });

  describe("with --max-connections 6 --idle-timeout 2", () => {
    let small: ServerProcess;
    beforeAll(async () => {
      small = await startServer({ args: ["--max-connections", "6", "--idle-timeout", "2"] });
    });
    afterAll(async () => {
      expect(await small.stop()).toBe(0);
    });

    test("a connection with no call in progress is closed after --idle-timeout", async () => {
      const idle = await rawConnect(small.port);
      const busy = await rawConnect(small.port, openCall(1));
      expect(await within(idle.closed, 10_000)).toBe(true);
      // A call that is still going keeps its connection.
      expect(await within(busy.closed, 1000)).toBe(false);
      busy.socket.destroy();
    });

    test("past --max-connections, a connection that never made a call makes room", async () => {
      const idle = await Promise.all(Array.from({ length: 6 }, () => rawConnect(small.port)));
      const client = new ReapiClient(small.address);
      expect((await capabilities(client)).cacheCapabilities).toBeDefined();
      expect((await Promise.all(idle.map((i) => within(i.closed, 0)))).filter(Boolean).length).toBeGreaterThanOrEqual(1);
      client.close();
      for (const i of idle) i.socket.destroy();
    });

    test("when every connection has a call in progress, a new one is told why and the others go on", async () => {
      // Connections with a call each, until the server says it is full. Those left by the tests
      // before may still count until the server sees them go; a PING's ACK says a call was read.
      const why = "each has calls in progress (the limit is --max-connections 6)";
      const busy: RawConnection[] = [];
      let told = false;
      for (let attempt = 0; attempt < 12 && !told; attempt++) {
        const conn = await rawConnect(small.port, openCall(1), ping());
        await waitUntil(() => conn.pinged() || conn.received().includes(why), 5000);
        told = conn.received().includes(why);
        if (!told) busy.push(conn);
      }
      expect(told).toBe(true);
      const turnedAway = new ReapiClient(small.address);
      expect((await rejects(capabilities(turnedAway))).code).toBe(grpc.status.UNAVAILABLE);
      turnedAway.close();
      expect(small.log()).toContain(why);
      // When one of them ends, a new client is served again (as soon as its retries reconnect).
      busy[0]!.socket.destroy();
      await busy[0]!.closed;
      const next = new ReapiClient(small.address);
      let served = false;
      for (const end = Date.now() + 10_000; !served && Date.now() < end; ) served = await capabilities(next).then(() => true, () => Bun.sleep(100).then(() => false));
      expect(served).toBe(true);
      next.close();
      for (const b of busy) b.socket.destroy();
    });
  });

  test("calls beyond the 128 at once a connection may have are refused; a connection that keeps opening them is closed", async () => {
    const calls = (n: number) => Array.from({ length: n }, (_, i) => openCall(1 + 2 * i));
    const over = await rawConnect(server.port, ...calls(129));
    // RST_STREAM(REFUSED_STREAM) for the 129th call (stream 257): the client may retry it.
    const refused = Buffer.from([0, 0, 4, 0x3, 0, 0, 0, 1, 1, 0, 0, 0, 7]);
    expect(await waitUntil(() => over.received().includes(refused), 10_000)).toBe(true);
    over.socket.destroy();
    const greedy = await rawConnect(server.port, ...calls(2000));
    expect(await within(greedy.closed, 10_000)).toBe(true);
    expect((await capabilities(c)).cacheCapabilities).toBeDefined();
  });

  test("big request messages take turns: past 32 MiB of them at once, the next waits with its window shut (the client holds its bytes) until one ends", async () => {
    const FIND_MISSING = "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs";
    const FRAME = 16384;
    const credit = (conn: RawConnection) => framesIn(conn.received()).reduce((n, f) => n + (f.type === 0x8 && f.stream === 1 ? f.payload.readUInt32BE(0) : 0), 0);
    // Two calls each declare 15 MiB and send 100 bytes of it: the budget (32 MiB) is theirs.
    const holders = await Promise.all([1, 2].map(() => rawConnect(server.port, openCall(1, FIND_MISSING), message(1, new Uint8Array(100), false, 15 * MiB), ping())));
    for (const h of holders) expect(await waitUntil(() => h.pinged(), 5000)).toBe(true);
    // A third sends 320 KiB of a 3 MiB request, past the quarter window after which credit comes back.
    const digests = Array.from({ length: 45_000 }, (_, i) => sha256(`absent ${i}`));
    const request = Buffer.from(toBinary(FindMissingBlobsRequestSchema, create(FindMissingBlobsRequestSchema, { blobDigests: digests })));
    const first = [message(1, request.subarray(0, FRAME - 5), false, request.length)];
    let sent = FRAME - 5;
    for (; sent < 20 * FRAME - 5; sent += FRAME) first.push(frame(0x0, 0, 1, request.subarray(sent, sent + FRAME)));
    // (Windows for the answer as large as the protocol allows: this client reads all it is sent.)
    const waiter = await rawConnect(server.port, settingsFrame(Buffer.from("0004" + "7fffffff", "hex")), frame(0x8, 0, 0, Buffer.from("7fff0000", "hex")), openCall(1, FIND_MISSING), ...first, ping());
    // The PING's answer comes after the server has read all of it: no window came back for the stream.
    expect(await waitUntil(() => waiter.pinged(), 5000)).toBe(true);
    expect(credit(waiter)).toBe(0);
    // Other calls go on meanwhile.
    expect((await capabilities(c)).cacheCapabilities).toBeDefined();
    // One holder gives up its call: the waiting message is let in, and its window opens.
    const cancel = Buffer.alloc(4);
    cancel.writeUInt32BE(0x8, 0);
    holders[0]!.socket.write(frame(0x3, 0, 1, cancel));
    expect(await waitUntil(() => credit(waiter) > 0, 5000)).toBe(true);
    // The rest goes as the window allows; the message held while it waited is answered whole (every
    // digest missing: the response's bytes are the request's, field 2 both ways).
    let payloadSent = 20 * FRAME;
    for (let at = sent; at < request.length; at += FRAME) {
      const end = Math.min(request.length, at + FRAME);
      expect(await waitUntil(() => payloadSent + end - at <= 1024 * 1024 + credit(waiter), 5000)).toBe(true);
      waiter.socket.write(frame(0x0, end === request.length ? 0x1 : 0, 1, request.subarray(at, end)));
      payloadSent += end - at;
    }
    expect(await waitUntil(() => waiter.received().includes(statusTrailer(0)), 10_000)).toBe(true);
    const answer = Buffer.concat(framesIn(waiter.received()).filter((f) => f.type === 0x0 && f.stream === 1).map((f) => f.payload));
    expect(answer.readUInt32BE(1)).toBe(request.length);
    expect(answer.subarray(5).equals(request)).toBe(true);
    for (const c of [...holders, waiter]) c.socket.destroy();
  });
});

describe("the status endpoints", () => {
  test("past 256 HTTP/1.1 connections at once (say, `actiond logs -f` followers), a new one is told why and closed; gRPC goes on", async () => {
    const action = await prepareAction(c, { args: ["/bin/sh", "-c", "echo started; sleep 60"], salt: crypto.randomUUID() });
    let stop = () => {};
    let known!: () => void;
    const started = new Promise<void>((resolve) => (known = resolve));
    const running = execute(exec, { actionDigest: action }, (_, call) => {
      stop = () => call.cancel();
      known();
    });
    await started;
    const held: Socket[] = [];
    try {
      const following = Array.from({ length: 256 }, () => {
        const s = connect(server.port, "127.0.0.1");
        s.on("error", () => {});
        held.push(s);
        s.write(`GET /api/logs?for=${action.hash}&follow=1 HTTP/1.1\r\nhost: x\r\n\r\n`);
        return new Promise<string>((resolve) => s.once("data", (d: Buffer) => resolve(d.toString("latin1", 0, 15))));
      });
      expect(new Set(await Promise.all(following))).toEqual(new Set(["HTTP/1.1 200 OK"]));
      const res = await fetch(`http://${server.address}/api/status`, { keepalive: false });
      expect(res.status).toBe(503);
      expect(await res.text()).toStartWith("actiond: 256 status connections are open already");
      expect((await c.unary(c.caps, "getCapabilities", GetCapabilitiesRequestSchema, {})).cacheCapabilities).toBeDefined();
    } finally {
      held.forEach((s) => s.destroy());
      stop();
      await running;
    }
    expect(await waitUntil(async () => (await fetch(`http://${server.address}/api/status`, { keepalive: false })).status === 200, 10_000)).toBe(true);
  }, 60_000);

  test("past 256 streams following running actions, one more is RESOURCE_EXHAUSTED, and the others go on", async () => {
    const names: string[] = [];
    const cancel = new AbortController();
    const running = execute(exec, { actionDigest: await prepareAction(c, { args: ["/bin/sh", "-c", "echo started; sleep 60"], salt: crypto.randomUUID() }) }, (o, call) => {
      if (o.meta.stdoutStreamName && names.length === 0) names.push(o.meta.stdoutStreamName);
      cancel.signal.addEventListener("abort", () => call.cancel());
    });
    expect(await waitUntil(() => names.length > 0, 20_000)).toBe(true);
    // Three clients: each connection takes at most 128 calls at once.
    const readers = [0, 1, 2].map(() => new ReapiClient(server.address, { ownConnection: true }));
    const firstBytes: Promise<void>[] = [];
    const reads: Promise<unknown>[] = [];
    try {
      for (let i = 0; i < 256; i++) {
        let got!: () => void;
        firstBytes.push(new Promise<void>((r) => (got = r)));
        reads.push(readers[i % 3]!.read(names[0]!, 0, 0, () => got()).catch((e) => e));
      }
      await Promise.all(firstBytes);
      const over = await rejects(readers[2]!.read(names[0]!));
      expect(over.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(over.details).toMatch(/^256 streams already follow running actions here \(at most 256\)/);
    } finally {
      cancel.abort();
      await running;
      await Promise.all(reads);
      readers.forEach((r) => r.close());
    }
  }, 60_000);
});

describe("storage", () => {
  test("an upload that declares a size and sends little evicts nothing, and blocks no other upload", async () => {
    const kept = Array.from({ length: 5 }, () => randomBytes(MiB));
    for (const k of kept) await c.upload(up(sha256(k)), k);
    // 7 MiB declared, one byte sent, and the stream left open: only that byte counts.
    const huge = randomBytes(7 * MiB);
    const hd = sha256(huge);
    const call = c.bs.write(() => {});
    call.on("error", () => {});
    call.write(create(WriteRequestSchema, { resourceName: up(hd), writeOffset: 0n, data: huge.subarray(0, 1) }));
    const other = randomBytes(MiB);
    expect(await c.upload(up(sha256(other)), other)).toBe(BigInt(MiB));
    expect(await missing(c, kept.map((k) => sha256(k)))).toEqual([]);
    call.cancel();
  });

  test("a zstd batch item that inflates beyond its digest's size is refused without inflating it", async () => {
    // 1 GiB of zeros in about 32 KiB, under a digest that claims 1 KiB.
    const zeros = new Uint8Array(64 * MiB);
    const frame = zstdCompressSync(Buffer.concat(Array.from({ length: 16 }, () => zeros)));
    const claimed = sha256(new Uint8Array(1024));
    const before = rssMiB(server.proc.pid);
    const res = await c.unary(c.cas, "batchUpdateBlobs", BatchUpdateBlobsRequestSchema, { requests: [{ digest: claimed, data: frame, compressor: Compressor.ZSTD }] });
    expect(res.responses[0].status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(res.responses[0].status.message).toContain("decompresses to more than the 1024 bytes its digest says");
    expect(rssMiB(server.proc.pid) - before).toBeLessThan(64);
    // The same frame claiming its true size is over the batch limit, as a whole, before anything is inflated.
    const truthful = { hash: "0".repeat(64), sizeBytes: BigInt(1024 * MiB) };
    const e = await rejects(c.unary(c.cas, "batchUpdateBlobs", BatchUpdateBlobsRequestSchema, { requests: [{ digest: truthful, data: frame, compressor: Compressor.ZSTD }] }));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toContain("max_batch_total_size_bytes");
  });

  test("an action result naming an output path outside the working directory is refused", async () => {
    const blob = randomBytes(100);
    await c.upload(up(sha256(blob)), blob);
    for (const path of ["../../etc/passwd", "/etc/passwd", "a/../../b", ""]) {
      const e = await rejects(
        c.unary(c.ac, "updateActionResult", UpdateActionResultRequestSchema, { actionDigest: sha256(`escape ${path}`), actionResult: { outputFiles: [{ path, digest: sha256(blob) }] } }),
      );
      expect({ path, code: e.code }).toEqual({ path, code: grpc.status.INVALID_ARGUMENT });
    }
    const e = await rejects(c.unary(c.ac, "updateActionResult", UpdateActionResultRequestSchema, { actionDigest: sha256("escape symlink"), actionResult: { outputSymlinks: [{ path: "../x", target: "y" }] } }));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe("input trees", () => {
  /** An action whose input root is a chain of `depth` directories, each named `name`. */
  async function chained(depth: number, name: string): Promise<Digest> {
    const blobs = new Map<string, Uint8Array>();
    const add = (b: Uint8Array) => (blobs.set(sha256(b).hash, b), sha256(b));
    let d = add(toBinary(DirectorySchema, create(DirectorySchema)));
    for (let i = 0; i < depth; i++) d = add(toBinary(DirectorySchema, create(DirectorySchema, { directories: [{ name, digest: d }] })));
    const cmd = add(toBinary(CommandSchema, create(CommandSchema, { arguments: ["true"] })));
    const act = add(toBinary(ActionSchema, create(ActionSchema, { commandDigest: cmd, inputRootDigest: d, salt: new TextEncoder().encode(`${Math.random()}`) })));
    await uploadBlobs(c, blobs);
    return act;
  }

  test("a tree deeper than 256 directories is INVALID_ARGUMENT, before anything is created", async () => {
    const ops = await execute(exec, { actionDigest: await chained(3000, "d") });
    const status = ops.at(-1)!.response!.status!;
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.message).toContain("deeper than 256 directories");
  });

  test("a symlink chain that resolves above the execroot is INVALID_ARGUMENT, though each link alone stays inside", async () => {
    // d/s -> "." and d/link -> "s/../../usr": textually d/usr, resolved /execroot/../usr, the sandbox's /usr.
    const r = await run(c, exec, { args: ["true"], inputs: { "d/s": { symlink: "." }, "d/link": { symlink: "s/../../usr" } }, salt: `${Math.random()}` });
    expect(r.response.status?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(r.response.status?.message).toContain('symlink "d/link" leads outside the execroot');
    // Chains that stay inside, a loop, and absolute targets are fine.
    const ok = await run(c, exec, {
      args: ["sh", "-c", "cat d/via"],
      inputs: { "d/s": { symlink: "." }, "d/f": "inside\n", "d/via": { symlink: "s/s/f" }, "loop/a": { symlink: "b" }, "loop/b": { symlink: "a" }, abs: { symlink: "/usr" } },
      salt: `${Math.random()}`,
    });
    expect(ok.result?.exitCode).toBe(0);
  });

  test("an output path or working directory through an input symlink or file is INVALID_ARGUMENT: no directory is made through it", async () => {
    const outside = `/tmp/actiond-escape-${crypto.randomUUID()}`;
    const inputs = { out: { symlink: outside }, "in.txt": "a file\n" };
    const cases: [Partial<ActionSpec>, string][] = [
      [{ outputFiles: ["out/sub/x"] }, 'output path "out/sub/x" goes through the input symlink "out"'],
      [{ outputPaths: ["in.txt/x"] }, 'output path "in.txt/x" goes through the input file "in.txt"'],
      [{ workingDirectory: "out/w" }, 'working_directory "out/w" goes through the input symlink "out"'],
    ];
    for (const [spec, through] of cases) {
      const r = await run(c, exec, { args: ["true"], inputs, ...spec, salt: `${Math.random()}` });
      expect(r.response.status?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(r.response.status?.message).toContain(through);
    }
    expect(existsSync(outside)).toBe(false);
  });

  test("a name longer than 255 bytes is INVALID_ARGUMENT naming it, not INTERNAL", async () => {
    const ops = await execute(exec, { actionDigest: await chained(1, "n".repeat(300)) });
    const status = ops.at(-1)!.response!.status!;
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.message).toContain("a name of 300 bytes is longer than the 255 a file name may have");
  });
});

/** A shell command that leaves a chain of nested directories `levels` deep (1,000 at a time: each path stays short). */
const deepChain = (levels: number) => `p=$(printf 'd/%.0s' $(seq 1000)); for i in $(seq ${levels / 1000}); do mkdir -p $p && cd $p; done; echo bottom > f`;

describe("actions", () => {
  test("a work folder 10,000 directories deep is removed in the background: the next action runs at once", async () => {
    const deep = await run(c, exec, { args: ["bash", "-c", deepChain(10_000)], salt: `${Math.random()}` });
    expect(deep.result!.exitCode).toBe(0);
    const started = Date.now();
    const next = await run(c, exec, { args: ["true"], salt: `${Math.random()}` });
    expect(next.result!.exitCode).toBe(0);
    expect(Date.now() - started).toBeLessThan(2000);
    await waitUntil(() => workFolders(server.root).length === 0, 60_000);
    expect(server.log().split("\n").filter((l) => l.includes("cannot remove"))).toEqual([]);
    expect(workFolders(server.root)).toEqual([]);
  }, 120_000);

  test("a restart with such a chain left behind (--keep-failed) serves at once, and removes it meanwhile", async () => {
    const own = await startServer({ args: ["--keep-failed"] });
    const oc = new ReapiClient(own.address);
    const oe = executionClient(own.address);
    try {
      const failed = await run(oc, oe, { args: ["bash", "-c", `${deepChain(10_000)}; exit 1`] });
      expect(failed.result!.exitCode).toBe(1);
      expect(workFolders(own.root)).toHaveLength(1);
    } finally {
      oe.close();
      oc.close();
      expect(await own.stop()).toBe(0);
    }
    const started = Date.now();
    const again = await startServer({ root: own.root });
    expect(Date.now() - started).toBeLessThan(10_000);
    const c2 = new ReapiClient(again.address);
    const e2 = executionClient(again.address);
    try {
      expect((await run(c2, e2, { args: ["true"], salt: `${Math.random()}` })).result!.exitCode).toBe(0);
      const leftovers = () => readdirSync(own.root).filter((n) => n.startsWith("exec.old-"));
      await waitUntil(() => leftovers().length === 0, 60_000);
      expect(leftovers()).toEqual([]);
    } finally {
      e2.close();
      c2.close();
      expect(await again.stop()).toBe(0);
    }
  }, 180_000);

  test("outputs beyond --max-output-size fail the action with RESOURCE_EXHAUSTED, and a sparse one evicts nothing", async () => {
    const kept = Array.from({ length: 3 }, () => randomBytes(MiB));
    for (const k of kept) await c.upload(up(sha256(k)), k);
    // 3 GB that take no blocks on disk: counted by their apparent size.
    const { response } = await run(c, exec, { args: ["truncate", "-s", "3G", "sparse"], outputPaths: ["sparse"], salt: `${Math.random()}` });
    expect(response.status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(response.status?.message).toContain("--max-output-size");
    expect(await missing(c, kept.map((k) => sha256(k)))).toEqual([]);
    // Under the limit, outputs are as usual.
    const ok = await run(c, exec, { args: ["sh", "-c", "head -c 1000 /dev/zero > small"], outputPaths: ["small"], salt: `${Math.random()}` });
    expect(ok.result!.outputFiles[0]!.digest!.sizeBytes).toBe(1000n);
  });
});
