// The end-to-end scenarios every way of running actiond must pass (from source, the compiled
// executable): Bazel builds and tests test/e2e/workspace with all actions on the server.
import { expect } from "bun:test";
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ServerProcess } from "../support/server";
import { BazelWorkspace, COMMON_FLAGS, EXPECTED_OUTPUTS, processSummary, snapshot } from "./bazel";

function remote(w: BazelWorkspace, server: ServerProcess, args: string[]): Promise<string> {
  return w.run(
    [
      ...args,
      `--remote_executor=grpc://${server.address}`,
      "--spawn_strategy=remote",
      "--genrule_strategy=remote",
      "--remote_local_fallback=false",
      "--remote_timeout=60",
      "--test_output=errors",
      ...COMMON_FLAGS,
    ],
    () => `--- server log ---\n${server.log()}`,
  );
}

/** Genrules, a tree artifact, a generated tool, a cc_binary and an sh_test, all remote; outputs equal a local build's. */
export async function expectRemoteEqualsLocal(tmp: string, server: ServerProcess, expectedWarning?: RegExp): Promise<void> {
  const w = new BazelWorkspace(tmp);
  const local = processSummary(await w.run(["build", "//...", "--spawn_strategy=standalone", ...COMMON_FLAGS]));
  const localFiles = snapshot(realpathSync(join(w.ws, "bazel-bin")));
  await w.run(["clean"]);

  const built = processSummary(await remote(w, server, ["build", "//..."]));
  console.log(`local build:  ${local.line}\nremote build: ${built.line}`);
  const actions = built.total - (built.kinds["internal"] ?? 0);
  expect(actions).toBeGreaterThanOrEqual(10);
  expect(built.kinds["remote"]).toBe(actions);
  const remoteFiles = snapshot(realpathSync(join(w.ws, "bazel-bin")));
  expect(Object.keys(remoteFiles)).toEqual(expect.arrayContaining(EXPECTED_OUTPUTS));
  expect(remoteFiles).toEqual(localFiles);
  expect(readFileSync(join(w.ws, "bazel-bin/tool/shout.txt"), "utf8")).toBe("HELLO FROM A TOOL\n");

  // The sh_test runs remotely too: it runs the C binary from its runfiles and checks the tool's output.
  const tested = await remote(w, server, ["test", "//..."]);
  const summary = processSummary(tested);
  console.log(`remote test:  ${summary.line}`);
  expect(tested).toMatch(/\/\/shtest:check\s+PASSED/);
  expect(summary.kinds["remote"]).toBe(summary.total - (summary.kinds["internal"] ?? 0) - (summary.kinds["remote cache hit"] ?? 0));
  expect(readFileSync(join(w.ws, "bazel-testlogs/shtest/check/test.log"), "utf8")).toContain("PASS");
  const unexpected = server.log().split("\n").filter((l) => / (WARN|ERROR) /.test(l) && !(expectedWarning && expectedWarning.test(l)));
  expect(unexpected).toEqual([]);
}

/**
 * A platform as RBE configurations write it (container-image, OSFamily): every action still runs
 * remotely, in actiond's runtime, and the server says once what it made of the image (in the log,
 * and in that action's ExecuteResponse.message, which Bazel 4.2.3 shows only for failed actions;
 * newer Bazel prints it with --remote_print_execution_messages=all).
 */
export async function expectRbePlatformBuild(tmp: string, server: ServerProcess): Promise<void> {
  const w = new BazelWorkspace(tmp, "ws-rbe");
  const out = await remote(w, server, [
    "build",
    "//...",
    "--remote_default_exec_properties=container-image=docker://gcr.io/some/image@sha256:0123",
    "--remote_default_exec_properties=OSFamily=Linux",
  ]);
  const summary = processSummary(out);
  console.log(`rbe platform: ${summary.line}`);
  expect(summary.kinds["remote"]).toBe(summary.total - (summary.kinds["internal"] ?? 0));
  const notices = server.log().split("\n").filter((l) => l.includes('container-image="docker://gcr.io/some/image@sha256:0123" is not used: actiond runs actions in its own runtime images'));
  expect(notices).toHaveLength(1);
  expect(readFileSync(join(w.ws, "bazel-bin/tool/shout.txt"), "utf8")).toBe("HELLO FROM A TOOL\n");
}

