// Sandbox isolation, checked from inside real actions run through Execute: as root, with the server
// running as an unprivileged user (rootless: a user namespace, inputs under an overlay), and as root
// without CAP_SYS_ADMIN (a container's root by default), which must take the rootless way.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { executionClient, readTree, run, stdout } from "./support/actions";
import { ReapiClient } from "./support/client";
import { MAIN, startServer, tempDir, type ServerProcess } from "./support/server";

/** One action that reports every property as key=value lines. */
const PROBE = String.raw`
say() { printf '%s=%s\n' "$1" "$2"; }
say uid "$(id -u)"; say gid "$(id -g)"; say groups "$(id -G)"
for f in CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs; do say "$f" "$(awk -v k="$f:" '$1==k {print $2}' /proc/self/status)"; done
say netdevs "$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ' ')"
say lo_up "$( (exec 3<>/dev/tcp/127.0.0.1/1) 2>&1 | grep -q 'refused' && echo yes || echo no)"
say host_port "$( (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && echo reachable || echo unreachable)"
say hostname "$(uname -n)"
say pid "$$"
say procs "$(ls /proc | grep -c '^[0-9]*$')"
say dev "$(ls /dev | tr '\n' ' ')"
say devnull "$(echo x > /dev/null && head -c 4 /dev/zero | wc -c)"
say root_ro "$(touch /new-file 2>/dev/null && echo writable || echo read-only)"
say usr_ro "$(touch /usr/new-file 2>/dev/null && echo writable || echo read-only)"
say tmp "$(echo t > /tmp/t && cat /tmp/t) $(awk '$2=="/tmp" {print $3}' /proc/mounts)"
say proc_fs "$(awk '$2=="/proc" {print $3}' /proc/mounts)"
say host_paths "$(for p in /root /home /work /var /etc/shadow /sys/kernel; do test -e $p && printf '%s ' $p; done)"
say env "$(env | sort | tr '\n' ' ')"
say stdin "$(wc -c)"
say input_write "$(echo more >> input.txt 2>/dev/null && echo written || echo refused)"
chmod u+w input.txt 2>/dev/null; echo more >> input.txt 2>/dev/null
say input_now "$(cat input.txt)"
say out_write "$(echo o > out.txt && cat out.txt)"
`;

function parse(text: string): Record<string, string> {
  return Object.fromEntries(text.trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1).trim()]));
}

/** Root, minus CAP_SYS_ADMIN: what Docker gives a container's root by default. */
const WITHOUT_SYS_ADMIN = ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", "--", process.execPath, MAIN];

