// The Remote Asset API with the real Bazel 4.2.3: --experimental_remote_downloader sends an
// http_archive's download to actiond, which fetches it from an HTTP server of the test's own on
// 127.0.0.1; with that server stopped and Bazel's output base gone (and no repository cache), the
// build still succeeds from what actiond keeps; a wrong sha256 fails, naming it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startServer, tempDir, type ServerProcess } from "../support/server";
import { BazelWorkspace, COMMON_FLAGS, makeDirsWritable, skipWithoutBazel } from "./bazel";

const SKIP = skipWithoutBazel("bazel-asset e2e");

let tmp = "";
let server: ServerProcess | undefined;
let origin: ReturnType<typeof Bun.serve> | undefined;
const seen: { path: string; agent: string }[] = [];
let tarball: Uint8Array;

function serveOrigin(port = 0) {
  origin = Bun.serve({
    hostname: "127.0.0.1",
    port,
    fetch(req) {
      seen.push({ path: new URL(req.url).pathname, agent: req.headers.get("user-agent") ?? "" });
      return new URL(req.url).pathname === "/ext.tar.gz" ? new Response(tarball) : new Response("no", { status: 404 });
    },
  });
  return origin.port!;
}

beforeAll(async () => {
  if (SKIP) return;
  tmp = tempDir("actiond-e2e-asset-");
  const src = join(tmp, "ext");
  mkdirSync(src);
  writeFileSync(join(src, "hello.txt"), "hello from an archive\n");
  const tar = Bun.spawnSync(["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-czf", join(tmp, "ext.tar.gz"), "-C", src, "."]);
  if (tar.exitCode !== 0) throw new Error(tar.stderr.toString());
  tarball = new Uint8Array(readFileSync(join(tmp, "ext.tar.gz")));
  server = await startServer({ root: join(tmp, "cas") });
});

afterAll(async () => {
  origin?.stop(true);
  await server?.stop();
  if (tmp) {
    makeDirsWritable(tmp);
    rmSync(tmp, { recursive: true, force: true });
  }
});

function workspace(name: string, port: number, sha256: string): BazelWorkspace {
  return new BazelWorkspace(tmp, name, {
    WORKSPACE: [
      'workspace(name = "assets")',
      'load("@bazel_tools//tools/build_defs/repo:http.bzl", "http_archive")',
      `http_archive(name = "ext", urls = ["http://127.0.0.1:${port}/ext.tar.gz"], sha256 = "${sha256}", build_file_content = 'exports_files(["hello.txt"])')`,
      "",
    ].join("\n"),
    BUILD: 'genrule(name = "use", srcs = ["@ext//:hello.txt"], outs = ["used.txt"], cmd = "cp $< $@")\n',
  });
}

/** Bazel with the downloader (and the cache it reads blobs from) on actiond, and no repository cache of its own. */
const flags = () => [`--experimental_remote_downloader=grpc://${server!.address}`, `--remote_cache=grpc://${server!.address}`, "--repository_cache=", ...COMMON_FLAGS];

test.skipIf(SKIP)("an http_archive comes through actiond, and again from actiond's cache once the origin and Bazel's output base are gone", async () => {
  const port = serveOrigin();
  const sha256 = new Bun.CryptoHasher("sha256").update(tarball).digest("hex");
  const w = workspace("ws", port, sha256);
  await w.run(["build", "//:use", ...flags()]);
  expect(readFileSync(join(w.ws, "bazel-bin/used.txt"), "utf8")).toBe("hello from an archive\n");
  // The origin saw actiond (Bun's fetch), not Bazel.
  expect(seen.filter((s) => s.path === "/ext.tar.gz").map((s) => s.agent.split("/")[0])).toEqual(["Bun"]);
  expect(server!.log()).toContain(`fetched http://127.0.0.1:${port}/ext.tar.gz into the CAS`);

  origin!.stop(true);
  await w.run(["clean", "--expunge"]);
  await w.run(["build", "//:use", ...flags()]);
  expect(readFileSync(join(w.ws, "bazel-bin/used.txt"), "utf8")).toBe("hello from an archive\n");
  expect(seen.filter((s) => s.path === "/ext.tar.gz")).toHaveLength(1);
}, 300_000);

test.skipIf(SKIP)("a wrong sha256 fails the build, and the message names it", async () => {
  const port = serveOrigin();
  const wrong = new Bun.CryptoHasher("sha256").update("not the archive").digest("hex");
  const w = workspace("ws-wrong", port, wrong);
  const r = await w.tryRun(["build", "//:use", ...flags()]);
  expect(r.code).not.toBe(0);
  expect(r.output).toContain(wrong);
  console.log(r.output.split("\n").filter((l) => l.includes(wrong)).slice(0, 2).join("\n"));
}, 300_000);
