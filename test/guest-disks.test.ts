// The VM guest's decisions about its disks and mounts (src/guest/disks.ts), without a VM.
import { describe, expect, test } from "bun:test";
import { guestMounts, HEAD_BYTES, identifyDisk, MS_RDONLY, parseCmdline, planDisks, type Disk } from "../src/guest/disks";

function head(fill: (b: Uint8Array) => void): Uint8Array {
  const b = new Uint8Array(HEAD_BYTES);
  fill(b);
  return b;
}
const squashfs = head((b) => b.set([0x68, 0x73, 0x71, 0x73], 0));
const ext4 = head((b) => b.set([0x53, 0xef], 1024 + 0x38));
const blank = head(() => {});
const other = head((b) => b.set(new TextEncoder().encode("MZ some other filesystem"), 0));

describe("guest disks", () => {
  test("a disk is identified by its first bytes: squashfs, ext4, blank, or something else", () => {
    expect(identifyDisk(squashfs)).toBe("squashfs");
    expect(identifyDisk(ext4)).toBe("ext4");
    expect(identifyDisk(blank)).toBe("blank");
    expect(identifyDisk(other)).toBe("other");
    // A blank disk with one stray byte far in is not blank: formatting it could destroy something.
    expect(identifyDisk(head((b) => (b[HEAD_BYTES - 1] = 1)))).toBe("other");
  });

  const runtime: Disk = { device: "/dev/vdb", readOnly: true, content: "squashfs" };
  const cas = (content: Disk["content"]): Disk => ({ device: "/dev/vda", readOnly: false, content });

  test("the CAS disk is formatted when blank, mounted when ext4, whatever order the disks come in", () => {
    expect(planDisks([cas("blank"), runtime], false)).toEqual({ cas: { device: "/dev/vda", format: true }, runtime: "/dev/vdb" });
    expect(planDisks([runtime, cas("ext4")], false)).toEqual({ cas: { device: "/dev/vda", format: false }, runtime: "/dev/vdb" });
  });

  test("the host can ask for a format (actiond.format=1), even of a disk holding ext4 or something else", () => {
    expect(planDisks([cas("ext4"), runtime], true).cas.format).toBe(true);
    expect(planDisks([cas("other"), runtime], true).cas.format).toBe(true);
  });

  test("a CAS disk holding something else is refused, not formatted", () => {
    expect(() => planDisks([cas("other"), runtime], false)).toThrow(/the CAS disk \/dev\/vda holds something that is not ext4; refusing to format it/);
  });

  test("missing or extra disks are refused with what was found", () => {
    expect(() => planDisks([cas("blank")], false)).toThrow("expected one runtime disk (SquashFS), found 0: /dev/vda (blank)");
    expect(() => planDisks([runtime], false)).toThrow("expected one writable CAS disk, found 0: /dev/vdb (squashfs, read-only)");
    expect(() => planDisks([cas("ext4"), { ...cas("blank"), device: "/dev/vdc" }, runtime], false)).toThrow(/found 2/);
    expect(() => planDisks([], false)).toThrow(/found 0: no disks/);
  });

  test("the mount table: cgroup2, tmpfs /tmp and /run, the CAS read-write, the runtime read-only", () => {
    const mounts = guestMounts({ cas: { device: "/dev/vda", format: false }, runtime: "/dev/vdb" });
    expect(mounts.map((m) => [m.target, m.fstype, m.source])).toEqual([
      ["/sys/fs/cgroup", "cgroup2", "cgroup2"],
      ["/tmp", "tmpfs", "tmpfs"],
      ["/run", "tmpfs", "tmpfs"],
      ["/cas", "ext4", "/dev/vda"],
      ["/runtimes", "squashfs", "/dev/vdb"],
    ]);
    expect(mounts.find((m) => m.target === "/runtimes")!.flags & MS_RDONLY).toBe(MS_RDONLY);
    expect(mounts.find((m) => m.target === "/cas")!.flags & MS_RDONLY).toBe(0);
  });

  test("the kernel command line carries the host's instructions", () => {
    expect(parseCmdline("console=hvc0 init=/init quiet")).toEqual({ format: false, onWorkerExit: "restart", port: 8980, link: "vsock" });
    expect(parseCmdline("console=hvc0 actiond.format=1 actiond.worker=poweroff actiond.port=9000 actiond.link=serial\n")).toEqual({ format: true, onWorkerExit: "poweroff", port: 9000, link: "serial" });
    expect(() => parseCmdline("actiond.link=carrier-pigeon")).toThrow("actiond.link=carrier-pigeon: expected vsock or serial");
    expect(() => parseCmdline("actiond.worker=sometimes")).toThrow("actiond.worker=sometimes: expected restart or poweroff");
    expect(() => parseCmdline("actiond.port=x")).toThrow("actiond.port=x is not a port");
  });
});
