// serve-vm through real virtio-vsock, as Virtualization.framework provides it: QEMU's
// vhost-user-vsock-pci device served by rust-vmm's vhost-device-vsock (pinned in test/tools/), its
// guest ports reached through one Unix socket (CONNECT <port>). The guest runs its relay in vsock
// mode (AF_VSOCK listeners), exactly the path a Mac uses; the serial multiplexer is not involved.
// For each guest architecture: a Bazel 4.2.3 build started as serve-vm starts, every action in the
// guest, outputs equal to a local build's; an http_archive through the guest's Remote Asset API,
// downloaded by the host over a vsock connection the guest opens; then a clean shutdown asked on the
// control port.
//
// Needs .tools/bin/vhost-device-vsock (bash test/tools/build-tools.sh), QEMU and the guests (npm
// run build -- --all --vm); skipped without them unless ACTIOND_REQUIRE_VM=1.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { join } from "node:path";
import { REPO, startServer, tempDir, type ServerProcess } from "../support/server";
import type { VmState } from "../../src/core";
import { BazelWorkspace, COMMON_FLAGS, removeBazelTree, processSummary, skipWithoutBazel, snapshot } from "./bazel";
import { expectAssetBuild } from "./scenarios";

const VHOST = join(REPO, ".tools/bin/vhost-device-vsock");
const REQUIRED = process.env.ACTIOND_REQUIRE_VM === "1";
const ARCHES = [
  { arch: "x86_64", qemu: "qemu-system-x86_64", targets: ["//..."] },
  // Not C++ there: see bazel-vm-arm64.test.ts.
  { arch: "aarch64", qemu: "qemu-system-aarch64", targets: ["--", "//...", "-//cc/...", "-//shtest/..."] },
];
const SKIP_BAZEL = skipWithoutBazel("vsock e2e") || process.arch !== "x64";

for (const { arch, qemu, targets } of ARCHES) {
  const have = existsSync(VHOST) && !!Bun.which(qemu) && existsSync(join(REPO, "build/vm", `kernel-${arch}`));
  if (!have && !REQUIRED) console.warn(`SKIP vsock e2e (${arch}): .tools/bin/vhost-device-vsock, ${qemu} or the ${arch} guest is missing`);
  const SKIP = SKIP_BAZEL || (!have && !REQUIRED);

  describe.skipIf(SKIP)(`serve-vm --vm-transport vsock, ${arch} guest`, () => {
    const tmp = SKIP ? "" : tempDir(`actiond-e2e-vsock-${arch}-`);
    let server: ServerProcess | undefined;
    afterAll(async () => {
      await server?.stop();
      removeBazelTree(tmp);
    });

    test("a build started as serve-vm starts runs every action in the guest over vsock, with a local build's outputs; an http_archive comes through the host; it stops cleanly over vsock", async () => {
      const root = join(tmp, "root");
      server = await startServer({
        root,
        subcommand: "serve-vm",
        args: ["--hypervisor", "qemu", "--accel", "tcg", "--arch", arch, "--vm-transport", "vsock", "--cpus", "2", "--cas-image-size-mib", "2048"],
        env: { PATH: `${join(REPO, ".tools/bin")}:${process.env.PATH}` },
        startTimeoutMs: 300_000,
        readyPattern: /listening on [^\s]+:(\d+); connections wait/,
      });
      const w = new BazelWorkspace(tmp);
      const flagsThenTargets = (flags: string[]) => [...flags, ...targets];
      const local = processSummary(await w.run(flagsThenTargets(["build", "--spawn_strategy=standalone", ...COMMON_FLAGS])));
      const localFiles = snapshot(realpathSync(join(w.ws, "bazel-bin")));
      await w.run(["clean"]);
      const out = await w.run(
        flagsThenTargets(["build", `--remote_executor=grpc://${server.address}`, "--spawn_strategy=remote", "--genrule_strategy=remote", "--remote_local_fallback=false", "--remote_timeout=120", ...COMMON_FLAGS]),
        () => `--- server log ---\n${server!.log()}`,
      );
      const built = processSummary(out);
      console.log(`local build:       ${local.line}\n${arch} over vsock: ${built.line}`);
      const actions = built.total - (built.kinds["internal"] ?? 0);
      expect(actions).toBeGreaterThanOrEqual(8);
      expect(built.kinds["remote"]).toBe(actions);
      expect(snapshot(realpathSync(join(w.ws, "bazel-bin")))).toEqual(localFiles);

      const vm = (await (await fetch(`http://${server.address}/api/vm`)).json()) as VmState;
      expect(vm.state).toBe("ready");
      expect(vm.how).toEndWith(", vsock");
      // No serial multiplexer: the streams came over virtio-vsock.
      expect(existsSync(join(root, "vm/mux.sock"))).toBe(false);
      // The guest's own connections out, to the host's download service, go over vsock too.
      await expectAssetBuild(tmp, server);
      expect(server.log().split("\n").filter((l) => / (WARN|ERROR) /.test(l))).toEqual([]);

      // The shutdown request goes over the control port, a vsock port too.
      expect(await server.stop()).toBe(0);
      server = undefined;
      expect(readFileSync(join(root, "vm/console.log"), "utf8")).toContain("actiond guest: disks unmounted");
    }, 900_000);
  });
}
