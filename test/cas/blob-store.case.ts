// The contract of a BlobStore (src/cas/blob-store.ts), as cases any implementation runs: call
// describeBlobStore with a way to make a fresh store. What a store may not support is said by the
// harness (no damage hook: the damage cases are skipped, saying so).
import { describe, expect, test } from "bun:test";
import { Code, StatusError, hashBytes, type DigestFunctionName } from "../../src/core";
import { emptyDigest, type BlobDigest, type BlobStore } from "../../src/cas";
import { randomBytes } from "../support/helpers";

export interface StoreHarness {
  store: BlobStore;
  /** Changes a stored blob's bytes behind the store's back, keeping its size (bit rot). */
  damage?(d: BlobDigest): void;
  close(): Promise<void>;
}

export interface StoreCases {
  /** A fresh, empty store; `capacityBytes` when the case needs a small one (eviction). */
  open(opts?: { capacityBytes?: number }): Promise<StoreHarness>;
  /** Whether the store evicts least recently used blobs to stay within a capacity. */
  evicts: boolean;
}

export async function digestOf(data: Uint8Array, fn: DigestFunctionName = "sha256"): Promise<BlobDigest> {
  return { fn, hash: await hashBytes(fn, data), size: data.length };
}

/** Awaits a promise that must fail with a StatusError, and returns it. */
export async function statusOf(p: Promise<unknown>): Promise<StatusError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof StatusError) return err;
    throw err;
  }
  throw new Error("expected a StatusError");
}

