// The HTTP/2 flow-control shim on hand-made frames: what the server sees when a client raises
// SETTINGS_INITIAL_WINDOW_SIZE mid-stream (the end-to-end effect is covered by remotetool.test.ts).
import { describe, expect, test } from "bun:test";
import { WindowSettingsShim } from "../src/rpc/h2-window-shim";
import { PREFACE, frame } from "./support/raw-h2";

const settings = (...pairs: [number, number][]) => {
  const p = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, v], i) => (p.writeUInt16BE(id, i * 6), p.writeUInt32BE(v, i * 6 + 2)));
  return frame(0x4, 0, 0, p);
};
const headers = (stream: number, endStream = false) => frame(0x1, 0x4 | (endStream ? 1 : 0), stream, Buffer.from("hpack"));
const data = (stream: number, n: number, endStream = false) => frame(0x0, endStream ? 1 : 0, stream, Buffer.alloc(n, 7));

/** Frames in a byte stream, as [type, stream, first 4 payload bytes as a number]. */
function parse(bytes: Buffer): { type: number; stream: number; value?: number; payload: Buffer }[] {
  const out = [];
  for (let off = 0; off < bytes.length; ) {
    const len = bytes.readUIntBE(off, 3);
    const payload = bytes.subarray(off + 9, off + 9 + len);
    out.push({ type: bytes[off + 3]!, stream: bytes.readUInt32BE(off + 5), payload, value: len >= 4 && bytes[off + 3] === 0x8 ? payload.readUInt32BE(0) : undefined });
    off += 9 + len;
  }
  return out;
}

function run(shim: WindowSettingsShim, ...chunks: Buffer[]): Buffer {
  return Buffer.concat(chunks.flatMap((c) => shim.fromPeer(c)));
}

describe("WindowSettingsShim", () => {
  test("passes the preface and the first SETTINGS through untouched", () => {
    const shim = new WindowSettingsShim();
    const first = settings([0x4, 1 << 20], [0x3, 100]);
    const out = run(shim, PREFACE, first);
    expect(out.equals(Buffer.concat([PREFACE, first]))).toBe(true);
  });

  test("a later increase is hidden from the server and granted as WINDOW_UPDATEs to open and new streams", () => {
    const shim = new WindowSettingsShim();
    run(shim, PREFACE, settings([0x4, 65_535]), headers(1, true), headers(3, true));
    shim.fromBun(headers(1)); // the server answers but keeps both streams open
    const out = parse(run(shim, settings([0x4, 65_535 + 1_000_000])));
    expect(out[0]!.type).toBe(0x4);
    expect(out[0]!.payload.readUInt32BE(2)).toBe(65_535); // the server still sees the first value
    expect(out.slice(1).map((f) => [f.type, f.stream, f.value])).toEqual([
      [0x8, 1, 1_000_000],
      [0x8, 3, 1_000_000],
    ]);
    // A stream opened afterwards gets the same extra window right after its headers.
    const next = parse(run(shim, headers(5, true)));
    expect(next.map((f) => [f.type, f.stream, f.value])).toEqual([
      [0x1, 5, undefined],
      [0x8, 5, 1_000_000],
    ]);
  });

  test("streams the server has finished get no credit", () => {
    const shim = new WindowSettingsShim();
    run(shim, PREFACE, settings(), headers(1, true), headers(3, true));
    shim.fromBun(Buffer.concat([headers(1), data(1, 10, true)]));
    const out = parse(run(shim, settings([0x4, 200_000])));
    expect(out.filter((f) => f.type === 0x8).map((f) => f.stream)).toEqual([3]);
  });

  test("frames split at any byte boundary come out the same", () => {
    const whole = Buffer.concat([PREFACE, settings([0x4, 65_535]), headers(1, true), data(1, 300), settings([0x4, 500_000]), data(1, 40)]);
    const once = run(new WindowSettingsShim(), whole);
    for (const step of [1, 7, 10, 64]) {
      const shim = new WindowSettingsShim();
      const chunks = [];
      for (let i = 0; i < whole.length; i += step) chunks.push(whole.subarray(i, i + step));
      expect(run(shim, ...chunks).equals(once)).toBe(true);
    }
    expect(parse(once.subarray(PREFACE.length)).map((f) => f.type)).toEqual([0x4, 0x1, 0x0, 0x4, 0x8, 0x0]);
  });

  test("chunks that cut frame headers at the same offset at both ends are reassembled, not passed through", () => {
    // Frames of 109 bytes read in 109-byte chunks shifted by 4: every chunk starts with the last
    // 5 bytes of one header and ends with the first 4 of the next (a pattern real reads produce).
    const frames = Buffer.concat(Array.from({ length: 20 }, (_, i) => data(1, 100, i === 19)));
    const whole = Buffer.concat([PREFACE, settings(), headers(1), frames]);
    const start = PREFACE.length + settings().length + headers(1).length + 4;
    const chunks = [whole.subarray(0, start)];
    for (let i = start; i < whole.length; i += 109) chunks.push(whole.subarray(i, i + 109));
    expect(run(new WindowSettingsShim(), ...chunks).equals(whole)).toBe(true);
  });
});
