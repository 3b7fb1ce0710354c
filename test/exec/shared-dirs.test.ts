// Input directories shared between actions, against a real `actiond serve` as root and rootless:
// a subtree that comes back is mounted into later actions instead of linked file by file, and each
// action still sees exactly its inputs, may write among them, and leaves nothing for the next.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { executionClient, run, stdout, text, type InputSpec } from "../support/actions";
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
