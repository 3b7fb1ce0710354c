#!/usr/bin/env bash
# Builds the native helpers: bash shim/build.sh [OUTDIR]  ->  OUTDIR/actiond-sandbox, actiond-vsock-relay,
# actiond-guest-init (the VM guest's /init)
# OUTDIR defaults to build/shim under the repository root. Compiler: `zig cc` when zig is on PATH
# (or `python3 -m ziglang cc` when that module is installed), else $CC, else cc. ACTIOND_SHIM_TARGET
# (e.g. aarch64-linux-musl) is passed to zig as -target. Static when the toolchain can link it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../build/shim}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if command -v zig >/dev/null 2>&1; then
  cc=(zig cc)
elif python3 -c 'import ziglang' >/dev/null 2>&1; then
  cc=(python3 -m ziglang cc)
else
  cc=("${CC:-cc}")
fi
if [[ -n "${ACTIOND_SHIM_TARGET:-}" ]]; then
  [[ "${cc[0]}" != "${CC:-cc}" ]] || { echo "shim/build.sh: ACTIOND_SHIM_TARGET needs zig" >&2; exit 1; }
  cc+=(-target "$ACTIOND_SHIM_TARGET")
fi

# No __DATE__, no debug info (so no build paths): the same sources give the same binary.
cflags=(-std=c11 -D_GNU_SOURCE -O2 -D_FORTIFY_SOURCE=2 -Wall -Wextra -Werror -fno-ident)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# macOS: only the Virtualization.framework shim, a dylib for bun:ffi (blocks for its completion handlers).
if [[ "${ACTIOND_SHIM_TARGET:-}" == *macos* ]]; then
  # A fixed install name: the default is the output path, a temporary folder.
  # -Wl,-S: no debug stabs, which name the object file by a path that differs between checkouts.
  "${cc[@]}" -shared -fblocks -std=c11 -O2 -Wall -Wextra -Werror -fno-ident -Wl,-install_name,@rpath/libactiond-vz.dylib -Wl,-S \
    -o "$work/libactiond-vz.dylib" "$here/vz.c"
  mv -f "$work/libactiond-vz.dylib" "$out/"
  exit 0
fi

# Link statically if the toolchain can (glibc's libc.a, musl), else dynamically.
link() {
  local out="$1"; shift
  if ! "${cc[@]}" -s -static -o "$out" "$@" 2>"$work/static.log"; then
    "${cc[@]}" -s -o "$out" "$@"
  fi
}
for src in sandbox.c remove-tree.c vsock-relay.c serial-mux.c guest-init.c utils.c; do
  "${cc[@]}" "${cflags[@]}" -c -o "$work/${src%.c}.o" "$here/$src"
done
link "$work/actiond-sandbox" "$work/sandbox.o" "$work/remove-tree.o" "$work/utils.o"
link "$work/actiond-vsock-relay" "$work/vsock-relay.o" "$work/serial-mux.o" "$work/utils.o"
link "$work/actiond-guest-init" "$work/guest-init.o"
mv -f "$work/actiond-sandbox" "$work/actiond-vsock-relay" "$work/actiond-guest-init" "$out/"
