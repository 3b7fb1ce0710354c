// mount(2), umount2(2) and clock_settime(2) for the VM guest's init, through bun:ffi (Node has none of them). The guest
// runs actiond on glibc, which the initramfs carries.
import { dlopen, FFIType, read } from "bun:ffi";
import type { Mount } from "./disks";

const MNT_DETACH = 2;
let libc: ReturnType<typeof open> | undefined;

function open() {
  return dlopen("libc.so.6", {
    mount: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    umount2: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    clock_settime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    strerror: { args: [FFIType.i32], returns: FFIType.cstring },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
}

const cstr = (s: string) => Buffer.from(`${s}\0`);

function failure(what: string): Error {
  const c = (libc ??= open());
  const errno = read.i32(c.symbols.__errno_location()!, 0);
  return new Error(`${what}: ${c.symbols.strerror(errno)}`);
}

export function mount(m: Mount): void {
  const c = (libc ??= open());
  const rc = c.symbols.mount(cstr(m.source), cstr(m.target), cstr(m.fstype), m.flags, m.data ? cstr(m.data) : null);
  if (rc !== 0) throw failure(`mount ${m.fstype} ${m.source} on ${m.target}`);
}

/** Unmounts `target` (true); if it is busy, detaches it, to go once unused (false). */
export function unmount(target: string): boolean {
  const c = (libc ??= open());
  if (c.symbols.umount2(cstr(target), 0) === 0) return true;
  if (c.symbols.umount2(cstr(target), MNT_DETACH) !== 0) throw failure(`umount ${target}`);
  return false;
}

const CLOCK_REALTIME = 0;

/** Sets the wall clock to `ms` since the epoch (struct timespec: 64-bit seconds and nanoseconds). */
export function setClock(ms: number): void {
  const c = (libc ??= open());
  const ts = Buffer.alloc(16);
  ts.writeBigInt64LE(BigInt(Math.floor(ms / 1000)), 0);
  ts.writeBigInt64LE(BigInt(Math.floor(ms % 1000) * 1_000_000), 8);
  if (c.symbols.clock_settime(CLOCK_REALTIME, ts) !== 0) throw failure("clock_settime");
}
