// Extracting a compiled actiond's assets (src/payload): each appears whole or not at all, damage is
// found and repaired, and processes starting together do not clash. Uses payloads made here, so it
// needs no compiled executable (test/dist.test.ts checks the real ones).
import { describe, expect, test } from "bun:test";
import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { extractAssets, findManifest, formatManifest, MANIFEST_MARKER, type AssetEntry, type EmbeddedPayload, type PayloadManifest } from "../src/assets";
import { createLogger } from "../src/core";
import { randomBytes } from "./support/helpers";
import { REPO, tempDir } from "./support/server";

const sha256 = (b: Uint8Array) => new Bun.CryptoHasher("sha256").update(b).digest("hex");
const fileSha = (path: string) => sha256(readFileSync(path));

interface Made {
  payload: EmbeddedPayload;
  contents: Map<string, Uint8Array>;
}

/** A payload of a compressible executable and an incompressible data file. */
function makePayload(): Made {
  const tool = new TextEncoder().encode("#!/bin/sh\necho tool\n".repeat(5000));
  const data = randomBytes(300_000);
  const entries: [AssetEntry, Uint8Array][] = [];
  for (const [name, content, zstd, executable] of [["tool", tool, true, true], ["data.img", data, false, false]] as const) {
    const stored = zstd ? Bun.zstdCompressSync(content) : content;
    const file = zstd ? `${name}.zst` : name;
    entries.push([{ name, role: zstd ? "sandbox-helper" : "runtime", size: content.length, sha256: sha256(content), encoding: zstd ? "zstd" : "none", file, storedSize: stored.length, storedSha256: sha256(stored), storedHead: Buffer.from(stored.subarray(0, 16)).toString("hex"), executable }, stored]);
  }
  const manifest: PayloadManifest = { version: "0.0.0", commit: "test", target: "linux-x64", bun: Bun.version, assets: entries.map(([e]) => e), missing: [] };
  return {
    payload: { manifest, files: new Map(entries.map(([e, stored]) => [e.file, new Blob([stored])])) },
    contents: new Map([["tool", tool], ["data.img", data]]),
  };
}

function capture() {
  const lines: string[] = [];
  const log = { debug() {}, info: (m: string) => lines.push(m), warn: (m: string) => lines.push(`WARN ${m}`), error: (m: string) => lines.push(`ERROR ${m}`) };
  return { log, lines };
}

const pathOf = (root: string, a: AssetEntry) => join(root, "embedded", `${a.name}-${a.sha256}`);

describe("embedded assets", () => {
  test("are extracted once to <root>/embedded/<name>-<sha256> with their modes, then reused", async () => {
    const { payload, contents } = makePayload();
    const root = tempDir();
    const first = await extractAssets(payload, root, createLogger("error"));
    expect(first.extracted).toBe(2);
    for (const a of payload.manifest.assets) {
      const path = pathOf(root, a);
      expect(fileSha(path)).toBe(sha256(contents.get(a.name)!));
      expect(statSync(path).mode & 0o777).toBe(a.executable ? 0o555 : 0o444);
    }
    expect(first.byRole.get("sandbox-helper")).toEqual([pathOf(root, payload.manifest.assets[0]!)]);
    const again = await extractAssets(payload, root, createLogger("error"));
    expect({ extracted: again.extracted, reused: again.reused }).toEqual({ extracted: 0, reused: 2 });
    expect(readdirSync(join(root, "embedded")).filter((n) => n.startsWith(".tmp-"))).toEqual([]);
  });

  test("a damaged extraction (same size, other bytes; or cut short) is found and redone", async () => {
    const { payload, contents } = makePayload();
    const root = tempDir();
    await extractAssets(payload, root, createLogger("error"));
    const [tool, data] = payload.manifest.assets as [AssetEntry, AssetEntry];
    for (const p of [pathOf(root, tool), pathOf(root, data)]) chmodSync(p, 0o644);
    const flipped = new Uint8Array(readFileSync(pathOf(root, data)));
    flipped[1000] = flipped[1000]! ^ 0xff;
    writeFileSync(pathOf(root, data), flipped);
    writeFileSync(pathOf(root, tool), contents.get("tool")!.subarray(0, 100));

    const { log, lines } = capture();
    const r = await extractAssets(payload, root, log);
    expect(r.extracted).toBe(2);
    expect(lines.filter((l) => l.startsWith("WARN") && l.includes("is damaged"))).toHaveLength(2);
    expect(fileSha(pathOf(root, data))).toBe(sha256(contents.get("data.img")!));
    expect(fileSha(pathOf(root, tool))).toBe(sha256(contents.get("tool")!));
  });

  test("an executable whose asset does not match its manifest is refused, and nothing is left under the asset's name", async () => {
    const { payload } = makePayload();
    const data = payload.manifest.assets[1]!;
    payload.files.set(data.file, new Blob([randomBytes(data.size)]));
    const root = tempDir();
    await expect(extractAssets(payload, root, createLogger("error"))).rejects.toThrow(/is damaged: its asset data.img has sha256 [0-9a-f]{64}, its manifest says/);
    const left = readdirSync(join(root, "embedded"));
    expect(left.filter((n) => n.startsWith("data.img") || n.startsWith(".tmp-"))).toEqual([]);
  });

  test("four processes extracting into one root at once all succeed and leave one whole copy", async () => {
    const { payload, contents } = makePayload();
    const root = tempDir();
    const src = tempDir();
    // Each process gets the same payload from files written here.
    for (const [file, blob] of payload.files) writeFileSync(join(src, file), new Uint8Array(await blob.arrayBuffer()));
    writeFileSync(join(src, "manifest"), formatManifest(payload.manifest));
    const script = join(src, "extract.ts");
    writeFileSync(
      script,
      `import { extractAssets, parseManifest } from ${JSON.stringify(join(REPO, "src/assets"))};
import { createLogger } from ${JSON.stringify(join(REPO, "src/core"))};
const dir = ${JSON.stringify(src)};
const manifest = parseManifest(await Bun.file(dir + "/manifest").text());
const files = new Map(manifest.assets.map((a) => [a.file, Bun.file(dir + "/" + a.file)]));
const r = await extractAssets({ manifest, files }, process.argv[2], createLogger("warn"));
console.log(JSON.stringify({ extracted: r.extracted, reused: r.reused }));
`,
    );
    const procs = Array.from({ length: 4 }, () => Bun.spawn([process.execPath, script, root], { stdout: "pipe", stderr: "pipe" }));
    const results = await Promise.all(procs.map(async (p) => ({ code: await p.exited, out: await new Response(p.stdout).text(), err: await new Response(p.stderr).text() })));
    for (const r of results) expect(r).toMatchObject({ code: 0, err: "" });
    const names = readdirSync(join(root, "embedded")).sort();
    expect(names).toEqual(payload.manifest.assets.flatMap((a) => [`${a.name}-${a.sha256}`, `${a.name}-${a.sha256}.verified`]).sort());
    for (const a of payload.manifest.assets) expect(fileSha(pathOf(root, a))).toBe(sha256(contents.get(a.name)!));
  });

  test("the manifest is found in an executable's bytes, skipping the marker where code mentions it", () => {
    const { payload } = makePayload();
    const bytes = Buffer.concat([randomBytes(1000), Buffer.from(`var m="${MANIFEST_MARKER}";`), randomBytes(1000), Buffer.from(formatManifest(payload.manifest)), randomBytes(1000)]);
    expect(findManifest(bytes)).toEqual(payload.manifest);
    expect(findManifest(randomBytes(5000))).toBeUndefined();
  });
});
