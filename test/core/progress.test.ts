// Progress of long start-up work: a line redrawn in place on a terminal, plain log lines otherwise
// (at each quarter, or when the step changes), and nothing left of the line once it ends.
import { expect, test } from "bun:test";
import { startProgress } from "../../src/core/progress";
import type { Logger } from "../../src/core";

function capture() {
  const lines: string[] = [];
  const log: Logger = { debug: () => {}, info: (m) => lines.push(m), warn: (m) => lines.push(`WARN ${m}`), error: (m) => lines.push(`ERROR ${m}`) };
  return { lines, log };
}

test("on a terminal, one line is redrawn with a bar and the amounts, and cleared at the end", () => {
  const { lines, log } = capture();
  let screen = "";
  const out = { isTTY: true, columns: 120, write: (s: string) => (screen += s) };
  const p = startProgress("extracting", 4 * 2 ** 20, log, { out, unit: "MiB" });
  p.update(2 * 2 ** 20, "runtime-cc");
  expect(screen).toContain("\r\x1b[2Kextracting  [============            ]  50%  2.0 MiB of 4.0 MiB  runtime-cc");
  p.end("extracted it all");
  expect(screen.endsWith("\r\x1b[2K")).toBe(true);
  expect(lines).toEqual(["extracted it all"]);
});

test("without a terminal, a log line at each quarter passed and none for every small step", () => {
  const { lines, log } = capture();
  const out = { isTTY: false, write: () => expect.unreachable() };
  const p = startProgress("unpacking", 100, log, { out, unit: "percent" });
  for (let i = 0; i <= 100; i++) p.update(i);
  p.end("unpacked");
  expect(lines.map((l) => l.replace(/\s+/g, " "))).toEqual([
    "unpacking [====== ] 25%",
    "unpacking [============ ] 50%",
    "unpacking [================== ] 75%",
    "unpacked",
  ]);
});

test("with no total, the step is what changes: a line per new step without a terminal", () => {
  const { lines, log } = capture();
  const p = startProgress("booting", undefined, log, { out: { isTTY: false, write: () => 0 } });
  for (const s of ["starting", "starting", "the kernel is starting", "formatting /dev/vda", "formatting /dev/vda"]) p.update(0, s);
  p.end();
  expect(lines).toEqual(["booting: starting", "booting: the kernel is starting", "booting: formatting /dev/vda"]);
});
