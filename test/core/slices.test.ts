// Work in slices gives the same answers as work done at once.
import { describe, expect, test } from "bun:test";
import { slices, sortInSlices } from "../../src/core";
import { compareUtf8 } from "../../src/exec/merged-view";

const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe("sortInSlices with compareUtf8", () => {
  test("orders names by their UTF-8 bytes, astral and private-use characters included", async () => {
    const pick = [0x61, 0x62, 0xe000, 0xfffd, 0x1f600, 0x10000];
    const names = ["", "a", "ab", "\u{1F600}", "\uE000", ...Array.from({ length: 30_000 }, () => String.fromCodePoint(...Array.from({ length: 3 }, () => pick[Math.floor(Math.random() * pick.length)]!)))];
    const got = await sortInSlices(names, (a, b) => compareUtf8(a, b));
    expect(got).toEqual([...names].sort(byBytes));
  });

  test("lets timers run while it sorts a million entries", async () => {
    const items = Array.from({ length: 1_000_000 }, (_, i) => `f${(i * 7919) % 1_000_000}`);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const sorted = await sortInSlices(items, compareUtf8);
    clearInterval(timer);
    expect(sorted[0]).toBe("f0");
    expect(sorted.length).toBe(1_000_000);
    expect(ticks).toBeGreaterThan(5);
  });

  test("slices() waits for the event loop only every n-th step", async () => {
    const pause = slices(3);
    expect([pause(), pause(), pause() instanceof Promise]).toEqual([undefined, undefined, true]);
  });
});
