// ContentAddressableStorage and Capabilities over real gRPC against a real `actiond serve`.
import { beforeAll, describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  ContentAddressableStorage,
  FindMissingBlobsResponseSchema,
  BatchReadBlobsRequestSchema,
  BatchUpdateBlobsRequestSchema,
  Compressor_Value as Compressor,
  DigestFunction_Value as DigestFunction,
  DirectorySchema,
  FindMissingBlobsRequestSchema,
  GetCapabilitiesRequestSchema,
  GetTreeRequestSchema,
  GetActionResultRequestSchema,
  SymlinkAbsolutePathStrategy_Value,
  UpdateActionResultRequestSchema,
  type Directory,
  type Digest,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { createBLAKE3 } from "hash-wasm";
import { ReapiClient, RpcError, digestOf, grpc, sha256 } from "./support/client";
import { WIRE_BYTES, grpcServiceDefinition } from "../src/rpc";
import { rejects, suiteServer } from "./support/helpers";

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const enc = (s: string) => new TextEncoder().encode(s);

const suite = suiteServer();
let c: ReapiClient;
beforeAll(() => void (c = suite.client));

const findMissing = (digests: Digest[], instanceName = "", digestFunction = DigestFunction.UNKNOWN) =>
  c.unary(c.cas, "findMissingBlobs", FindMissingBlobsRequestSchema, { instanceName, blobDigests: digests, digestFunction });
const batchUpdate = (requests: { digest: Digest; data: Uint8Array; compressor?: Compressor }[], instanceName = "") =>
  c.unary(c.cas, "batchUpdateBlobs", BatchUpdateBlobsRequestSchema, { instanceName, requests });
/** FindMissingBlobs with the request and response as bytes, through the same WIRE_BYTES codec the server uses. */
function rawFindMissing(request: Buffer): Promise<Buffer> {
  const Ctor = grpc.makeGenericClientConstructor(grpcServiceDefinition(ContentAddressableStorage, { findMissingBlobs: WIRE_BYTES }), "CAS");
  const client = new Ctor(suite.server.address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
  return new Promise<Buffer>((res, rej) => client.findMissingBlobs(request, (err: any, out: Buffer) => (client.close(), err ? rej(new RpcError(err.code, err.details, undefined)) : res(out))));
}
const batchRead = (digests: Digest[]) => c.unary(c.cas, "batchReadBlobs", BatchReadBlobsRequestSchema, { digests });

describe("Capabilities", () => {
  test("advertises a cache and an executor Bazel 4.2 accepts: SHA256 and BLAKE3, updates, batch and blob limits, zstd, absolute symlinks, priorities, API 2.0 to 2.11", async () => {
    const caps = await c.unary(c.caps, "getCapabilities", GetCapabilitiesRequestSchema, { instanceName: "any/thing" });
    const cache = caps.cacheCapabilities;
    expect(cache.digestFunctions).toEqual([DigestFunction.SHA256, DigestFunction.BLAKE3]);
    expect(cache.actionCacheUpdateCapabilities.updateEnabled).toBe(true);
    expect(cache.maxBatchTotalSizeBytes).toBe(BigInt(4 * 1024 * 1024 - 1024));
    expect(cache.supportedCompressors).toEqual([Compressor.ZSTD]);
    expect(caps.lowApiVersion).toMatchObject({ major: 2, minor: 0 });
    // 2.11: every feature up to it is served (BLAKE3 and output_directory_format 2.8, inlining on Execute 2.9).
    expect(caps.highApiVersion).toMatchObject({ major: 2, minor: 11 });
    expect(cache.symlinkAbsolutePathStrategy).toBe(SymlinkAbsolutePathStrategy_Value.ALLOWED);
    // The biggest blob there can be: the whole store (--max-cas-size, 20 GiB by default).
    expect(cache.maxCasBlobSizeBytes).toBe(20n * 2n ** 30n);
    expect(caps.executionCapabilities.executionPriorityCapabilities.priorities).toEqual([expect.objectContaining({ minPriority: -(2 ** 31), maxPriority: 2 ** 31 - 1 })]);
    // Execution: enabled, with SHA-256 as the legacy single value Bazel compares with its own.
    expect(caps.executionCapabilities.execEnabled).toBe(true);
    expect(caps.executionCapabilities.digestFunction).toBe(DigestFunction.SHA256);
    expect(caps.executionCapabilities.digestFunctions).toEqual([DigestFunction.SHA256, DigestFunction.BLAKE3]);
  });
});

describe("FindMissingBlobs", () => {
  test("the empty blob is never missing; unknown blobs are; stored ones are not", async () => {
    const stored = sha256("stored for find-missing");
    await batchUpdate([{ digest: stored, data: enc("stored for find-missing") }]);
    const absent = sha256("never uploaded");
    const res = await findMissing([digestOf(EMPTY_SHA256, 0), absent, stored]);
    expect(res.missingBlobDigests.map((d: Digest) => d.hash)).toEqual([absent.hash]);
  });

  test("the right hash with the wrong size is missing", async () => {
    const d = sha256("size matters");
    await batchUpdate([{ digest: d, data: enc("size matters") }]);
    const res = await findMissing([digestOf(d.hash, 999)]);
    expect(res.missingBlobDigests).toHaveLength(1);
  });

  test("instance names (with slashes) share one store", async () => {
    const d = sha256("shared across instances");
    await batchUpdate([{ digest: d, data: enc("shared across instances") }], "team/a");
    expect((await findMissing([d], "team/b/c")).missingBlobDigests).toHaveLength(0);
  });

  test("a malformed digest is INVALID_ARGUMENT naming it", async () => {
    const e1 = await rejects(findMissing([digestOf("XYZ", 3)]));
    expect(e1.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e1.details).toContain("blob_digests[0]");
    const e2 = await rejects(findMissing([digestOf("a".repeat(64), -1)]));
    expect(e2.code).toBe(grpc.status.INVALID_ARGUMENT);
    const e3 = await rejects(findMissing([digestOf(EMPTY_SHA256, 5)]));
    expect(e3.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  test("an unsupported digest function is INVALID_ARGUMENT", async () => {
    const e = await rejects(findMissing([digestOf("a".repeat(40), 1)], "", DigestFunction.SHA1));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toContain("SHA1");
  });

  // The server reads this call from its wire bytes: the client's own Digest bytes come back, in order.
  test("on the wire: duplicates, unknown fields and the digest function after the digests", async () => {
    const stored = sha256("stored for the wire test");
    await batchUpdate([{ digest: stored, data: enc("stored for the wire test") }]);
    const absent = sha256("absent on the wire");
    const digests = toBinary(FindMissingBlobsRequestSchema, create(FindMissingBlobsRequestSchema, { instanceName: "x", blobDigests: [absent, stored, absent] }));
    // Field 9 (unknown to us, a varint), then digest_function SHA256 (3 = 1) last.
    const request = Buffer.concat([Buffer.from(digests), Buffer.from([9 << 3, 5, 3 << 3, 1])]);
    const res = await rawFindMissing(request);
    expect(fromBinary(FindMissingBlobsResponseSchema, res).missingBlobDigests.map((d) => d.hash)).toEqual([absent.hash, absent.hash]);
  });

  test("on the wire: bytes that are no protobuf message are INVALID_ARGUMENT", async () => {
    for (const bad of [Buffer.from([0x12, 0x7f, 1, 2]), Buffer.from([0x12]), Buffer.from([0x0f]), Buffer.from([0x12, 0x02, 0x0a, 0x40])]) {
      const e = await rejects(rawFindMissing(bad));
      expect({ bad: [...bad], code: e.code }).toEqual({ bad: [...bad], code: grpc.status.INVALID_ARGUMENT });
    }
  });
});

describe("BatchUpdateBlobs and BatchReadBlobs", () => {
  test("round trip, with per-item statuses", async () => {
    const a = enc("alpha blob");
    const b = new Uint8Array(100_000).map((_, i) => i % 251);
    const res = await batchUpdate([
      { digest: sha256(a), data: a },
      { digest: sha256(b), data: b },
    ]);
    expect(res.responses.map((r: any) => r.status.code)).toEqual([0, 0]);
    const missing = sha256("not there");
    const read = await batchRead([sha256(a), missing, sha256(b), digestOf(EMPTY_SHA256, 0)]);
    expect(read.responses.map((r: any) => r.status.code)).toEqual([0, grpc.status.NOT_FOUND, 0, 0]);
    expect(Buffer.from(read.responses[0].data).toString()).toBe("alpha blob");
    expect(Buffer.compare(read.responses[2].data, b)).toBe(0);
    expect(read.responses[3].data).toHaveLength(0);
  });

  test("a digest mismatch fails that item with INVALID_ARGUMENT and stores nothing", async () => {
    const claimed = sha256("what the digest says");
    const good = enc("a good neighbour");
    const res = await batchUpdate([
      { digest: claimed, data: enc("something else entirely!") },
      { digest: sha256(good), data: good },
    ]);
    expect(res.responses[0].status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(res.responses[0].status.message).toMatch(/digest mismatch|bytes/);
    expect(res.responses[1].status.code).toBe(0);
    expect((await findMissing([claimed])).missingBlobDigests).toHaveLength(1);
  });

  test("zstd-compressed batch items are decompressed and verified", async () => {
    const data = enc("compress me ".repeat(1000));
    const res = await batchUpdate([{ digest: sha256(data), data: Bun.zstdCompressSync(data), compressor: Compressor.ZSTD }]);
    expect(res.responses[0].status.code).toBe(0);
    const read = await batchRead([sha256(data)]);
    expect(Buffer.compare(read.responses[0].data, data)).toBe(0);
  });

  test("a batch over max_batch_total_size_bytes fails as a whole with INVALID_ARGUMENT", async () => {
    const big = new Uint8Array(3 * 1024 * 1024);
    const big2 = new Uint8Array(3 * 1024 * 1024).fill(1);
    const e = await rejects(batchUpdate([
      { digest: sha256(big), data: big },
      { digest: sha256(big2), data: big2 },
    ]));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toContain("max_batch_total_size_bytes");
    expect((await findMissing([sha256(big), sha256(big2)])).missingBlobDigests).toHaveLength(2);
    const e2 = await rejects(batchRead([digestOf("b".repeat(64), 5 * 1024 * 1024)]));
    expect(e2.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe("GetTree", () => {
  /** Stores a Directory and returns its digest. */
  async function putDir(dir: Partial<Directory>): Promise<Digest> {
    const bytes = toBinary(DirectorySchema, create(DirectorySchema, dir as any));
    const d = sha256(bytes);
    await batchUpdate([{ digest: d, data: bytes }]);
    return d;
  }

  test("walks the whole tree, paging with page_size and page_token, deduplicating shared subtrees", async () => {
    const file = enc("leaf file");
    await batchUpdate([{ digest: sha256(file), data: file }]);
    const leaf = await putDir({ files: [{ name: "f", digest: sha256(file), isExecutable: true } as any] });
    const mids: Digest[] = [];
    for (let i = 0; i < 5; i++) mids.push(await putDir({ directories: [{ name: "leaf", digest: leaf } as any], files: [{ name: `m${i}`, digest: sha256(file) } as any] }));
    const root = await putDir({ directories: mids.map((d, i) => ({ name: `mid${i}`, digest: d }) as any) });

    const all = await c.collect(c.cas, "getTree", GetTreeRequestSchema, { rootDigest: root });
    const dirs = all.flatMap((r: any) => r.directories);
    expect(dirs).toHaveLength(1 + 5 + 1); // root, five mids, one shared leaf
    expect(all.at(-1).nextPageToken).toBe("");

    const paged = await c.collect(c.cas, "getTree", GetTreeRequestSchema, { rootDigest: root, pageSize: 3 });
    expect(paged.map((r: any) => r.directories.length)).toEqual([3, 3, 1]);
    expect(paged[0].nextPageToken).not.toBe("");
    // Resuming from a token returns the rest, in the same order.
    const rest = await c.collect(c.cas, "getTree", GetTreeRequestSchema, { rootDigest: root, pageSize: 3, pageToken: paged[0].nextPageToken });
    expect(rest.flatMap((r: any) => r.directories)).toEqual(dirs.slice(3));
  });

  test("a missing root is NOT_FOUND; a missing subtree is left out", async () => {
    const e = await rejects(c.collect(c.cas, "getTree", GetTreeRequestSchema, { rootDigest: sha256("no such dir") }));
    expect(e.code).toBe(grpc.status.NOT_FOUND);
    const root = await putDir({ directories: [{ name: "gone", digest: sha256("never stored directory") } as any] });
    const res = await c.collect(c.cas, "getTree", GetTreeRequestSchema, { rootDigest: root });
    expect(res.flatMap((r: any) => r.directories)).toHaveLength(1);
  });

  test("a bad page token is INVALID_ARGUMENT", async () => {
    const root = await putDir({});
    const e = await rejects(c.collect(c.cas, "getTree", GetTreeRequestSchema, { rootDigest: root, pageToken: "bogus" }));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe("BLAKE3 in every request that names a digest function", () => {
  async function blake3(data: Uint8Array): Promise<Digest> {
    const h = await createBLAKE3();
    h.init();
    h.update(data);
    return digestOf(h.digest("hex"), data.length);
  }

  test("batch upload and read, find missing, GetTree and the action cache", async () => {
    const fn = { digestFunction: DigestFunction.BLAKE3 };
    const file = enc("a file hashed with BLAKE3");
    const fd = await blake3(file);
    const dirBytes = toBinary(DirectorySchema, create(DirectorySchema, { files: [{ name: "f", digest: fd }] }));
    const dd = await blake3(dirBytes);
    const up = await c.unary(c.cas, "batchUpdateBlobs", BatchUpdateBlobsRequestSchema, { ...fn, requests: [{ digest: fd, data: file }, { digest: dd, data: dirBytes }] });
    expect(up.responses.map((r: any) => r.status.code)).toEqual([0, 0]);
    // A SHA-256 claim for the same bytes under BLAKE3 is a mismatch.
    const wrong = await c.unary(c.cas, "batchUpdateBlobs", BatchUpdateBlobsRequestSchema, { ...fn, requests: [{ digest: sha256(file), data: file }] });
    expect(wrong.responses[0].status.code).toBe(grpc.status.INVALID_ARGUMENT);

    expect((await c.unary(c.cas, "findMissingBlobs", FindMissingBlobsRequestSchema, { ...fn, blobDigests: [fd, dd] })).missingBlobDigests).toHaveLength(0);
    const read = await c.unary(c.cas, "batchReadBlobs", BatchReadBlobsRequestSchema, { ...fn, digests: [fd] });
    expect(Buffer.from(read.responses[0].data).toString()).toBe("a file hashed with BLAKE3");
    const tree = await c.collect(c.cas, "getTree", GetTreeRequestSchema, { ...fn, rootDigest: dd });
    expect(tree.flatMap((r: any) => r.directories)[0].files[0].name).toBe("f");

    const action = await blake3(enc("a BLAKE3 action"));
    await c.unary(c.ac, "updateActionResult", UpdateActionResultRequestSchema, { ...fn, actionDigest: action, actionResult: { outputFiles: [{ path: "out", digest: fd }] } });
    const got = await c.unary(c.ac, "getActionResult", GetActionResultRequestSchema, { ...fn, actionDigest: action });
    expect(got.outputFiles[0].digest.hash).toBe(fd.hash);
    // The same action digest read as SHA-256 is a different key: a miss.
    expect((await rejects(c.unary(c.ac, "getActionResult", GetActionResultRequestSchema, { actionDigest: action }))).code).toBe(grpc.status.NOT_FOUND);
  });
});

