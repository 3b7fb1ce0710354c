// The Remote Asset API with the real Bazel 4.2.3 and `actiond serve`: --experimental_remote_downloader
// sends an http_archive's download to actiond, which fetches it from an HTTP server of the test's own
// on 127.0.0.1; with that server stopped and Bazel's output base gone (and no repository cache), the
// build still succeeds from what actiond keeps; a wrong sha256 fails, naming it. The VM suites run
// the same scenario through serve-vm, whose host downloads for its guest.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { startServer, tempDir, type ServerProcess } from "../support/server";
import { removeBazelTree, skipWithoutBazel } from "./bazel";
import { expectAssetBuild } from "./scenarios";

const SKIP = skipWithoutBazel("bazel-asset e2e");

let tmp = "";
let server: ServerProcess | undefined;

beforeAll(async () => {
  if (SKIP) return;
  tmp = tempDir("actiond-e2e-asset-");
  server = await startServer({ root: join(tmp, "cas") });
});

afterAll(async () => {
  await server?.stop();
  removeBazelTree(tmp);
});

test.skipIf(SKIP)("an http_archive comes through actiond, and again from actiond's cache once the origin and Bazel's output base are gone; a wrong sha256 fails naming it", async () => {
  await expectAssetBuild(tmp, server!);
  expect(server!.log()).toMatch(/fetched http:\/\/127\.0\.0\.1:\d+\/ext\.tar\.gz into the CAS/);
}, 600_000);
