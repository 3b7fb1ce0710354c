// The upstream tier's transport and limits against real servers: another actiond (zstd streams),
// bazel-remote over TLS, Buildbarn's bb_storage behind a token, an upstream that never answers, and
// a push queue past its bound. (The Bazel builds and the crash faults are in e2e/bazel-upstream.)
import { afterAll, expect, test } from "bun:test";
import { generateKeyPairSync, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  FindMissingBlobsRequestSchema,
  GetActionResultRequestSchema,
  GetTreeRequestSchema,
  TreeSchema,
  UpdateActionResultRequestSchema,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { startCorruptingProxy } from "./support/corrupting-proxy";
import { buildAction, execute, executionClient, text, uploadBlobs } from "./support/actions";
import { ReapiClient, RpcError, grpc, sha256 } from "./support/client";
import { bazelRemote, freePort, skipWithoutPeers, startBbStorage, type Peer } from "./support/peers";
import { startServer, tempDir, type ServerProcess } from "./support/server";

const SKIP = skipWithoutPeers("upstream");
const cleanups: (() => Promise<unknown> | void)[] = [];

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function actiond(...args: string[]): Promise<ServerProcess> {
  const server = await startServer({ args: ["--log-level", "debug", "--sandbox", "none", ...args] });
  cleanups.push(() => server.stop());
  return server;
}

function client(server: { address: string }): ReapiClient {
  const c = new ReapiClient(server.address);
  cleanups.push(() => c.close());
  return c;
}

/** Compressible bytes over the 256 KiB that go as a stream rather than in a batch. */
function payload(n: number, seed: string): Uint8Array {
  const line = new TextEncoder().encode(`${seed}: a line that repeats, as build outputs do\n`);
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += line.length) out.set(line.subarray(0, Math.min(line.length, n - at)), at);
  return out;
}

async function upload(c: ReapiClient, data: Uint8Array): Promise<string> {
  const d = sha256(data);
  await c.upload(`uploads/${crypto.randomUUID()}/blobs/${d.hash}/${d.sizeBytes}`, data);
  return `blobs/${d.hash}/${d.sizeBytes}`;
}

/** Resolves once the server's push queue is empty with at least n blobs pushed. */
async function blobsPushed(server: ServerProcess, n: number): Promise<void> {
  for (let from = 0; ; ) {
    const m = await server.waitForLog(/upstream push queue is empty: \d+ results and (\d+) blobs/, 60_000, from);
    if (Number(m[1]) >= n) return;
    from += m.index + m[0].length;
  }
}

test.skipIf(SKIP)("another actiond as the upstream: streams go zstd-compressed both ways, and the bytes arrive whole", async () => {
  const team = await actiond();
  const a = await actiond("--upstream", `grpc://${team.address}`, "--upstream-write", "all");
  await a.waitForLog(/streams zstd-compressed/);
  const data = payload(3 * 2 ** 20, "zstd");
  const name = await upload(client(a), data);
  await blobsPushed(a, 1);
  // The team's server took it compressed, and has it whole.
  expect(team.log()).toMatch(new RegExp(`stored ${name.slice("blobs/".length)} \\(zstd\\)`));
  expect((await client(team).read(name)).data).toEqual(data);

  const b = await actiond("--upstream", `grpc://${team.address}`);
  expect((await client(b).read(name)).data).toEqual(data);
  expect(b.log()).toMatch(/fetched [0-9a-f]{64}\/3145728 from the upstream/);
});

test.skipIf(SKIP)("bazel-remote over TLS: --upstream-ca trusts its certificate; without it nothing is taken from an unverified server", async () => {
  const dir = tempDir("upstream-tls-");
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  const made = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout", key, "-out", cert]);
  expect(made.exitCode).toBe(0);
  const team = await bazelRemote(join(dir, "cache"), ["--tls_cert_file", cert, "--tls_key_file", key], grpc.credentials.createSsl(readFileSync(cert)));
  cleanups.push(() => team.stop());
  await team.start();
  const url = `grpcs://localhost:${team.address.split(":")[1]}`;

  const a = await actiond("--upstream", url, "--upstream-ca", cert, "--upstream-write", "all");
  const data = payload(600_000, "tls");
  const name = await upload(client(a), data);
  await blobsPushed(a, 1);
  const b = await actiond("--upstream", url, "--upstream-ca", cert);
  expect((await client(b).read(name)).data).toEqual(data);

  const unverified = await actiond("--upstream", url);
  const err = await client(unverified).read(name).catch((e: RpcError) => e);
  expect(err).toBeInstanceOf(RpcError);
  expect((err as RpcError).code).toBe(grpc.status.NOT_FOUND);
  expect(unverified.log()).toMatch(/upstream grpcs:\/\/localhost:\d+ is not answering/);
});