for (const mode of ["root", "rootless", "root without CAP_SYS_ADMIN"] as const) {
  describe(`sandbox isolation (${mode})`, () => {
    let server: ServerProcess;
    let client: ReapiClient;
    let exec: ReturnType<typeof executionClient>;
    let probe: Record<string, string>;
    let inputDigest = "";

    beforeAll(async () => {
      server = await startServer({
        root: tempDir(),
        user: mode === "rootless" ? "tester" : undefined,
        command: mode === "root without CAP_SYS_ADMIN" ? WITHOUT_SYS_ADMIN : undefined,
      });
      expect(server.log()).toContain(mode === "root" ? "sandbox namespaces," : "sandbox namespaces (rootless)");
      client = new ReapiClient(server.address);
      exec = executionClient(server.address);
      const r = await run(client, exec, {
        args: ["bash", "-c", PROBE],
        env: { PATH: "/usr/bin:/bin", PORT: String(server.port), ONLY_THIS: "yes" },
        inputs: { "input.txt": `original-${mode}` },
        outputFiles: ["out.txt"],
      });
      expect(r.result?.exitCode).toBe(0);
      probe = parse(await stdout(client, r.result));
      inputDigest = new Bun.CryptoHasher("sha256").update(`original-${mode}`).digest("hex");
    });

    afterAll(async () => {
      exec.close();
      client.close();
      expect(await server.stop()).toBe(0);
    });

    test("identity: uid/gid 65534, no supplementary groups", () => {
      expect([probe.uid, probe.gid, probe.groups]).toEqual(["65534", "65534", "65534"]);
    });

    test("no capabilities at all, and no_new_privs", () => {
      for (const c of ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]) expect({ c, v: probe[c] }).toEqual({ c, v: "0000000000000000" });
      expect(probe.NoNewPrivs).toBe("1");
    });

    test("network: only loopback, up; the host's loopback is not reachable", () => {
      expect(probe.netdevs).toBe("lo");
      expect(probe.lo_up).toBe("yes");
      expect(probe.host_port).toBe("unreachable");
    });

    test("own PID, UTS namespaces and a fresh /proc", () => {
      expect(Number(probe.pid)).toBeLessThan(10);
      expect(Number(probe.procs)).toBeLessThan(10);
      expect(probe.proc_fs).toBe("proc");
      expect(probe.hostname).toBe("localhost");
    });

    test("filesystem: read-only root and runtime, tmpfs /tmp, minimal /dev, nothing else of the host", () => {
      expect(probe.root_ro).toBe("read-only");
      expect(probe.usr_ro).toBe("read-only");
      expect(probe.tmp).toBe("t tmpfs");
      expect(probe.dev?.split(" ").sort()).toEqual(["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]);
      expect(probe.devnull).toBe("4");
      expect(probe.host_paths).toBe("");
    });

    test("environment exactly Command.environment_variables; stdin empty", () => {
      expect(probe.env).toBe(`ONLY_THIS=yes PATH=/usr/bin:/bin PORT=${server.port} PWD=/execroot SHLVL=1 _=/usr/bin/env`);
      expect(probe.stdin).toBe("0");
    });

    test("outputs are what the action left: a deleted input is not an output, and symlinks are never followed", async () => {
      // A host file the action must not be able to reach through the execroot's symlinks.
      const victim = mkdtempSync("/tmp/actiond-victim-");
      writeFileSync(join(victim, "secret.txt"), "host secret");
      const r = await run(client, exec, {
        // The action makes s and up, which lead to the host's / on disk (inputs like them are refused
        // before the action runs), and swaps the input symlink out2/esc for a directory; a lookup
        // that fell through to the lower layer there would follow out2/esc and up out of the
        // execroot to the victim.
        args: [
          "sh",
          "-c",
          `mkdir -p a/b/c/d/e/f && ln -s ../../../../../.. a/b/c/d/e/f/s && ln -s a/b/c/d/e/f/s/../../../../../.. up && ` +
            `rm -rf out && mkdir -p out && echo new > out/new.txt && rm out2/esc && mkdir -p out2/esc${victim} && echo mine > out2/mine.txt`,
        ],
        inputs: {
          "out/old.txt": "old",
          "out2/esc": { symlink: "../up" },
        },
        outputDirectories: ["out", "out2"],
      });
      expect(r.result?.exitCode).toBe(0);
      const tree = await readTree(client, r.result!.outputDirectories[0]!.treeDigest);
      expect(tree.root!.files.map((f) => f.name)).toEqual(["new.txt"]);
      const tree2 = await readTree(client, r.result!.outputDirectories[1]!.treeDigest);
      expect(tree2.root!.files.map((f) => f.name)).toEqual(["mine.txt"]);
      expect(tree2.children.flatMap((d) => d.files.map((f) => f.name))).toEqual([]);
      expect(readFileSync(join(victim, "secret.txt"), "utf8")).toBe("host secret");
      rmSync(victim, { recursive: true });
    });

    test("outputs the action left unreadable or unsearchable are still collected, deleted inputs still gone", async () => {
      const r = await run(client, exec, {
        args: ["sh", "-c", "rm -rf out && mkdir -p out/sub && echo new > out/new.txt && echo s > out/sub/s.txt && chmod 0644 out/sub && chmod 0311 out"],
        inputs: { "out/old.txt": "old" },
        outputDirectories: ["out"],
      });
      expect(r.response.status?.code ?? 0).toBe(0);
      const tree = await readTree(client, r.result!.outputDirectories[0]!.treeDigest);
      expect(tree.root!.files.map((f) => f.name)).toEqual(["new.txt"]);
      expect(tree.children.flatMap((d) => d.files.map((f) => f.name))).toEqual(["s.txt"]);
    });

    test("inputs are read-only: the stored blob is never changed; outputs are writable", async () => {
      expect(probe.input_write).toBe("refused");
      if (mode === "root") expect(probe.input_now).toBe(`original-${mode}`);
      const stored = readFileSync(`${server.root}/cas/sha256/${inputDigest.slice(0, 2)}/${inputDigest}-${`original-${mode}`.length}`, "utf8");
      expect(stored).toBe(`original-${mode}`);
      expect(probe.out_write).toBe("o");
    });
  });
}
