// End to end: a real Bazel (4.2.3) runs every action of test/e2e/workspace on `actiond serve`
// (--remote_executor): genrules, a tree artifact consumed by another action, a generated tool, a
// cc_binary built by the cc runtime's gcc, and an sh_test. The outputs must equal a local build's.
//
// Skipped when `bazel` is not on PATH, unless ACTIOND_REQUIRE_E2E=1 (then it fails instead).
import { afterAll, beforeAll, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { startServer, tempDir, type ServerProcess } from "../support/server";
import { checkoutAssetPath } from "../../src/assets";
import { removeBazelTree, skipWithoutBazel } from "./bazel";
import { expectRbePlatformBuild, expectRemoteEqualsLocal, expectRootlessBuild } from "./scenarios";

const SKIP = skipWithoutBazel("bazel-exec e2e");
/** The C toolchain reaches the sandbox through the cc runtime image (bun runtimes/build.ts --profile cc). */
const CC_RUNTIME = checkoutAssetPath("runtime", { profile: "cc" });

let server: ServerProcess | undefined;
let tmp = "";

beforeAll(async () => {
  if (SKIP) return;
  if (!existsSync(CC_RUNTIME)) throw new Error(`${CC_RUNTIME} is missing: run \`bun runtimes/build.ts --profile cc\``);
  tmp = tempDir("actiond-e2e-exec-");
  server = await startServer({ root: join(tmp, "cas"), args: ["--runtime-image", CC_RUNTIME, "--log-level", "debug"] });
});

afterAll(async () => {
  await server?.stop();
  removeBazelTree(tmp);
});

test.skipIf(SKIP)("every action runs remotely in actiond's sandbox, and the outputs equal a local build's", () => expectRemoteEqualsLocal(tmp, server!), 300_000);

test.skipIf(SKIP)("an RBE platform's container-image is accepted: the build runs all remote, and the server says once what it made of it", () => expectRbePlatformBuild(tmp, server!), 300_000);

test.skipIf(SKIP)(
  "rootless: with the server running as an unprivileged user, Bazel's actions still all run remotely",
  async () => {
    const own = await startServer({ root: tempDir("actiond-e2e-rootless-"), user: "tester" });
    try {
      await expectRootlessBuild(tmp, own);
    } finally {
      await own.stop();
    }
  },
  300_000,
);