/** bb_storage that takes only calls bearing a JWT signed by the returned key. */
async function tokenGuardedBbStorage(): Promise<{ peer: Peer; token: string }> {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");
  const header = b64url(JSON.stringify({ alg: "EdDSA", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub: "ci", exp: Math.floor(Date.now() / 1000) + 3600 }));
  const token = `${header}.${body}.${b64url(sign(null, Buffer.from(`${header}.${body}`), privateKey))}`;
  const peer = await startBbStorage({
    jwt: {
      jwksInline: { keys: [{ ...publicKey.export({ format: "jwk" }), use: "sig" }] },
      maximumCacheSize: 100,
      cacheReplacementPolicy: "LEAST_RECENTLY_USED",
      claimsValidationJmespathExpression: "`true`",
      metadataExtractionJmespathExpression: "`{}`",
    },
  });
  cleanups.push(() => peer.stop());
  return { peer, token };
}

test.skipIf(SKIP)("bb_storage behind a token: --upstream-header carries it; without it the upstream's refusal is logged once and calls are answered locally", async () => {
  const { peer, token } = await tokenGuardedBbStorage();
  const header = `authorization=Bearer ${token}`;
  const a = await actiond("--upstream", peer.url, "--upstream-header", header, "--upstream-write", "all");
  const data = payload(400_000, "token");
  const name = await upload(client(a), data);
  await blobsPushed(a, 1);
  const b = await actiond("--upstream", peer.url, "--upstream-header", header);
  expect((await client(b).read(name)).data).toEqual(data);

  const anonymous = await actiond("--upstream", peer.url);
  const c = client(anonymous);
  const d = sha256(data);
  for (let i = 0; i < 3; i++) {
    const res = await c.unary(c.cas, "findMissingBlobs", FindMissingBlobsRequestSchema, { blobDigests: [d] });
    expect(res.missingBlobDigests.map((m: { hash: string }) => m.hash)).toEqual([d.hash]);
  }
  expect(anonymous.log().match(/upstream \S+ refused FindMissingBlobs/g)?.length).toBe(1);
});

test.skipIf(SKIP)("an action whose blobs are only upstream runs here: its inputs and its tree (GetTree) are read through", async () => {
  const team = await actiond();
  const spec = { args: ["/bin/sh", "-c", "cat src/a.txt src/deep/b.txt > out.txt"], inputs: { "src/a.txt": "from the team\n", "src/deep/b.txt": "and deeper\n" }, outputFiles: ["out.txt"] };
  const { action, blobs, inputRoot } = buildAction(spec);
  await uploadBlobs(client(team), blobs);

  const a = await actiond("--upstream", `grpc://${team.address}`);
  const c = client(a);
  const tree = await c.collect(c.cas, "getTree", GetTreeRequestSchema, { rootDigest: inputRoot });
  expect(tree.flatMap((page: { directories: unknown[] }) => page.directories)).toHaveLength(3);
  const ops = await execute(executionClient(a.address), { actionDigest: action });
  const result = ops.at(-1)!.response!.result!;
  expect(result.exitCode).toBe(0);
  expect(await text(c, result.outputFiles[0]!.digest)).toBe("from the team\nand deeper\n");
  expect(a.log()).toMatch(/fetched [0-9a-f]{64}\/14 from the upstream/);
});

