// Input directories shared between actions, against a real `actiond serve` as root and rootless:
// a subtree that comes back is mounted into later actions instead of linked file by file, and each
// action still sees exactly its inputs, may write among them, and leaves nothing for the next.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createLogger } from "../../src/core";
import { openDiskStore } from "../../src/cas";
import { TreeRemover } from "../../src/sandbox";
import { readInputTree, type InputTree } from "../../src/exec/input-tree";
import { MessageCache } from "../../src/exec/message-cache";
import { SharedInputDirs } from "../../src/exec/shared-dirs";
import { buildAction, executionClient, run, stdout, text, type InputSpec } from "../support/actions";
import { waitUntil } from "../support/helpers";
import { ReapiClient } from "../support/client";
import { startServer, tempDir, type ServerProcess } from "../support/server";

/** 200 files: well past the size from which a subtree is shared. */
const LIB: InputSpec = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`lib/sub${i % 4}/f${i}.h`, `header ${i}\n`]));
const LIB_TEXT = Array.from({ length: 200 }, (_, i) => `header ${i}\n`).sort().join("");

// What an action reports: whether lib is mounted (a shared directory) or in the execroot itself,
// every input's content, and then it writes among its inputs: a new file, an input replaced.
const PROBE = `
  set -e
  if grep -q " /execroot/lib " /proc/self/mountinfo; then echo mounted; else echo linked; fi
  cat lib/*/*.h | sort | sha256sum | cut -c1-16
  ls lib/sub0 | grep -c new || true
  echo new > lib/sub0/new-$N
  rm lib/sub1/f1.h && echo replaced > lib/sub1/f1.h
  mkdir -p out && echo "$N" > out/result
  grep " /execroot/lib " /proc/self/mountinfo || echo none
`;

for (const mode of ["root", "rootless"] as const) {
  describe(`shared input directories (${mode})`, () => {
    let server: ServerProcess;
    let client: ReapiClient;
    let exec: ReturnType<typeof executionClient>;

    beforeAll(async () => {
      server = await startServer({ root: tempDir(), user: mode === "rootless" ? "tester" : undefined });
      expect(server.log()).not.toContain("input directories are not shared");
      client = new ReapiClient(server.address);
      exec = executionClient(server.address);
    });

    afterAll(async () => {
      exec.close();
      client.close();
      expect(await server.stop()).toBe(0);
    });

    test("a directory seen again is mounted; every action sees its inputs as sent, writes among them, and leaves them unchanged", async () => {
      const want = new Bun.CryptoHasher("sha256").update(LIB_TEXT).digest("hex").slice(0, 16);
      const seen: string[] = [];
      for (let n = 0; n < 4; n++) {
        const r = await run(client, exec, { args: ["bash", "-c", PROBE], env: { PATH: "/usr/bin:/bin", N: String(n) }, inputs: LIB, outputFiles: ["out/result"] });
        expect(r.result?.exitCode).toBe(0);
        const [how, sum, news, mountinfo] = (await stdout(client, r.result)).trim().split("\n");
        // The inputs as sent, and none of the files an earlier action wrote or replaced.
        expect(sum).toBe(want);
        expect(news).toBe("0");
        seen.push(how!);
        // The overlay names its layers by fd: no host path shows.
        expect(mountinfo).not.toContain(server.root);
        // The output beside the shared directory is collected as ever.
        expect(await text(client, r.result?.outputFiles.find((f) => f.path === "out/result")?.digest)).toBe(`${n}\n`);
      }
      // Seen once: linked; from the second sighting on: mounted.
      expect(seen).toEqual(["linked", "mounted", "mounted", "mounted"]);
      // ...as the metrics say: one laid out, mounted three times.
      const metrics = await (await fetch(`http://${server.address}/metrics`)).text();
      expect(metrics).toMatch(/^actiond_shared_input_dirs_laid_out_total 1$/m);
      expect(metrics).toMatch(/^actiond_shared_input_dirs_mounted_total 3$/m);
    });

    test("a directory holding an output, or leading to one, is never shared", async () => {
      for (let n = 0; n < 3; n++) {
        const r = await run(client, exec, {
          args: ["bash", "-c", `if grep -q " /execroot/lib" /proc/self/mountinfo; then echo mounted; else echo linked; fi; echo $N > lib/sub2/made`],
          env: { PATH: "/usr/bin:/bin", N: String(n) },
          inputs: LIB,
          outputFiles: ["lib/sub2/made"],
        });
        expect(r.result?.exitCode).toBe(0);
        // lib/sub0, sub1 and sub3 (50 files each) are below the size worth sharing; lib leads to the output.
        expect((await stdout(client, r.result)).trim()).toBe("linked");
        expect(await text(client, r.result?.outputFiles[0]?.digest)).toBe(`${n}\n`);
      }
    });
  });
}

describe("the shared directories themselves (in-process, on a real disk store)", () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  /** A store holding the trees' blobs, and each tree as the executor reads it. */
  async function storeWith(specs: InputSpec[]) {
    const root = tempDir("actiond-shared-dirs-");
    dirs.push(root);
    const store = openDiskStore({ root, maxBytes: 2 ** 30, log: createLogger("error"), privileged: process.getuid?.() === 0 });
    const trees = [];
    for (const inputs of specs) {
      const built = buildAction({ args: ["true"], inputs });
      for (const [hash, data] of built.blobs) await store.blobs.put({ fn: "sha256", hash, size: data.length }, data);
      trees.push(await readInputTree(store.blobs, new MessageCache(store.blobs), "sha256", built.inputRoot));
    }
    return { root, store, trees };
  }

  test("a directory in use is never evicted; past the bound the oldest unused one goes, and its folder with it", async () => {
    const other: InputSpec = Object.fromEntries(Object.entries(LIB).map(([p, c]) => [p.replace(/^lib/, "vendor"), `other ${c}`]));
    const { root, store, trees } = await storeWith([LIB, other]);
    const [a, b] = trees as [InputTree, InputTree];
    // Room for one of them: each holds 204 entries (200 files in 4 directories).
    const shared = new SharedInputDirs(store.blobs, join(root, "shared"), new TreeRemover(undefined, createLogger("error")), { maxNodes: 300, maxBytes: 2 ** 30 });
    const none = () => false;
    (await shared.take(a, none)).release(); // first sighting: nothing shared
    const heldA = await shared.take(a, none);
    expect(heldA.mounts.map((m) => m.path)).toEqual(["lib"]);
    const sourceA = heldA.mounts[0]!.source;
    expect(readdirSync(join(sourceA, "sub0")).length).toBe(50);
    (await shared.take(b, none)).release();
    const heldB = await shared.take(b, none);
    // Over the bound with both, but a is in use: it stays until released.
    expect(existsSync(sourceA)).toBe(true);
    heldA.release();
    expect(await waitUntil(() => !existsSync(sourceA), 5000)).toBe(true);
    expect(readdirSync(join(heldB.mounts[0]!.source, "sub3")).length).toBe(50);
    // a comes back: seen again, then laid out again.
    expect((await shared.take(a, none)).mounts).toEqual([]);
    heldB.release();
    expect((await shared.take(a, none)).mounts.map((m) => m.path)).toEqual(["lib"]);
  });
});
