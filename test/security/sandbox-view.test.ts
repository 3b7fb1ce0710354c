// What an action can learn about the host from inside its sandbox (issue 16, item 12). The helper's
// PID 1 is a fork of it, so /proc/1/cmdline shows the helper's argv: its command line (mount sources,
// the work folder) therefore comes on an fd, not in argv. mountinfo shows each bind mount's root
// within its filesystem: what is left of the host there is named exactly, and the README says so.
// As root and rootless (the server as the plain user "tester").
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { tmpdir } from "node:os";
import { executionClient, run, stdout } from "../support/actions";
import { ReapiClient } from "../support/client";
import { REPO, startServer, tempDir, type ServerProcess } from "../support/server";

for (const mode of ["root", "rootless"] as const) {
  describe(`what an action sees of the host (${mode})`, () => {
    let server: ServerProcess;
    let client: ReapiClient;
    let exec: ReturnType<typeof executionClient>;
    let seen: Record<string, string>;

    beforeAll(async () => {
      server = await startServer({ root: tempDir(), user: mode === "rootless" ? "tester" : undefined });
      client = new ReapiClient(server.address);
      exec = executionClient(server.address);
      const script = String.raw`
        section() { printf '=== %s\n' "$1"; }
        section cmdline; tr '\0' '\n' < /proc/1/cmdline
        section mountinfo; cat /proc/self/mountinfo
        section pid1; for f in exe cwd root; do readlink /proc/1/$f >/dev/null 2>&1 && echo "$f readable"; done
        for f in environ maps; do cat /proc/1/$f >/dev/null 2>&1 && echo "$f readable"; done; true`;
      const r = await run(client, exec, { args: ["bash", "-c", script], salt: `${Math.random()}` });
      expect(r.result!.exitCode).toBe(0);
      seen = Object.fromEntries(
        (await stdout(client, r.result))
          .split(/^=== /m)
          .filter(Boolean)
          .map((s) => [s.slice(0, s.indexOf("\n")), s.slice(s.indexOf("\n") + 1)]),
      );
    });

    afterAll(async () => {
      exec.close();
      client.close();
      expect(await server.stop()).toBe(0);
    });

    test("an action's /proc/1/cmdline names no host path: it is `actiond-sandbox --args-fd 4`", () => {
      expect(seen.cmdline).toBe("actiond-sandbox\n--args-fd\n4\n");
    });

    test("an action cannot read the exe, cwd, root, environ or maps of the sandbox's PID 1", () => {
      expect(seen.pid1).toBe("");
    });

    test("an action's mountinfo names no host path but the root-mode execroot's and an unpacked runtime's place in their filesystem", () => {
      // Mount root (field 4), source and super options; every one that names the server's root,
      // this checkout (the helper, the runtime image) or the test's temp folder.
      const hostPaths = [server.root, REPO, `${tmpdir()}/`];
      expect(seen.mountinfo).toContain(" /execroot ");
      const leaks = seen
        .mountinfo!.trim()
        .split("\n")
        .flatMap((line) => {
          const f = line.split(" ");
          const dash = f.indexOf("-");
          return [
            { mountPoint: f[4]!, what: "root", text: f[3]! },
            { mountPoint: f[4]!, what: "source", text: f[dash + 2]! },
            { mountPoint: f[4]!, what: "options", text: f[dash + 3]! },
          ];
        })
        .filter((x) => hostPaths.some((p) => x.text.includes(p)));
      const unpacked = server.log().includes("unpacked with unsquashfs");
      const allowed = (x: (typeof leaks)[number]) =>
        x.what === "root" &&
        // As root the execroot is a bind of the work folder (rootless an overlay, its layers named by fd).
        ((mode === "root" && x.mountPoint === "/execroot" && /^\/.*\/exec\/[0-9a-f-]{36}\/execroot$/.test(x.text)) ||
          // A runtime unpacked into a directory (no squashfs mount here) is bound from there.
          (unpacked && x.text.startsWith(`${server.root}/runtimes/extracted/`) && x.text.endsWith(x.mountPoint)));
      expect(leaks.filter((x) => !allowed(x))).toEqual([]);
      if (mode === "rootless") expect(leaks.filter((x) => x.mountPoint === "/execroot")).toEqual([]);
    });
  });
}