test.skipIf(SKIP)("an action result from the upstream whose output leaves the working directory is not taken", async () => {
  const team = await actiond();
  const t = client(team);
  const output = new TextEncoder().encode("an output");
  await upload(t, output);
  const action = sha256("an action with one output");
  await t.unary(t.ac, "updateActionResult", UpdateActionResultRequestSchema, { actionDigest: action, actionResult: { outputFiles: [{ path: "out.txt", digest: sha256(output) }] } });
  const proxy = await startCorruptingProxy(team.address, "paths");
  cleanups.push(() => proxy.close());
  const a = await actiond("--upstream", proxy.url);
  const c = client(a);
  const err = await c.unary(c.ac, "getActionResult", GetActionResultRequestSchema, { actionDigest: action }).catch((e: RpcError) => e);
  expect(proxy.flipped).toBe(1);
  expect((err as RpcError).code).toBe(grpc.status.NOT_FOUND);
  expect(a.log()).toMatch(/sent a result for action [0-9a-f]{64}\/\d+ that is not taken: output file path "..\/..\/out.txt"/);
});

test.skipIf(SKIP)("an upstream that never answers costs one --upstream-timeout, then calls are answered locally at once", async () => {
  // A listener that takes connections and never says a word: not even the HTTP/2 preface.
  const silent: Socket[] = [];
  const server: Server = createServer((s) => silent.push(s));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => {
    for (const s of silent) s.destroy();
    server.close();
  });
  const port = (server.address() as { port: number }).port;
  const a = await actiond("--upstream", `grpc://127.0.0.1:${port}`, "--upstream-timeout", "1");
  const c = client(a);
  const action = sha256("an action nobody ran");
  const timed = async () => {
    const started = performance.now();
    const err = await c.unary(c.ac, "getActionResult", GetActionResultRequestSchema, { actionDigest: action }).catch((e: RpcError) => e);
    expect((err as RpcError).code).toBe(grpc.status.NOT_FOUND);
    return performance.now() - started;
  };
  expect(await timed()).toBeLessThan(3_000);
  expect(a.log()).toMatch(/is not answering/);
  expect(await timed()).toBeLessThan(500);
});

test.skipIf(SKIP)("a result whose Tree names a million files is pushed whole (its files a chunk at a time)", async () => {
  const team = await actiond();
  const a = await actiond("--upstream", `grpc://${team.address}`, "--upstream-write", "all");
  const c = client(a);
  const empty = sha256(new Uint8Array(0));
  const files = Array.from({ length: 1_000_000 }, (_, i) => ({ name: `f${String(i).padStart(7, "0")}`, digest: empty }));
  const tree = toBinary(TreeSchema, create(TreeSchema, { root: { files } }));
  await upload(c, tree);
  const action = sha256("an action with a million outputs");
  const actionResult = { outputDirectories: [{ path: "out", treeDigest: sha256(tree) }] };
  await c.unary(c.ac, "updateActionResult", UpdateActionResultRequestSchema, { actionDigest: action, actionResult });
  // Spread into one push(...) call, a million digests overflowed the stack and the result never left.
  await a.waitForLog(/upstream push queue is empty: 1 results/, 120_000);
  const t = client(team);
  const pushed = await t.unary(t.ac, "getActionResult", GetActionResultRequestSchema, { actionDigest: action });
  expect(pushed.outputDirectories[0].treeDigest).toEqual(sha256(tree));
});

test.skipIf(SKIP)("the push queue is bounded: past --upstream-queue pushes are dropped and counted; what was queued survives a restart", async () => {
  const dead = await freePort();
  const root = tempDir("upstream-queue-");
  const args = ["--log-level", "debug", "--sandbox", "none", "--upstream", `grpc://127.0.0.1:${dead}`, "--upstream-write", "all", "--upstream-queue", "3"];
  const first = await startServer({ root, args });
  const c = new ReapiClient(first.address);
  for (let i = 0; i < 5; i++) await upload(c, payload(1000 + i, `queued ${i}`));
  c.close();
  await first.waitForLog(/push queue is full \(3\)/);
  expect(await first.stop()).toBe(0);
  expect(first.log()).toMatch(/2 dropped/);
  const again = await startServer({ root, args });
  cleanups.push(() => again.stop());
  await again.waitForLog(/upstream push queue: 3 pushes left from the last run/);
});
