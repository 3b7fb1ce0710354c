// Durability, eviction and full-disk behaviour of the on-disk store, through real server processes.
import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  BatchReadBlobsRequestSchema,
  BatchUpdateBlobsRequestSchema,
  FindMissingBlobsRequestSchema,
  GetActionResultRequestSchema,
  UpdateActionResultRequestSchema,
  type Digest,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { ReadRequestSchema, WriteRequestSchema } from "../src/gen/google/bytestream/bytestream_pb";
import { ReapiClient, grpc, sha256 } from "./support/client";
import { startServer, tempDir } from "./support/server";
import { randomBytes, rejects } from "./support/helpers";

const up = (d: Digest) => `uploads/${crypto.randomUUID()}/blobs/${d.hash}/${d.sizeBytes}`;
const blob = (d: Digest) => `blobs/${d.hash}/${d.sizeBytes}`;
/** Where the server keeps a SHA-256 blob ("cas") or action result ("ac") under its root. */
const stored = (root: string, kind: "cas" | "ac", d: Digest) => join(root, kind, "sha256", d.hash.slice(0, 2), `${d.hash}-${d.sizeBytes}`);
async function missing(c: ReapiClient, ds: Digest[]): Promise<string[]> {
  const res = await c.unary(c.cas, "findMissingBlobs", FindMissingBlobsRequestSchema, { blobDigests: ds });
  return res.missingBlobDigests.map((d: Digest) => d.hash);
}

describe("restarts", () => {
  test("blobs and action results survive a clean restart", async () => {
    const root = tempDir();
    const data = randomBytes(200_000);
    const d = sha256(data);
    let s = await startServer({ root });
    let c = new ReapiClient(s.address);
    await c.upload(up(d), data);
    await c.unary(c.ac, "updateActionResult", UpdateActionResultRequestSchema, { actionDigest: sha256("act"), actionResult: { outputFiles: [{ path: "o", digest: d }] } });
    c.close();
    expect(await s.stop()).toBe(0);

    s = await startServer({ root });
    c = new ReapiClient(s.address);
    expect(Buffer.compare((await c.read(blob(d))).data, data)).toBe(0);
    const r = await c.unary(c.ac, "getActionResult", GetActionResultRequestSchema, { actionDigest: sha256("act") });
    expect(r.outputFiles[0].digest.hash).toBe(d.hash);
    c.close();
    await s.stop();
  });

  test("an action cache entry damaged on disk (say, cut short by a power loss) is a miss, not an empty hit", async () => {
    const root = tempDir();
    const s = await startServer({ root });
    const c = new ReapiClient(s.address);
    const data = randomBytes(100);
    const d = sha256(data);
    await c.upload(up(d), data);
    const action = sha256("damaged entry");
    await c.unary(c.ac, "updateActionResult", UpdateActionResultRequestSchema, { actionDigest: action, actionResult: { outputFiles: [{ path: "o", digest: d }] } });
    const entry = stored(root, "ac", action);
    truncateSync(entry, 0);
    const e = await rejects(c.unary(c.ac, "getActionResult", GetActionResultRequestSchema, { actionDigest: action }));
    expect(e.code).toBe(grpc.status.NOT_FOUND);
    expect(existsSync(entry)).toBe(false);
    expect(s.log()).toContain("removing damaged AC entry");
    c.close();
    await s.stop();
  });

  test("a blob damaged on disk is never served: reads fail or miss, it is removed, and can be uploaded again", async () => {
    const root = tempDir();
    const s = await startServer({ root });
    const c = new ReapiClient(s.address);
    const small = randomBytes(1000);
    const big = randomBytes(3 * 1024 * 1024);
    for (const data of [small, big]) await c.upload(up(sha256(data)), data);
    // Flip one byte of each file, keeping its size (bit rot, a bad disk).
    for (const data of [small, big]) {
      const d = sha256(data);
      const path = stored(root, "cas", d);
      chmodSync(path, 0o644);
      const bytes = readFileSync(path);
      bytes[bytes.length >> 1]! ^= 0xff;
      writeFileSync(path, bytes);
    }
    const batch = await c.unary(c.cas, "batchReadBlobs", BatchReadBlobsRequestSchema, { digests: [sha256(small)] });
    expect(batch.responses[0].status.code).toBe(grpc.status.NOT_FOUND);
    const e = await rejects(c.read(blob(sha256(big))));
    expect(e.code).toBe(grpc.status.DATA_LOSS);
    expect(await missing(c, [sha256(small), sha256(big)])).toEqual([sha256(small).hash, sha256(big).hash]);
    expect(s.log()).toContain("is damaged on disk");
    // Uploading again repairs it.
    await c.upload(up(sha256(big)), big);
    expect(Buffer.compare((await c.read(blob(sha256(big)))).data, big)).toBe(0);
    c.close();
    await s.stop();
  });

  test("kill -9 mid-upload: every earlier blob intact, the partial one invisible, temp files gone", async () => {
    const root = tempDir();
    let s = await startServer({ root });
    let c = new ReapiClient(s.address);
    const kept = Array.from({ length: 5 }, () => randomBytes(300_000));
    for (const k of kept) await c.upload(up(sha256(k)), k);

    const partial = randomBytes(8 * 1024 * 1024);
    const pd = sha256(partial);
    const call = c.bs.write(() => {});
    call.on("error", () => {});
    call.write(create(WriteRequestSchema, { resourceName: up(pd), writeOffset: 0n, data: partial.subarray(0, 1 << 20) }));
    for (let off = 1 << 20; off < 4 << 20; off += 1 << 20) {
      call.write(create(WriteRequestSchema, { writeOffset: BigInt(off), data: partial.subarray(off, off + (1 << 20)) }));
    }
    // Wait until the server has bytes of it in a temporary file, then kill it without warning.
    for (let i = 0; i < 100 && readdirSync(join(root, "tmp")).length === 0; i++) await Bun.sleep(20);
    expect(readdirSync(join(root, "tmp")).length).toBeGreaterThan(0);
    await s.kill();
    c.close();

    s = await startServer({ root });
    c = new ReapiClient(s.address);
    expect(await missing(c, [pd])).toEqual([pd.hash]);
    for (const k of kept) expect(Buffer.compare((await c.read(blob(sha256(k)))).data, k)).toBe(0);
    expect(readdirSync(join(root, "tmp"))).toEqual([]);
    c.close();
    await s.stop();
  });
});

