// The shape of src/, checked on every test run: imports run one way down the layers, and a folder
// is entered only through its index.ts. A back-edge or a reach into another folder's files fails
// here, naming the file and the import. (Run alone: bun test test/structure)
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dir, "../../src");

/**
 * Each folder's layer: a folder may import only from folders on lower layers (and from itself).
 *   cli → {rpc, web, vmhost, guest} → {exec, fetch, upstream, transport} → {sandbox, runtime, cas, assets} → core
 * gen/ (generated protobuf code, the data model) may be imported from anywhere.
 */
const LAYERS: Record<string, number> = {
  "main.ts": 5,
  cli: 4,
  rpc: 3,
  web: 3,
  vmhost: 3,
  guest: 3,
  exec: 2,
  fetch: 2,
  upstream: 2,
  transport: 2,
  sandbox: 1,
  runtime: 1,
  cas: 1,
  assets: 1,
  core: 0,
};
/** Only the gRPC edge knows grpc-js (the clients it keeps: the upstream tier, the readiness probe). */
const TRANSPORT = "@grpc/grpc-js";
const TRANSPORT_FOLDERS = new Set(["rpc"]);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === "gen" && dir === SRC ? [] : sourceFiles(path);
    return path.endsWith(".ts") ? [path] : [];
  });
}

/** The folder of src/ a path belongs to ("main.ts" for src/main.ts). */
function folderOf(path: string): string {
  return relative(SRC, path).split("/")[0]!;
}

interface Import {
  file: string;
  spec: string;
}

function importsOf(file: string): Import[] {
  const text = readFileSync(file, "utf8");
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^"'`;]*?from\s+["']([^"']+)["']/g), ...text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]!);
  return specs.map((spec) => ({ file, spec }));
}

const files = sourceFiles(SRC);
const imports = files.flatMap(importsOf);

describe("the layers of src/", () => {
  test("every folder of src/ has a layer", () => {
    const folders = readdirSync(SRC).filter((f) => f !== "gen" && f !== "proto");
    expect(folders.filter((f) => LAYERS[f] === undefined)).toEqual([]);
  });

  test("no import runs up or across the layers", () => {
    const backEdges: string[] = [];
    for (const { file, spec } of imports) {
      if (!spec.startsWith(".")) continue;
      const target = resolve(dirname(file), spec);
      if (!target.startsWith(`${SRC}/`)) continue;
      const from = folderOf(file);
      const to = folderOf(target);
      if (to === "gen" || to === from) continue;
      if (!(LAYERS[to]! < LAYERS[from]!)) backEdges.push(`${relative(SRC, file)} imports ${spec} (${from} is on layer ${LAYERS[from]}, ${to} on ${LAYERS[to]})`);
    }
    expect(backEdges).toEqual([]);
  });

  test("another folder is entered only through its index.ts", () => {
    const reaches: string[] = [];
    for (const { file, spec } of imports) {
      if (!spec.startsWith(".")) continue;
      const target = resolve(dirname(file), spec);
      const from = folderOf(file);
      const to = folderOf(target);
      if (!target.startsWith(`${SRC}/`) || to === "gen" || to === from) continue;
      const viaIndex = target === join(SRC, to) || target === join(SRC, to, "index") || target === join(SRC, to, "index.ts");
      if (!viaIndex) reaches.push(`${relative(SRC, file)} imports ${spec}: import "${relative(dirname(file), join(SRC, to))}" instead`);
    }
    expect(reaches).toEqual([]);
  });

  test(`only ${[...TRANSPORT_FOLDERS].join(", ")}/ imports the transport (${TRANSPORT})`, () => {
    const users = imports.filter((i) => i.spec === TRANSPORT && !TRANSPORT_FOLDERS.has(folderOf(i.file))).map((i) => relative(SRC, i.file));
    expect(users).toEqual([]);
  });

  test("each folder has an index.ts saying what it is for", () => {
    const missing = Object.keys(LAYERS)
      .filter((f) => f !== "main.ts")
      .filter((f) => !/^\/\/ \S+\/: /.test(readFileSync(join(SRC, f, "index.ts"), "utf8")));
    expect(missing).toEqual([]);
  });
});
