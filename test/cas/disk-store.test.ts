// The disk store (src/cas/disk) in-process: the BlobStore contract, its action results, the budget
// blobs and results share, and recency that survives a restart (on a clock the test moves).
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { ActionResultSchema } from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, type Logger } from "../../src/core";
import { CompleteResults, openDiskStore, toWire, type BlobDigest, type DiskStore } from "../../src/cas";
import { ManualClock } from "../support/clock";
import { randomBytes } from "../support/helpers";
import { tempDir } from "../support/server";
import { describeBlobStore, digestOf, statusOf } from "./blob-store.case";

const roots: string[] = [];
afterAll(() => roots.forEach((r) => rmSync(r, { recursive: true, force: true })));

function captureLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const push = (l: string) => (msg: string) => void lines.push(`${l} ${msg}`);
  return { lines, debug: push("debug"), info: push("info"), warn: push("warn"), error: push("error") };
}

function open(opts: { root?: string; maxBytes?: number; clock?: ManualClock; log?: Logger } = {}): DiskStore & { root: string } {
  const root = opts.root ?? tempDir("actiond-disk-store-");
  roots.push(root);
  return { ...openDiskStore({ root, maxBytes: opts.maxBytes ?? 2 ** 30, log: opts.log ?? captureLog(), privileged: process.getuid?.() === 0, clock: opts.clock }), root };
}

const blobPath = (root: string, d: BlobDigest) => join(root, "cas", d.fn, d.hash.slice(0, 2), `${d.hash}-${d.size}`);

describeBlobStore("DiskBlobStore", {
  evicts: true,
  async open(opts) {
    const s = open({ maxBytes: opts?.capacityBytes });
    return {
      store: s.blobs,
      damage(d) {
        const path = blobPath(s.root, d);
        chmodSync(path, 0o644);
        const bytes = readFileSync(path);
        bytes[bytes.length >> 1]! ^= 0xff;
        writeFileSync(path, bytes);
      },
      close: () => s.close(),
    };
  },
});

describe("DiskBlobStore on disk", () => {
  test("a blob is a read-only file named by its digest; nothing is left in tmp/", async () => {
    const s = open();
    const data = randomBytes(70_000);
    const d = await digestOf(data);
    await s.blobs.put(d, data);
    const w = await s.blobs.beginWrite(await digestOf(randomBytes(10)));
    await w.abort();
    expect(statSync(blobPath(s.root, d)).mode & 0o777).toBe(0o444);
    expect(readFileSync(blobPath(s.root, d)).equals(data)).toBe(true);
    expect(Bun.spawnSync(["ls", "-A", join(s.root, "tmp")]).stdout.toString()).toBe("");
  });

  test("reopened, it finds what it had; a file cut short (a power loss) is dropped", async () => {
    const first = open();
    const [a, b] = [randomBytes(5000), randomBytes(5000)];
    const [da, db] = [await digestOf(a), await digestOf(b)];
    await first.blobs.put(da, a);
    await first.blobs.put(db, b);
    await first.close();
    truncateSync(blobPath(first.root, db), 100);
    const log = captureLog();
    const again = open({ root: first.root, log });
    expect(await again.blobs.findMissing([da, db])).toEqual([db]);
    expect(log.lines.some((l) => l.includes("removing unexpected file in the store"))).toBe(true);
  });

  test("recency survives a restart: a blob used an hour after it was stored gets that in its mtime, and outlives older ones", async () => {
    const clock = new ManualClock(Date.now() - 10 * 3600e3);
    const s = open({ clock });
    const blobs = [0, 1, 2].map(() => randomBytes(100 * 1024));
    const ds = await Promise.all(blobs.map((b) => digestOf(b)));
    for (const [i, b] of blobs.entries()) await s.blobs.put(ds[i]!, b);
    // Stored in the order ds[0], ds[1], ds[2], a minute apart.
    ds.forEach((d, i) => utimesSync(blobPath(s.root, d), new Date(clock.now() - (3 - i) * 60e3), new Date(clock.now() - (3 - i) * 60e3)));
    // Used within the hour: nothing is written. Used later: the use reaches the file's mtime.
    clock.advance(30 * 60e3);
    await s.blobs.findMissing([ds[0]!]);
    await s.close();
    expect(statSync(blobPath(s.root, ds[0]!)).mtimeMs).toBeLessThan(clock.now() - 30 * 60e3);
    clock.advance(2 * 3600e3);
    await s.blobs.findMissing([ds[0]!]);
    await s.close();
    expect(statSync(blobPath(s.root, ds[0]!)).mtimeMs).toBe(clock.now());

    // After a restart with room for two, the oldest by mtime goes: ds[1], not ds[0].
    const again = open({ root: s.root, maxBytes: 2 * 100 * 1024 + 100 * 1024 });
    const extra = randomBytes(100 * 1024);
    await again.blobs.put(await digestOf(extra), extra);
    expect(await again.blobs.findMissing(ds)).toEqual([ds[1]!]);
  });

  test("linked inputs: a hardlink of the blob, and a read-only executable twin made once", async () => {
    const s = open();
    const data = new TextEncoder().encode("#!/bin/sh\necho hi\n");
    const d = await digestOf(data);
    await s.blobs.put(d, data);
    const dir = tempDir("actiond-links-");
    roots.push(dir);
    await s.blobs.linkTo(d, join(dir, "plain"), false);
    await s.blobs.linkTo(d, join(dir, "tool"), true);
    await s.blobs.linkTo(d, join(dir, "tool2"), true);
    expect(statSync(join(dir, "plain")).ino).toBe(statSync(blobPath(s.root, d)).ino);
    expect(statSync(join(dir, "tool")).mode & 0o777).toBe(0o555);
    expect(statSync(join(dir, "tool")).ino).toBe(statSync(join(dir, "tool2")).ino);
    const missing = await digestOf(randomBytes(10));
    const e = await statusOf(s.blobs.linkTo(missing, join(dir, "nothing"), false));
    expect(e.code).toBe(Code.FAILED_PRECONDITION);
  });

  test("an adopted output becomes the blob without a copy; one with other links is copied", async () => {
    const s = open();
    const dir = tempDir("actiond-adopt-");
    roots.push(dir);
    const out = join(dir, "out");
    const data = randomBytes(9000);
    writeFileSync(out, data);
    const d = await digestOf(data);
    const ino = statSync(out).ino;
    await s.blobs.adopt(d, out, 1);
    expect(statSync(blobPath(s.root, d)).ino).toBe(ino);
    const shared = randomBytes(9000);
    const sd = await digestOf(shared);
    await s.blobs.put(sd, shared);
    await s.blobs.linkTo(sd, join(dir, "input"), false);
    // An input hardlinked from the store, "adopted" under another digest: never changed in place.
    const other = randomBytes(9000);
    writeFileSync(join(dir, "copy-me"), other);
    Bun.spawnSync(["ln", join(dir, "copy-me"), join(dir, "second-link")]);
    await s.blobs.adopt(await digestOf(other), join(dir, "copy-me"), 2);
    expect(statSync(blobPath(s.root, await digestOf(other))).ino).not.toBe(statSync(join(dir, "copy-me")).ino);
  });
});

