#!/usr/bin/env bash
# Builds the real peers the e2e suites talk to into <repo>/.tools/bin, each from its pin here:
#   remotetool    (remote-apis-sdks' CLI)  go.mod in this folder
#   bazel-remote  (a team cache)           bazel-remote/go.mod
#   bb_storage    (Buildbarn's storage)    bb-storage/go.mod
#   vhost-device-vsock (rust-vmm)          VHOST_DEVICE_VSOCK below, from crates.io with its own Cargo.lock
# Pinned modules rather than `go install ...@version`, which fails on the proxy. GOSUMDB is off
# because the checksum database does not know some of these versions: each go.sum is the pin.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="$repo/.tools/bin"
mkdir -p "$bin"
export GOSUMDB=off GOFLAGS=-mod=readonly

# Rebuilds out from pkg in dir only when the pin (dir/go.sum) changed since the last build.
build() {
  local dir="$1" pkg="$2" out="$bin/$3"
  if [[ -x "$out" && "$out" -nt "$dir/go.sum" ]]; then
    echo "$3 is up to date: $out"
    return
  fi
  (cd "$dir" && go build -o "$out" "$pkg")
  echo "built $out"
}

build "$here" github.com/bazelbuild/remote-apis-sdks/go/cmd/remotetool remotetool
build "$here/bazel-remote" github.com/buchgr/bazel-remote bazel-remote

# bb_storage is built with Bazel upstream, which adds two things plain Go lacks: a stylesheet its
# status page embeds (generated; an empty one here), and generated gRPC code whose Register
# functions take grpc.ServiceRegistrar (Buildbarn patches them). Both are applied to a vendored
# copy in a scratch folder; the module cache is left alone.
out="$bin/bb_storage"
if [[ -x "$out" && "$out" -nt "$here/bb-storage/go.sum" ]]; then
  echo "bb_storage is up to date: $out"
else
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  cp "$here/bb-storage/go.mod" "$here/bb-storage/go.sum" "$here/bb-storage/tools.go" "$scratch/"
  (
    cd "$scratch"
    # `go mod vendor` stops short of nothing but complains about the missing embed; the check is the build.
    go mod vendor 2>&1 | grep -v 'pattern stylesheet.css' || true
    : > vendor/github.com/buildbarn/bb-storage/pkg/otel/stylesheet.css
    grep -rlE 'func Register[A-Za-z]+Server\(s \*grpc\.Server,' vendor | xargs sed -i -E 's/func (Register[A-Za-z]+Server)\(s \*grpc\.Server,/func \1(s grpc.ServiceRegistrar,/'
    go build -mod=vendor -o "$out" github.com/buildbarn/bb-storage/cmd/bb_storage
  )
  echo "built $out"
fi

# vhost-device-vsock: QEMU's virtio-vsock device through vhost-user, which the VM suites' vsock
# transport needs (no /dev/vhost-vsock on these machines). --locked builds it with the Cargo.lock
# it was published with.
VHOST_DEVICE_VSOCK=0.3.0
out="$bin/vhost-device-vsock"
if [[ -x "$out" ]] && "$out" --version | grep -qF "$VHOST_DEVICE_VSOCK"; then
  echo "vhost-device-vsock is up to date: $out"
else
  cargo install --quiet --locked --version "$VHOST_DEVICE_VSOCK" --root "$repo/.tools" vhost-device-vsock
  echo "built $out"
fi
