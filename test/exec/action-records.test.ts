// The explain records on disk: one per (target, mnemonic, output), replaced by the next run, kept
// across a reopen, bounded in count and bytes (oldest first), and a damaged or half-written one is
// no record rather than an error.
import { afterAll, expect, test } from "bun:test";
import { readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ActionRecords } from "../../src/exec/action-records";
import type { ActionRecord } from "../../src/exec/why-missed";
import { createLogger } from "../../src/core";
import { tempDir } from "../support/server";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const folder = () => {
  const d = tempDir("actiond-records-");
  dirs.push(d);
  return join(d, "explain");
};
const log = createLogger("error");

const record = (target: string, n: number, extra: Partial<ActionRecord> = {}): ActionRecord => ({
  target,
  mnemonic: "Genrule",
  output: "bazel-out/k8-fastbuild/bin/out.txt",
  action: `${n.toString(16).padStart(64, "0")}/140`,
  fn: "sha256",
  atMs: 1_000_000 + n,
  inputRoot: `${"a".repeat(64)}/80`,
  args: ["/bin/bash", "-c", `echo ${n}`],
  env: [["PATH", "/bin"]],
  platform: [],
  outputs: ["bazel-out/k8-fastbuild/bin/out.txt"],
  workingDirectory: "",
  timeoutMs: 0,
  doNotCache: false,
  salt: "",
  ...extra,
});

test("a record replaces the one before it for its key, and is still there after a reopen", async () => {
  const dir = folder();
  const r = new ActionRecords(dir, log);
  await r.put(record("//:a", 1));
  await r.put(record("//:a", 2));
  await r.put(record("//:a", 3, { mnemonic: "CppCompile" }));
  await r.put(record("//:b", 4));
  expect((await r.get(record("//:a", 0)))?.action).toBe(record("//:a", 2).action);
  const again = new ActionRecords(dir, log);
  expect((await again.ofTarget("//:a")).map((x) => x.mnemonic)).toEqual(["CppCompile", "Genrule"]);
  expect((await again.ofTarget("//:b")).length).toBe(1);
  expect(again.size.count).toBe(3);
});

test("past the count or the bytes allowed, the oldest records go", async () => {
  const dir = folder();
  const byCount = new ActionRecords(dir, log, { count: 5, bytes: 1 << 30 });
  for (let i = 0; i < 12; i++) await byCount.put(record(`//:t${i}`, i));
  expect(byCount.size.count).toBe(5);
  expect(readdirSync(dir).length).toBe(5);
  expect(await byCount.get(record("//:t6", 0))).toBeUndefined();
  expect(await byCount.get(record("//:t7", 0))).toBeDefined();

  const one = JSON.stringify(record("//:t0", 0)).length;
  const byBytes = new ActionRecords(folder(), log, { count: 1000, bytes: one * 3 + 10 });
  for (let i = 0; i < 10; i++) await byBytes.put(record(`//:t${i}`, i));
  expect(byBytes.size.count).toBe(3);
  expect(byBytes.size.bytes).toBeLessThanOrEqual(one * 3 + 10);
});

test("a huge command is kept as a hash of itself, so a record stays small", async () => {
  const r = new ActionRecords(folder(), log);
  const args = Array.from({ length: 20_000 }, (_, i) => `--flag-${i}=${"x".repeat(40)}`);
  await r.put(record("//:big", 1, { args }));
  expect(r.size.bytes).toBeLessThan(256 * 1024);
  const got = await r.get(record("//:big", 0));
  expect(got?.args).toHaveLength(1);
  expect(got?.args[0]).toMatch(/^\(20000 arguments, sha256 [0-9a-f]{32}\)$/);
});

test("a damaged record is no record, and a write cut by a crash leaves nothing behind after a reopen", async () => {
  const dir = folder();
  const r = new ActionRecords(dir, log);
  await r.put(record("//:a", 1));
  const [name] = readdirSync(dir);
  writeFileSync(join(dir, name!), "{ cut");
  writeFileSync(join(dir, `${name}.123.abc.tmp`), "half");
  expect(await r.get(record("//:a", 0))).toBeUndefined();
  const again = new ActionRecords(dir, log);
  expect(await again.ofTarget("//:a")).toEqual([]);
  expect(readdirSync(dir)).toEqual([name!]);
});