describe("action results on disk", () => {
  const resultWith = (...files: BlobDigest[]) =>
    create(ActionResultSchema, { exitCode: 0, outputFiles: files.map((d, i) => ({ path: `out${i}`, digest: toWire(d) })) });

  test("stored and served while their blobs are there; a miss once one is evicted; refused if one is missing", async () => {
    const s = open({ maxBytes: 64 * 1024 });
    const results = new CompleteResults(s.actionResults, s.blobs, captureLog());
    const blob = randomBytes(30 * 1024);
    const d = await digestOf(blob);
    await s.blobs.put(d, blob);
    const action = await digestOf(new TextEncoder().encode("an action"));
    await results.put(action, resultWith(d));
    expect((await results.get(action))!.outputFiles[0]!.digest!.hash).toBe(d.hash);
    // Two more blobs of 30 KiB push the first out of a 64 KiB budget.
    for (const more of [randomBytes(30 * 1024), randomBytes(30 * 1024)]) await s.blobs.put(await digestOf(more), more);
    expect(await s.blobs.findMissing([d])).toEqual([d]);
    expect(await results.get(action)).toBeUndefined();
    const e = await statusOf(results.put(await digestOf(new TextEncoder().encode("another")), resultWith(d)));
    expect(e.code).toBe(Code.FAILED_PRECONDITION);
  });

  test("a damaged entry is a miss and is removed; an entry that cannot be read for another reason is kept", async () => {
    const log = captureLog();
    const s = open({ log });
    const results = new CompleteResults(s.actionResults, s.blobs, log);
    const action = await digestOf(new TextEncoder().encode("damaged"));
    await results.put(action, resultWith());
    const entry = join(s.root, "ac", "sha256", action.hash.slice(0, 2), `${action.hash}-${action.size}`);
    const good = readFileSync(entry);
    writeFileSync(entry, good.subarray(0, 20));
    expect(await results.get(action)).toBeUndefined();
    expect(() => statSync(entry)).toThrow();

    // Unreadable for another reason (EISDIR here stands in for EIO or EMFILE): UNAVAILABLE, so the
    // client retries, and whatever is there is left alone.
    await results.put(action, resultWith());
    rmSync(entry);
    mkdirSync(entry);
    expect((await statusOf(results.get(action))).code).toBe(Code.UNAVAILABLE);
    expect(statSync(entry).isDirectory()).toBe(true);
    expect(log.lines.some((l) => l.includes("removing damaged AC entry"))).toBe(true);
  });
});
