// The one mountinfo parser (src/core/mountinfo.ts): fields after the optional ones, paths unescaped.
import { describe, expect, test } from "bun:test";
import { mountAt, mountHolding, parseMountinfo, readMounts } from "../../src/core";

const SAMPLE = [
  "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda rw",
  "35 22 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec shared:9 master:3 - cgroup2 cgroup2 rw",
  "40 22 0:35 / /mnt/with\\040space\\011tab rw - tmpfs tmpfs rw",
  "41 40 7:0 / /mnt/with\\040space\\011tab/inner ro - squashfs /dev/loop0 ro",
  "42 40 0:36 / /mnt/with\\040space\\011tab rw - overlay overlay rw,lowerdir=/a",
  "",
].join("\n");

describe("mountinfo", () => {
  test("each line's mount point, type and source, with \\040-style escapes undone", () => {
    const mounts = parseMountinfo(SAMPLE);
    expect(mounts.map((m) => [m.mountPoint, m.fsType, m.source])).toEqual([
      ["/", "ext4", "/dev/vda"],
      ["/sys/fs/cgroup", "cgroup2", "cgroup2"],
      ["/mnt/with space\ttab", "tmpfs", "tmpfs"],
      ["/mnt/with space\ttab/inner", "squashfs", "/dev/loop0"],
      ["/mnt/with space\ttab", "overlay", "overlay"],
    ]);
  });

  test("the mount at a point is the topmost; the mount holding a path is the longest point above it", () => {
    const mounts = parseMountinfo(SAMPLE);
    expect(mountAt("/mnt/with space\ttab", mounts)?.fsType).toBe("overlay");
    expect(mountAt("/mnt", mounts)).toBeUndefined();
    expect(mountHolding("/mnt/with space\ttab/inner/x", mounts)?.fsType).toBe("squashfs");
    expect(mountHolding("/mnt/with space\ttab/other", mounts)?.fsType).toBe("overlay");
    expect(mountHolding("/etc/hosts", mounts)?.fsType).toBe("ext4");
  });

  test("this process's own table has its root and /proc", () => {
    const mine = readMounts();
    expect(mountHolding("/", mine)).toBeDefined();
    expect(mountAt("/proc", mine)?.fsType).toBe("proc");
  });
});