async function readAll(store: BlobStore, d: BlobDigest, offset = 0, limit = 0, chunkBytes = 64 * 1024): Promise<Uint8Array | undefined> {
  const reader = await store.read(d, { offset, limit, chunkBytes });
  if (!reader) return undefined;
  const chunks: Uint8Array[] = [];
  for await (const c of reader) {
    expect(c.length).toBeLessThanOrEqual(chunkBytes);
    chunks.push(c);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

async function withStore<T>(cases: StoreCases, fn: (h: StoreHarness) => Promise<T>, opts?: { capacityBytes?: number }): Promise<T> {
  const h = await cases.open(opts);
  try {
    return await fn(h);
  } finally {
    await h.close();
  }
}

export function describeBlobStore(name: string, cases: StoreCases): void {
  describe(`${name}: the BlobStore contract`, () => {
    test("a blob put is found, read whole and by range; one never put is missing", async () => {
      await withStore(cases, async ({ store }) => {
        const data = randomBytes(300_000);
        const d = await digestOf(data);
        const absent = await digestOf(randomBytes(10));
        expect(await store.findMissing([d, absent])).toEqual([d, absent]);
        expect(await store.put(d, data)).toBe(true);
        expect(await store.findMissing([d, absent])).toEqual([absent]);
        expect(Buffer.compare(Buffer.from((await store.get(d))!), data)).toBe(0);
        expect(Buffer.compare(Buffer.from((await readAll(store, d))!), data)).toBe(0);
        expect(Buffer.compare(Buffer.from((await readAll(store, d, 1000, 5000, 1024))!), data.subarray(1000, 6000))).toBe(0);
        expect((await readAll(store, d, data.length))!.length).toBe(0);
        expect(await store.get(absent)).toBeUndefined();
        expect(await store.read(absent, { offset: 0, limit: 0, chunkBytes: 1024 })).toBeUndefined();
        // A second put of the same blob changes nothing.
        expect(await store.put(d, data)).toBe(false);
      });
    });

    test("the empty blob is always there, for every digest function", async () => {
      await withStore(cases, async ({ store }) => {
        for (const fn of ["sha256", "blake3"] as const) {
          const empty = emptyDigest(fn);
          expect(await store.findMissing([empty])).toEqual([]);
          expect((await store.get(empty))!.length).toBe(0);
        }
      });
    });

    test("BLAKE3 blobs are stored and checked with BLAKE3", async () => {
      await withStore(cases, async ({ store }) => {
        const data = randomBytes(5000);
        const d = await digestOf(data, "blake3");
        await store.put(d, data);
        expect(Buffer.compare(Buffer.from((await store.get(d))!), data)).toBe(0);
        // The same bytes under SHA-256 are another blob.
        expect(await store.findMissing([await digestOf(data, "sha256")])).toHaveLength(1);
        const wrong = { ...d, hash: (await digestOf(randomBytes(5000), "blake3")).hash };
        expect((await statusOf(store.put(wrong, data))).code).toBe(Code.INVALID_ARGUMENT);
      });
    });

    test("content that does not hash to its digest is INVALID_ARGUMENT and stores nothing", async () => {
      await withStore(cases, async ({ store }) => {
        const data = randomBytes(1000);
        const d = await digestOf(data);
        const other = randomBytes(1000);
        const e = await statusOf(store.put(d, other));
        expect(e.code).toBe(Code.INVALID_ARGUMENT);
        expect(e.message).toContain("digest mismatch");
        expect(await store.findMissing([d])).toEqual([d]);
        // Through a stream too: wrong bytes, too many, too few.
        let w = await store.beginWrite(d);
        await w.write(other);
        expect((await statusOf(w.commit())).code).toBe(Code.INVALID_ARGUMENT);
        await w.abort();
        w = await store.beginWrite(d);
        await w.write(data);
        expect((await statusOf(w.write(new Uint8Array(1)))).code).toBe(Code.INVALID_ARGUMENT);
        await w.abort();
        w = await store.beginWrite(d);
        await w.write(data.subarray(0, 999));
        expect((await statusOf(w.commit())).message).toContain("received 999 bytes");
        await w.abort();
        expect(await store.findMissing([d])).toEqual([d]);
      });
    });

    test("a streamed upload is stored only at commit, and nothing of an aborted one", async () => {
      await withStore(cases, async ({ store }) => {
        const data = randomBytes(3 * 1024 * 1024 + 17);
        const d = await digestOf(data);
        const w = await store.beginWrite(d);
        for (let at = 0; at < data.length; at += 16 * 1024) {
          await w.write(data.subarray(at, at + 16 * 1024));
          expect(w.committedSize).toBe(Math.min(data.length, at + 16 * 1024));
        }
        expect(await store.findMissing([d])).toEqual([d]);
        await w.commit();
        expect(Buffer.compare(Buffer.from((await readAll(store, d, 0, 0, 1024 * 1024))!), data)).toBe(0);
        // Harmless after commit.
        await w.abort();
        expect(await store.findMissing([d])).toEqual([]);

        const gone = randomBytes(200_000);
        const g = await store.beginWrite(await digestOf(gone));
        await g.write(gone);
        await g.abort();
        expect(await store.findMissing([await digestOf(gone)])).toHaveLength(1);
      });
    });

    test("concurrent uploads of one blob all succeed, and one finishing supersedes the others", async () => {
      await withStore(cases, async ({ store }) => {
        const data = randomBytes(400_000);
        const d = await digestOf(data);
        const writers = await Promise.all([1, 2, 3].map(() => store.beginWrite(d)));
        await Promise.all(writers.map((w) => w.write(data.subarray(0, 100_000))));
        expect(writers.map((w) => w.superseded)).toEqual([false, false, false]);
        await writers[0]!.write(data.subarray(100_000));
        await writers[0]!.commit();
        expect(writers.slice(1).map((w) => w.superseded)).toEqual([true, true]);
        // The others may still finish (the same bytes), or give up; the blob stays whole either way.
        await writers[1]!.write(data.subarray(100_000));
        await writers[1]!.commit();
        await writers[2]!.abort();
        const puts = await Promise.all([1, 2, 3, 4].map(() => store.put(d, data)));
        expect(puts).toEqual([false, false, false, false]);
        const fresh = randomBytes(50_000);
        const fd = await digestOf(fresh);
        await Promise.all([1, 2, 3, 4].map(() => store.put(fd, fresh)));
        for (const x of [d, fd]) expect((await store.get(x))!.length).toBe(x.size);
      });
    });

    test("a blob damaged where it is stored is never served, reads of it end in DATA_LOSS, and it can be put again", async () => {
      await withStore(cases, async (h) => {
        if (!h.damage) return console.warn(`SKIP ${name}: no way to damage a stored blob`);
        const small = randomBytes(2000);
        const big = randomBytes(2 * 1024 * 1024);
        const [ds, db] = [await digestOf(small), await digestOf(big)];
        await h.store.put(ds, small);
        await h.store.put(db, big);
        h.damage(ds);
        h.damage(db);
        expect(await h.store.get(ds)).toBeUndefined();
        expect(await h.store.findMissing([ds])).toEqual([ds]);
        const e = await statusOf(readAll(h.store, db));
        expect(e.code).toBe(Code.DATA_LOSS);
        expect(await h.store.findMissing([db])).toEqual([db]);
        expect(await h.store.put(db, big)).toBe(true);
        expect(Buffer.compare(Buffer.from((await h.store.get(db))!), big)).toBe(0);
      });
    });

    test.skipIf(!cases.evicts)("beyond its capacity the least recently used blob goes; one being read stays; one too big for it all is RESOURCE_EXHAUSTED", async () => {
      await withStore(
        cases,
        async ({ store }) => {
          const blobs = [0, 1, 2].map(() => randomBytes(300 * 1024));
          const ds = await Promise.all(blobs.map((b) => digestOf(b)));
          for (const [i, b] of blobs.entries()) await store.put(ds[i]!, b);
          expect(await store.findMissing([ds[0]!])).toEqual([]); // a use: ds[1] is now the oldest
          const extra = randomBytes(300 * 1024);
          await store.put(await digestOf(extra), extra);
          expect(await store.findMissing(ds)).toEqual([ds[1]!]);

          // A blob being read is kept; with nothing else to evict, the next upload has no room.
          const reader = (await store.read(ds[0]!, { offset: 0, limit: 0, chunkBytes: 1024 }))!;
          const iterator = reader[Symbol.asyncIterator]();
          await iterator.next();
          await store.findMissing([ds[2]!, await digestOf(extra)]); // both newer than ds[0] now
          const big = randomBytes(800 * 1024);
          expect((await statusOf(store.put(await digestOf(big), big))).code).toBe(Code.RESOURCE_EXHAUSTED);
          expect(await store.findMissing([ds[0]!])).toEqual([]);
          await reader.close();
          expect(await store.put(await digestOf(big), big)).toBe(true);

          const huge = randomBytes(1100 * 1024);
          const e = await statusOf(store.beginWrite(await digestOf(huge)));
          expect(e.code).toBe(Code.RESOURCE_EXHAUSTED);
        },
        { capacityBytes: 1024 * 1024 },
      );
    });
  });
}