describe("eviction (--max-cas-size)", () => {
  test("least recently used blobs go first; an action result whose blob was evicted becomes a miss", async () => {
    const s = await startServer({ args: ["--max-cas-size", "1M"] });
    const c = new ReapiClient(s.address);
    const [a, b, cc, d] = [0, 1, 2, 3].map(() => randomBytes(300 * 1024));
    const [da, db, dc, dd] = [a!, b!, cc!, d!].map((x) => sha256(x));
    await c.upload(up(da!), a!);
    await c.upload(up(db!), b!);
    await c.unary(c.ac, "updateActionResult", UpdateActionResultRequestSchema, { actionDigest: sha256("uses b"), actionResult: { outputFiles: [{ path: "b", digest: db }] } });
    await c.upload(up(dc!), cc!);
    expect(await missing(c, [da!])).toEqual([]); // touch a: now b is the oldest
    await c.upload(up(dd!), d!); // 1.2 MiB > 1 MiB: one blob must go
    expect(await missing(c, [da!, db!, dc!, dd!])).toEqual([db!.hash]);
    const e = await rejects(c.unary(c.ac, "getActionResult", GetActionResultRequestSchema, { actionDigest: sha256("uses b") }));
    expect(e.code).toBe(grpc.status.NOT_FOUND);
    c.close();
    await s.stop();
  });

  test("recency survives a restart: files keep their last use in mtime, and the oldest go first", async () => {
    const root = tempDir();
    const blobs = Array.from({ length: 8 }, () => randomBytes(100 * 1024));
    const digests = blobs.map((b) => sha256(b));
    const limit = ["--max-cas-size", String(8 * 100 * 1024)];
    let s = await startServer({ root, args: limit });
    let c = new ReapiClient(s.address);
    for (const [i, b] of blobs.entries()) await c.upload(up(digests[i]!), b);
    c.close();
    await s.stop();
    // Give them last-use times in a shuffled order, unrelated to upload or directory order.
    const path = (d: Digest) => stored(root, "cas", d);
    const order = [5, 2, 7, 0, 3, 6, 1, 4]; // order[k] was used k hours before the others
    order.forEach((i, k) => utimesSync(path(digests[i]!), new Date(Date.now() - (10 - k) * 3600e3), new Date(Date.now() - (10 - k) * 3600e3)));

    s = await startServer({ root, args: limit });
    c = new ReapiClient(s.address);
    for (let n = 0; n < 3; n++) {
      const extra = randomBytes(100 * 1024);
      await c.upload(up(sha256(extra)), extra); // each needs one eviction
    }
    // Exactly the three used longest ago are gone (by chance from directory order: 1 in 56).
    const gone = (await missing(c, digests)).sort();
    expect(gone).toEqual([5, 2, 7].map((i) => digests[i]!.hash).sort());
    // That FindMissingBlobs was a use: it reaches the files' mtimes, for the next restart.
    const kept = digests[4]!;
    for (let i = 0; i < 50 && statSync(path(kept)).mtimeMs < Date.now() - 60e3; i++) await Bun.sleep(20);
    expect(statSync(path(kept)).mtimeMs).toBeGreaterThan(Date.now() - 60e3);
    c.close();
    await s.stop();
  });

  test("action cache entries count against the limit too, and the oldest go first", async () => {
    const root = tempDir();
    // 64 KiB: 16 blocks of 4 KiB, and every file takes at least one.
    const s = await startServer({ root, args: ["--max-cas-size", "64K"] });
    const c = new ReapiClient(s.address);
    const out = randomBytes(100);
    await c.upload(up(sha256(out)), out);
    const actions = Array.from({ length: 30 }, (_, i) => sha256(`action ${i}`));
    for (const a of actions) {
      await c.unary(c.ac, "updateActionResult", UpdateActionResultRequestSchema, { actionDigest: a, actionResult: { outputFiles: [{ path: "o", digest: sha256(out) }] } });
    }
    const hits = [];
    for (const a of actions) {
      const r = await c.unary(c.ac, "getActionResult", GetActionResultRequestSchema, { actionDigest: a }).then(() => true, () => false);
      hits.push(r);
    }
    // The newest entries (and the blob they share, used by each) survive; the oldest were evicted.
    expect(hits.slice(-10)).toEqual(Array(10).fill(true));
    expect(hits.slice(0, 10)).toEqual(Array(10).fill(false));
    const acFiles = readdirSync(join(root, "ac", "sha256"), { recursive: true }).filter((p) => String(p).includes("-"));
    expect(acFiles.length).toBeLessThanOrEqual(15);
    c.close();
    await s.stop();
  });

  test("a blob being read is never evicted; an upload that would need it gets RESOURCE_EXHAUSTED", async () => {
    const s = await startServer({ args: ["--max-cas-size", "48M"] });
    const c = new ReapiClient(s.address);
    // Big enough that the server cannot buffer it all in the transport: its Read stays in progress.
    const big = randomBytes(40 * 1024 * 1024);
    const bd = sha256(big);
    await c.upload(up(bd), big);
    // Start reading, then stop consuming so the server's stream stays open (flow control).
    const chunks: Uint8Array[] = [];
    const call = c.bs.read(create(ReadRequestSchema, { resourceName: blob(bd) }));
    const ended = new Promise((r) => call.on("end", r));
    const reading = new Promise<void>((resolve) =>
      call.on("data", (m: any) => {
        chunks.push(m.data);
        call.pause();
        resolve();
      }),
    );
    await reading;
    const other = randomBytes(10 * 1024 * 1024);
    const e = await rejects(c.upload(up(sha256(other)), other));
    expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // Finish the read: the bytes are intact.
    call.on("data", () => call.resume());
    call.resume();
    await ended;
    expect(Buffer.compare(Buffer.concat(chunks), big)).toBe(0);
    // Once nobody uses it, it can be evicted to make room.
    expect(await c.upload(up(sha256(other)), other)).toBe(BigInt(other.length));
    expect(await missing(c, [bd])).toEqual([bd.hash]);
    c.close();
    await s.stop();
  });

  test("a blob larger than the whole CAS is RESOURCE_EXHAUSTED", async () => {
    const s = await startServer({ args: ["--max-cas-size", "1M"] });
    const c = new ReapiClient(s.address);
    const data = randomBytes(2 * 1024 * 1024);
    const e = await rejects(c.upload(up(sha256(data)), data));
    expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(e.details).toContain("--max-cas-size");
    c.close();
    await s.stop();
  });
});

