#!/bin/sh
# Installs actiond, one executable, for this machine:
#   curl -fsSL https://github.com/actiond/actiond/releases/latest/download/install.sh | sh
#   curl -fsSL …/install.sh | sh -s -- --prefix /usr/local
# It downloads actiond-<os>-<arch> and its .sha256, checks the sum, and only then installs.
set -eu

usage() {
  cat <<'USAGE'
Usage: install.sh [--prefix DIR] [--from DIR|URL] [--version V]
  --prefix DIR     install DIR/bin/actiond (default: ~/.local, so ~/.local/bin/actiond)
  --from DIR|URL   where the release files are: a local folder (offline) or a URL
                   (default: $ACTIOND_RELEASE_URL, else the latest release)
  --version V      a given release, e.g. 0.1.0 (default: the latest)
USAGE
}

prefix="${HOME:-}/.local"
from="${ACTIOND_RELEASE_URL:-}"
version=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
    --from) from="${2:?--from needs a folder or URL}"; shift 2 ;;
    --version) version="${2:?--version needs a version}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
fail() { echo "install.sh: $*" >&2; exit 1; }

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) fail "actiond runs on Linux and macOS; this is $(uname -s)" ;;
esac
machine="$(uname -m)"
# A shell under Rosetta says x86_64 on Apple silicon; the hardware says what it is.
if [ "$os" = darwin ] && [ "$(sysctl -n hw.optional.arm64 2>/dev/null)" = 1 ]; then machine=arm64; fi
case "$machine" in
  x86_64|amd64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) fail "no actiond build for this processor ($machine)" ;;
esac
[ "$os-$arch" != darwin-x64 ] || fail "on macOS actiond needs Apple silicon (its Linux guest is arm64)"
name="actiond-$os-$arch"

if [ -z "$from" ]; then
  if [ -n "$version" ]; then from="https://github.com/actiond/actiond/releases/download/v$version"
  else from="https://github.com/actiond/actiond/releases/latest/download"; fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
fetch() { # fetch FILE: copies or downloads $from/FILE into $work/FILE
  if [ -d "$from" ]; then
    [ -f "$from/$1" ] || fail "$from/$1 does not exist"
    cp "$from/$1" "$work/$1"
  elif command -v curl >/dev/null 2>&1; then
    curl -fsSL -o "$work/$1" "$from/$1" || fail "could not download $from/$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$work/$1" "$from/$1" || fail "could not download $from/$1"
  else
    fail "need curl or wget to download $from/$1"
  fi
}
sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
  else fail "need sha256sum or shasum to check the download"; fi
}

echo "install.sh: fetching $name from $from"
fetch "$name"
fetch "$name.sha256"
expected="$(cut -d' ' -f1 "$work/$name.sha256")"
actual="$(sha256 "$work/$name")"
[ "$expected" = "$actual" ] || fail "checksum mismatch for $name: expected $expected, got $actual; nothing was installed"

chmod 755 "$work/$name"
if [ "$os" = darwin ]; then
  # serve-vm needs the virtualization entitlement; an ad-hoc signature carries it.
  fetch actiond.entitlements
  if command -v codesign >/dev/null 2>&1; then
    codesign --force --sign - --entitlements "$work/actiond.entitlements" "$work/$name" || fail "codesign failed; nothing was installed"
  else
    echo "install.sh: codesign not found: serve-vm will not start until you sign actiond with actiond.entitlements" >&2
  fi
fi
mkdir -p "$prefix/bin"
# Copy beside the target, then rename: a running actiond is never overwritten in place.
cp "$work/$name" "$prefix/bin/.actiond.new.$$"
mv -f "$prefix/bin/.actiond.new.$$" "$prefix/bin/actiond"
echo "install.sh: installed $("$prefix/bin/actiond" version | head -n 1) to $prefix/bin/actiond"
case ":${PATH:-}:" in
  *":$prefix/bin:"*) ;;
  *) echo "install.sh: $prefix/bin is not on your PATH; add it, e.g. in ~/.profile: export PATH=\"$prefix/bin:\$PATH\"" ;;
esac
echo "install.sh: next: actiond doctor (what this machine allows), then actiond serve"
