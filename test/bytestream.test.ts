// ByteStream Read/Write/QueryWriteStatus over real gRPC against a real `actiond serve`.
import { beforeAll, describe, expect, test } from "bun:test";
import { createBLAKE3 } from "hash-wasm";
import {
  DigestFunction_Value as DigestFunction,
  FindMissingBlobsRequestSchema,
  type Digest,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { QueryWriteStatusRequestSchema } from "../src/gen/google/bytestream/bytestream_pb";
import { ReapiClient, digestOf, grpc, sha256 } from "./support/client";
import { randomBytes, rejects, suiteServer } from "./support/helpers";

const suite = suiteServer();
let c: ReapiClient;
beforeAll(() => void (c = suite.client));

async function isStored(d: Digest, digestFunction = DigestFunction.UNKNOWN): Promise<boolean> {
  const res = await c.unary(c.cas, "findMissingBlobs", FindMissingBlobsRequestSchema, { blobDigests: [d], digestFunction });
  return res.missingBlobDigests.length === 0;
}

const res = (d: Digest, prefix = "") => `${prefix}blobs/${d.hash}/${d.sizeBytes}`;
const up = (d: Digest, id = crypto.randomUUID(), instance = "") => `${instance}uploads/${id}/blobs/${d.hash}/${d.sizeBytes}`;

describe("Write and Read, plain", () => {
  test("a multi-chunk upload round-trips; reads come in chunks of at most 1 MiB", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 123);
    const d = sha256(data);
    expect(await c.upload(up(d, undefined, "my/instance/"), data, 16 * 1024)).toBe(BigInt(data.length));
    const r = await c.read(res(d, "other/instance/"));
    expect(Buffer.compare(r.data, data)).toBe(0);
    expect(Math.max(...r.chunks)).toBeLessThanOrEqual(1024 * 1024);
  });

  test("read_offset and read_limit select a slice; offset == size is empty; beyond is OUT_OF_RANGE", async () => {
    const data = randomBytes(5000);
    const d = sha256(data);
    await c.upload(up(d), data);
    expect(Buffer.compare((await c.read(res(d), 1000, 10)).data, data.subarray(1000, 1010))).toBe(0);
    expect(Buffer.compare((await c.read(res(d), 4990)).data, data.subarray(4990))).toBe(0);
    expect((await c.read(res(d), 5000)).data).toHaveLength(0);
    expect((await rejects(c.read(res(d), 5001))).code).toBe(grpc.status.OUT_OF_RANGE);
    expect((await rejects(c.read(res(d), -1))).code).toBe(grpc.status.OUT_OF_RANGE);
    expect((await rejects(c.read(res(d), 0, -5))).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  test("the empty blob is readable without ever being uploaded", async () => {
    const r = await c.read("blobs/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0");
    expect(r.data).toHaveLength(0);
  });

  test("reading a missing blob is NOT_FOUND; a malformed name is INVALID_ARGUMENT", async () => {
    expect((await rejects(c.read(res(sha256("absent"))))).code).toBe(grpc.status.NOT_FOUND);
    for (const bad of ["blobs/abc/12", "nothing/here", `blobs/${"a".repeat(64)}/-3`, `blobs/${"a".repeat(64)}`, `compressed-blobs/lz4/${"a".repeat(64)}/3`]) {
      const e = await rejects(c.read(bad));
      expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(e.details).toContain("resource name");
    }
  });

  test("a digest mismatch is INVALID_ARGUMENT and stores nothing", async () => {
    const data = randomBytes(70_000);
    const claimed = sha256(randomBytes(70_000));
    const e = await rejects(c.upload(up(claimed), data));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toContain("digest mismatch");
    expect(await isStored(claimed)).toBe(false);
    // Too many bytes for the size in the name is refused too.
    const short = sha256(data.subarray(0, 100));
    expect((await rejects(c.upload(up(short), data))).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await isStored(short)).toBe(false);
  });

  test("write_offset must follow the bytes sent; a changed resource name or data after finish_write is refused", async () => {
    const data = randomBytes(200);
    const d = sha256(data);
    const name = up(d);
    const gap = await rejects(c.write([
      { resourceName: name, writeOffset: 0n, data: data.subarray(0, 100) },
      { writeOffset: 150n, data: data.subarray(100), finishWrite: true },
    ]));
    expect(gap.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(gap.details).toContain("write_offset");
    const renamed = await rejects(c.write([
      { resourceName: name, writeOffset: 0n, data: data.subarray(0, 100) },
      { resourceName: up(sha256("other")), writeOffset: 100n, data: data.subarray(100), finishWrite: true },
    ]));
    expect(renamed.code).toBe(grpc.status.INVALID_ARGUMENT);
    const noName = await rejects(c.write([{ writeOffset: 0n, data, finishWrite: true }]));
    expect(noName.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await isStored(d)).toBe(false);
  });

  test("writing a blob that exists finishes early with committed_size = size", async () => {
    const data = randomBytes(10_000);
    const d = sha256(data);
    await c.upload(up(d), data);
    // Only the first chunk is sent with no finish_write: the server answers at once.
    expect(await c.write([{ resourceName: up(d), writeOffset: 0n, data: data.subarray(0, 10) }])).toBe(10_000n);
  });

  test("many clients uploading the same blob at once all succeed", async () => {
    const data = randomBytes(2 * 1024 * 1024);
    const d = sha256(data);
    const clients = Array.from({ length: 6 }, () => new ReapiClient(suite.server.address));
    const results = await Promise.all(clients.map((cl) => cl.upload(up(d), data, 16 * 1024)));
    clients.forEach((cl) => cl.close());
    for (const r of results) expect(r).toBe(BigInt(data.length));
    expect(Buffer.compare((await c.read(res(d))).data, data)).toBe(0);
  });

  test("rounds of concurrent uploads of one blob over a shared connection all succeed (no dropped connection)", async () => {
    // Frame headers cut at the same offset at both ends of a read once broke the HTTP/2 shim here.
    for (let round = 0; round < 12; round++) {
      const data = randomBytes(2 * 1024 * 1024 + round * 4099);
      const d = sha256(data);
      const results = await Promise.all(Array.from({ length: 6 }, () => c.upload(up(d), data, 16 * 1024)));
      for (const r of results) expect(r).toBe(BigInt(data.length));
    }
  });

  test("an interrupted upload resumes at QueryWriteStatus's committed_size", async () => {
    const data = randomBytes(300_000);
    const d = sha256(data);
    const name = up(d);
    const first = [0, 1, 2].map((i) => ({ resourceName: i === 0 ? name : "", writeOffset: BigInt(i * 50_000), data: data.subarray(i * 50_000, (i + 1) * 50_000) }));
    // The client goes away after three chunks.
    await rejects(c.write(first, { cancelAfter: 3 }));
    let status: any;
    for (let i = 0; i < 50; i++) {
      status = await c.unary(c.bs, "queryWriteStatus", QueryWriteStatusRequestSchema, { resourceName: name });
      if (status.committedSize > 0n) break;
      await Bun.sleep(20);
    }
    expect(status).toMatchObject({ committedSize: 150_000n, complete: false });
    expect(await isStored(d)).toBe(false);
    const committed = await c.write([{ resourceName: name, writeOffset: 150_000n, data: data.subarray(150_000), finishWrite: true }]);
    expect(committed).toBe(300_000n);
    expect(await c.unary(c.bs, "queryWriteStatus", QueryWriteStatusRequestSchema, { resourceName: name })).toMatchObject({ committedSize: 300_000n, complete: true });
    expect(Buffer.compare((await c.read(res(d))).data, data)).toBe(0);
  });

  test("QueryWriteStatus of an unknown upload reports nothing committed", async () => {
    const d = sha256(randomBytes(10));
    expect(await c.unary(c.bs, "queryWriteStatus", QueryWriteStatusRequestSchema, { resourceName: up(d) })).toMatchObject({ committedSize: 0n, complete: false });
  });

  test("a client that disconnects mid-upload leaves nothing visible, and the server keeps serving", async () => {
    const data = randomBytes(1024 * 1024);
    const d = sha256(data);
    const chunks = Array.from({ length: 16 }, (_, i) => ({ resourceName: i === 0 ? up(d) : "", writeOffset: BigInt(i * 65536), data: data.subarray(i * 65536, (i + 1) * 65536), finishWrite: i === 15 }));
    await rejects(c.write(chunks, { cancelAfter: 8 }));
    expect(await isStored(d)).toBe(false);
    expect((await rejects(c.read(res(d)))).code).toBe(grpc.status.NOT_FOUND);
    expect(await c.upload(up(d), data)).toBe(BigInt(data.length));
  });
});

describe("compressed-blobs/zstd", () => {
  test("a zstd upload is decompressed and verified; reads come back compressed, from any offset", async () => {
    const data = new TextEncoder().encode("zstd friendly text, ".repeat(200_000)); // ~4 MB, compresses well
    const d = sha256(data);
    const z = Bun.zstdCompressSync(data);
    const chunks: any[] = [];
    for (let off = 0; off < z.length; off += 16 * 1024) {
      chunks.push({ resourceName: off === 0 ? `uploads/${crypto.randomUUID()}/compressed-blobs/zstd/${d.hash}/${d.sizeBytes}` : "", writeOffset: BigInt(off), data: z.subarray(off, off + 16 * 1024), finishWrite: off + 16 * 1024 >= z.length });
    }
    const committed = await c.write(chunks);
    expect([BigInt(z.length), -1n, BigInt(data.length)]).toContain(committed);
    const whole = await c.read(`compressed-blobs/zstd/${d.hash}/${d.sizeBytes}`);
    expect(Buffer.compare(Bun.zstdDecompressSync(whole.data), data)).toBe(0);
    expect(Math.max(...whole.chunks)).toBeLessThanOrEqual(1024 * 1024);
    const tail = await c.read(`compressed-blobs/zstd/${d.hash}/${d.sizeBytes}`, 1_000_000);
    expect(Buffer.compare(Bun.zstdDecompressSync(tail.data), data.subarray(1_000_000))).toBe(0);
    // A compressed write of a blob that exists finishes early with -1.
    expect(await c.write([{ resourceName: chunks[0].resourceName, writeOffset: 0n, data: z.subarray(0, 100) }])).toBe(-1n);
    // read_limit is not allowed on compressed reads.
    expect((await rejects(c.read(`compressed-blobs/zstd/${d.hash}/${d.sizeBytes}`, 0, 10))).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  test("zstd data that decompresses to other content is INVALID_ARGUMENT and not stored", async () => {
    const claimed = sha256(randomBytes(1000));
    const z = Bun.zstdCompressSync(randomBytes(1000));
    const e = await rejects(c.write([{ resourceName: `uploads/u/compressed-blobs/zstd/${claimed.hash}/1000`, data: z, finishWrite: true }]));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    const garbage = await rejects(c.write([{ resourceName: `uploads/u/compressed-blobs/zstd/${claimed.hash}/1000`, data: randomBytes(500), finishWrite: true }]));
    expect(garbage.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await isStored(claimed)).toBe(false);
  });
});

describe("BLAKE3", () => {
  test("blake3/ resource names upload and read; digest_function=BLAKE3 finds them", async () => {
    const data = randomBytes(2 * 1024 * 1024 + 5);
    const h = await createBLAKE3();
    h.init();
    h.update(data);
    const d = digestOf(h.digest("hex"), data.length);
    expect(await c.upload(`uploads/${crypto.randomUUID()}/blobs/blake3/${d.hash}/${d.sizeBytes}`, data)).toBe(BigInt(data.length));
    expect(await isStored(d, DigestFunction.BLAKE3)).toBe(true);
    // The same hash read as SHA-256 (no function segment) is a different blob: missing.
    expect(await isStored(d)).toBe(false);
    expect(Buffer.compare((await c.read(`blobs/blake3/${d.hash}/${d.sizeBytes}`)).data, data)).toBe(0);
    const z = await c.read(`compressed-blobs/zstd/blake3/${d.hash}/${d.sizeBytes}`);
    expect(Buffer.compare(Bun.zstdDecompressSync(z.data), data)).toBe(0);
  });

  test("a BLAKE3 mismatch is INVALID_ARGUMENT", async () => {
    const d = sha256(randomBytes(100)); // a SHA-256 hash is not the BLAKE3 hash of this content
    const e = await rejects(c.upload(`uploads/x/blobs/blake3/${d.hash}/100`, randomBytes(100)));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  test("unsupported function segments are INVALID_ARGUMENT", async () => {
    const e = await rejects(c.read(`blobs/sha256tree/${"a".repeat(64)}/5`));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});