describe("full disk", () => {
  const isRoot = process.getuid?.() === 0;
  test.skipIf(!isRoot)("ENOSPC is RESOURCE_EXHAUSTED, leaves nothing partial, and the server keeps serving", async () => {
    const root = tempDir();
    const mount = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", root]);
    expect(mount.exitCode).toBe(0);
    try {
      const s = await startServer({ root });
      const c = new ReapiClient(s.address);
      const data = randomBytes(3 * 1024 * 1024);
      const d = sha256(data);
      const e = await rejects(c.upload(up(d), data));
      expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(await missing(c, [d])).toEqual([d.hash]);
      expect(readdirSync(join(root, "tmp"))).toEqual([]);
      // The same through a batch: the item that does not fit fails alone.
      const [b1, b2] = [randomBytes(1_200_000), randomBytes(1_200_000)];
      const batch = await c.unary(c.cas, "batchUpdateBlobs", BatchUpdateBlobsRequestSchema, {
        requests: [b1, b2].map((data) => ({ digest: sha256(data), data })),
      });
      expect(batch.responses.map((r: any) => r.status.code)).toEqual([0, grpc.status.RESOURCE_EXHAUSTED]);
      expect(await missing(c, [sha256(b1!), sha256(b2!)])).toEqual([sha256(b2!).hash]);
      expect(readdirSync(join(root, "tmp"))).toEqual([]);
      const small = randomBytes(1000);
      expect(await c.upload(up(sha256(small)), small)).toBe(1000n);
      c.close();
      expect(await s.stop()).toBe(0);
    } finally {
      Bun.spawnSync(["umount", root]);
    }
  });
});

