// Acceptance for the single executable: dist/actiond-<this machine> copied alone into an empty
// folder, run with PATH=/usr/bin:/bin (no Bun, no checkout), passes the same Bazel end-to-end
// workspace as the source build: as root, and as a plain user (rootless).
import { afterAll, beforeAll, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { startServer, tempDir, type ServerProcess } from "../support/server";
import { BARE_ENV, HOST_TARGET, aloneCopy, skipWithoutDist } from "../support/dist";
import { removeBazelTree, skipWithoutBazel } from "./bazel";
import { expectRemoteEqualsLocal, expectRootlessBuild } from "./scenarios";

const SKIP = skipWithoutBazel("bazel-dist e2e") || skipWithoutDist("bazel-dist e2e", [HOST_TARGET]);

let alone: { dir: string; exe: string } | undefined;
let server: ServerProcess | undefined;
let tmp = "";

const start = (root: string, user?: string) =>
  startServer({ root, user, command: [alone!.exe], cwd: alone!.dir, inheritEnv: false, env: BARE_ENV, args: ["--log-level", "debug"], startTimeoutMs: 120_000 });

beforeAll(async () => {
  if (SKIP) return;
  alone = aloneCopy();
  tmp = tempDir("actiond-e2e-dist-");
  server = await start(join(tmp, "cas"));
});

afterAll(async () => {
  await server?.stop();
  removeBazelTree(tmp);
  if (alone) rmSync(alone.dir, { recursive: true, force: true });
});

test.skipIf(SKIP)("the compiled executable alone: every action runs remotely, outputs equal a local build's", () => expectRemoteEqualsLocal(tmp, server!), 300_000);

test.skipIf(SKIP)(
  "the compiled executable alone, as a plain user: Bazel's actions still all run remotely",
  async () => {
    const own = await start(tempDir("actiond-e2e-dist-rootless-"), "tester");
    try {
      await expectRootlessBuild(tmp, own);
    } finally {
      await own.stop();
    }
  },
  300_000,
);
