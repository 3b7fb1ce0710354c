// Why an action missed: every value an explanation lists is cut, so a hostile action's kilobytes of
// environment, platform or argument names and values cost a few hundred bytes each. (A finished
// execution keeps only the summary line; Execution.whyMissed is a string.)
import { expect, test } from "bun:test";
import { explainMiss, type ActionRecord } from "../../src/exec/why-missed";
import type { MessageCache } from "../../src/exec/message-cache";

const base = (n: number, fill: string): ActionRecord => ({
  target: "//:t",
  mnemonic: "Genrule",
  output: "out.txt",
  action: `${n.toString(16).padStart(64, "0")}/140`,
  fn: "sha256",
  atMs: 1_000_000 + n,
  inputRoot: `${"a".repeat(64)}/80`,
  args: Array.from({ length: 100 }, (_, i) => `${fill}${i}`),
  env: Array.from({ length: 100 }, (_, i) => [`${"V".repeat(3000)}${i}`, `${fill}${i}`] as [string, string]),
  platform: Array.from({ length: 100 }, (_, i) => [`p${"x".repeat(3000)}${i}`, `${fill}${i}`] as [string, string]),
  outputs: ["out.txt"],
  workingDirectory: "",
  timeoutMs: 0,
  doNotCache: false,
  salt: "",
});

test("an explanation of 3 KiB names and values lists each cut to 200 characters, and its summary stays short", async () => {
  // The input roots are the same: the CAS is never asked.
  const why = await explainMiss(undefined as unknown as MessageCache, base(1, "a".repeat(3000)), base(2, "b".repeat(3000)), false);
  const listed = [...why.args, ...why.env, ...why.platform, ...why.inputs, ...why.other];
  expect(why.args.length + why.env.length + why.platform.length).toBe(300);
  for (const c of listed) for (const part of [c.name, c.before ?? "", c.after ?? ""]) expect(part.length).toBeLessThanOrEqual(201);
  expect(JSON.stringify(why).length).toBeLessThan(300 * 3 * 210);
  expect(why.summary.length).toBeLessThan(2000);
  expect(why.summary).toStartWith("arguments changed (argv[0], argv[1], argv[2], …)");
});