describe("crash safety under load", () => {
  /** Every file in the CAS must hash to its name and have the size its name says. */
  async function verifyEveryStoredBlob(root: string): Promise<number> {
    let count = 0;
    const casDir = join(root, "cas", "sha256");
    for (const shard of readdirSync(casDir)) {
      for (const name of readdirSync(join(casDir, shard))) {
        const [hash, size] = name.split("-");
        const bytes = new Uint8Array(await Bun.file(join(casDir, shard, name)).arrayBuffer());
        expect(bytes.length).toBe(Number(size));
        expect(new Bun.CryptoHasher("sha256").update(bytes).digest("hex")).toBe(hash!);
        count++;
      }
    }
    return count;
  }

  test("kill -9 at random moments during concurrent uploads never leaves a broken or partial blob", async () => {
    const root = tempDir();
    const acked: Digest[] = [];
    for (let round = 0; round < 4; round++) {
      const s = await startServer({ root });
      const clients = Array.from({ length: 4 }, () => new ReapiClient(s.address));
      let stop = false;
      // The kill comes after a random number of this round's uploads were acknowledged, with others in flight.
      const killAfter = acked.length + 3 + Math.floor(Math.random() * 12);
      let enoughAcked!: () => void;
      const killTime = new Promise<void>((resolve) => (enoughAcked = resolve));
      const ack = (d: Digest) => {
        acked.push(d);
        if (acked.length >= killAfter) enoughAcked();
      };
      // Each client uploads blobs of varied sizes until the server dies; acknowledged ones must survive.
      const workers = clients.map(async (cl, i) => {
        for (let n = 0; !stop; n++) {
          const data = randomBytes([1_000, 70_000, 600_000, 3_000_000][(n + i) % 4]!);
          const d = sha256(data);
          try {
            if ((n + i) % 3 === 0) {
              const res = await cl.unary(cl.cas, "batchUpdateBlobs", BatchUpdateBlobsRequestSchema, { requests: [{ digest: d, data }] });
              if (res.responses[0].status.code === 0) ack(d);
            } else {
              await cl.upload(up(d), data, 16 * 1024);
              ack(d);
            }
          } catch {
            return; // the server is gone
          }
        }
      });
      await killTime;
      await s.kill();
      stop = true;
      await Promise.all(workers);
      clients.forEach((cl) => cl.close());
    }
    const s = await startServer({ root });
    const c = new ReapiClient(s.address);
    expect(acked.length).toBeGreaterThan(10);
    expect(await missing(c, acked)).toEqual([]);
    c.close();
    await s.stop();
    expect(await verifyEveryStoredBlob(root)).toBeGreaterThanOrEqual(new Set(acked.map((d) => d.hash)).size);
    expect(readdirSync(join(root, "tmp"))).toEqual([]);
  }, 60_000);
});