/** With the server running as a plain user: the genrules and the generated tool still all run remotely. */
export async function expectRootlessBuild(tmp: string, server: ServerProcess): Promise<void> {
  const w = new BazelWorkspace(tmp, "ws-rootless");
  const out = await remote(w, server, ["build", "//:all", "//tool:all"]);
  const summary = processSummary(out);
  expect(summary.kinds["remote"]).toBe(summary.total - (summary.kinds["internal"] ?? 0));
  expect(server.log()).toContain("sandbox namespaces (rootless)");
  expect(readFileSync(join(w.ws, "bazel-bin/c.txt"), "utf8")).toBe("ALPHA\nBETA\nGAMMA\n");
  expect(readFileSync(join(w.ws, "bazel-bin/tool/shout.txt"), "utf8")).toBe("HELLO FROM A TOOL\n");
}

/**
 * The Remote Asset API with --experimental_remote_downloader: an http_archive comes through the
 * server from an HTTP origin of the test's own on 127.0.0.1 (the server downloads it: the origin sees
 * Bun, not Bazel); with the origin stopped and Bazel's output base expunged (and no repository
 * cache), it builds again from what the server keeps. A wrong sha256 fails, naming it.
 */
export async function expectAssetBuild(tmp: string, server: ServerProcess): Promise<void> {
  const src = join(tmp, "asset-src");
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, "hello.txt"), "hello from an archive\n");
  const tar = Bun.spawnSync(["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-czf", join(tmp, "ext.tar.gz"), "-C", src, "."]);
  if (tar.exitCode !== 0) throw new Error(tar.stderr.toString());
  const tarball = new Uint8Array(readFileSync(join(tmp, "ext.tar.gz")));
  const seen: string[] = [];
  const origin = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      if (new URL(req.url).pathname !== "/ext.tar.gz") return new Response("no", { status: 404 });
      seen.push(req.headers.get("user-agent")?.split("/")[0] ?? "");
      return new Response(tarball);
    },
  });
  try {
    const workspace = (name: string, sha256: string) =>
      new BazelWorkspace(tmp, name, {
        WORKSPACE: [
          'workspace(name = "assets")',
          'load("@bazel_tools//tools/build_defs/repo:http.bzl", "http_archive")',
          `http_archive(name = "ext", urls = ["http://127.0.0.1:${origin.port}/ext.tar.gz"], sha256 = "${sha256}", build_file_content = 'exports_files(["hello.txt"])')`,
          "",
        ].join("\n"),
        BUILD: 'genrule(name = "use", srcs = ["@ext//:hello.txt"], outs = ["used.txt"], cmd = "cp $< $@")\n',
      });
    // The downloader, and the cache it reads blobs from, on the server; no repository cache of Bazel's own.
    const flags = [`--experimental_remote_downloader=grpc://${server.address}`, `--remote_cache=grpc://${server.address}`, "--repository_cache=", ...COMMON_FLAGS];
    const diagnose = () => `--- server log ---\n${server.log()}`;
    const w = workspace("ws-asset", new Bun.CryptoHasher("sha256").update(tarball).digest("hex"));
    await w.run(["build", "//:use", ...flags], diagnose);
    expect(readFileSync(join(w.ws, "bazel-bin/used.txt"), "utf8")).toBe("hello from an archive\n");
    expect(seen).toEqual(["Bun"]);
    // The origin's bytes do not match: the build fails, naming the checksum it wanted.
    const wrong = new Bun.CryptoHasher("sha256").update("not the archive").digest("hex");
    const r = await workspace("ws-asset-wrong", wrong).tryRun(["build", "//:use", ...flags]);
    expect(r.code).not.toBe(0);
    expect(r.output).toContain(wrong);
    expect(seen).toEqual(["Bun", "Bun"]);

    origin.stop(true);
    await w.run(["clean", "--expunge"]);
    await w.run(["build", "//:use", ...flags], diagnose);
    expect(readFileSync(join(w.ws, "bazel-bin/used.txt"), "utf8")).toBe("hello from an archive\n");
    expect(seen).toHaveLength(2);

  } finally {
    origin.stop(true);
  }
}
