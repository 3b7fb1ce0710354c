// The VM guest's decisions about its disks and mounts (src/guest/disks.ts), without a VM.
import { describe, expect, test } from "bun:test";
import { guestMounts, HEAD_BYTES, identifyDisk, MS_RDONLY, planDisks, type Disk } from "../src/guest/disks";
import { guestKernelCmdline, parseGuestCmdline } from "../src/core";

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
    expect(planDisks([cas("blank"), runtime])).toEqual({ cas: { device: "/dev/vda", format: true }, runtime: "/dev/vdb" });
    expect(planDisks([runtime, cas("ext4")])).toEqual({ cas: { device: "/dev/vda", format: false }, runtime: "/dev/vdb" });
  });

  test("a CAS disk holding something else is refused, not formatted", () => {
    expect(() => planDisks([cas("other"), runtime])).toThrow(/the CAS disk \/dev\/vda holds something that is not ext4; refusing to format it/);
  });

  test("missing or extra disks are refused with what was found", () => {
    expect(() => planDisks([cas("blank")])).toThrow("expected one runtime disk (SquashFS), found 0: /dev/vda (blank)");
    expect(() => planDisks([runtime])).toThrow("expected one writable CAS disk, found 0: /dev/vdb (squashfs, read-only)");
    expect(() => planDisks([cas("ext4"), { ...cas("blank"), device: "/dev/vdc" }, runtime])).toThrow(/found 2/);
    expect(() => planDisks([])).toThrow(/found 0: no disks/);
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

  test("the kernel command line carries the host's choices, as each host writes it", () => {
    expect(parseGuestCmdline("console=hvc0 init=/init quiet")).toEqual({ port: 8980, link: "vsock" });
    const qemu = guestKernelCmdline("ttyS0", { off: "reboot", port: 9000, link: "serial" });
    expect(qemu).toBe("console=ttyS0 init=/init panic=-1 actiond.off=reboot actiond.port=9000 actiond.link=serial");
    expect(parseGuestCmdline(`${qemu}\n`)).toEqual({ port: 9000, link: "serial" });
    expect(parseGuestCmdline(guestKernelCmdline("hvc0", { off: "poweroff", port: 8980, link: "vsock" }))).toEqual({ port: 8980, link: "vsock" });
    expect(() => parseGuestCmdline("actiond.link=carrier-pigeon")).toThrow("actiond.link=carrier-pigeon: expected vsock or serial");
    expect(() => parseGuestCmdline("actiond.port=x")).toThrow("actiond.port=x is not a port");
    // The host's clock, for a guest without a real-time clock.
    const timed = guestKernelCmdline("hvc0", { off: "poweroff", port: 8980, link: "vsock", time: 1_796_000_000.7 });
    expect(timed).toEndWith(" actiond.time=1796000000");
    expect(parseGuestCmdline(timed)).toEqual({ port: 8980, link: "vsock", time: 1_796_000_000 });
    expect(() => parseGuestCmdline("actiond.time=soon")).toThrow("actiond.time=soon is not a time (Unix seconds)");
  });
});
