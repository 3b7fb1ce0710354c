#!/usr/bin/env bash
# Builds remotetool (the remote-apis-sdks CLI) into <repo>/.tools/bin for the e2e interop test.
# Uses the pinned module in this folder because `go install ...@version` fails on the proxy.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$repo/.tools/bin/remotetool"

# Rebuild only when the pin (go.sum) changed since the last build.
if [[ -x "$out" && "$out" -nt "$here/go.sum" ]]; then
  echo "remotetool is up to date: $out"
  exit 0
fi

mkdir -p "$(dirname "$out")"
cd "$here"
go build -o "$out" github.com/bazelbuild/remote-apis-sdks/go/cmd/remotetool
echo "built $out"
