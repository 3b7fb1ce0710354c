#!/usr/bin/env bash
# Builds the sandbox helper: bash shim/build.sh [OUTDIR]  ->  OUTDIR/actiond-sandbox
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

# Compile once; link statically if the toolchain can (glibc's libc.a, musl), else dynamically.
objs=()
for src in sandbox.c utils.c; do
  "${cc[@]}" "${cflags[@]}" -c -o "$work/${src%.c}.o" "$here/$src"
  objs+=("$work/${src%.c}.o")
done
if ! "${cc[@]}" -s -static -o "$work/actiond-sandbox" "${objs[@]}" 2>"$work/static.log"; then
  "${cc[@]}" -s -o "$work/actiond-sandbox" "${objs[@]}"
fi
mv -f "$work/actiond-sandbox" "$out/actiond-sandbox"
