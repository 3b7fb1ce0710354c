#!/bin/sh
# Dev container feature installer: runs as root while the image is built. It fetches the release's
# install.sh and lets it install actiond to /usr/local/bin (checksum checked there), installs
# unsquashfs (a container's root cannot mount the runtime image, so actiond unpacks it once), and
# prepares /var/lib/actiond, where the feature mounts a volume for actiond's store (a volume, because
# rootless sandboxes cannot stack their overlay on the container's own overlay filesystem).
# Options arrive as environment variables: VERSION ("latest" or e.g. 0.1.0), FROM (a folder or URL
# holding the release files; empty: the GitHub release).
set -eu

version="${VERSION:-latest}"
from="${FROM:-}"
prefix="${_ACTIOND_PREFIX:-/usr/local}" # tests install elsewhere and skip the system changes

if [ -z "$from" ]; then
  if [ "$version" = latest ]; then from="https://github.com/actiond/actiond/releases/latest/download"
  else from="https://github.com/actiond/actiond/releases/download/v$version"; fi
fi

if [ -d "$from" ]; then
  installer="$from/install.sh"
else
  command -v curl >/dev/null 2>&1 || { echo "actiond feature: curl is needed (add it to the image first)" >&2; exit 1; }
  installer="$(mktemp)"
  trap 'rm -f "$installer"' EXIT
  curl -fsSL -o "$installer" "$from/install.sh"
fi
sh "$installer" --from "$from" --prefix "$prefix"

if [ -z "${_ACTIOND_PREFIX:-}" ]; then
  if ! command -v unsquashfs >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends squashfs-tools >/dev/null
    else
      echo "actiond feature: install unsquashfs (squashfs-tools) in the image; actiond needs it to unpack its runtime here" >&2
    fi
  fi
  # A new volume takes this folder's owner: the user who will run actiond serve.
  mkdir -p /var/lib/actiond
  chown "${_REMOTE_USER:-root}:" /var/lib/actiond || echo "actiond feature: could not give /var/lib/actiond to ${_REMOTE_USER:-root}; actiond serve needs to write there" >&2
fi
echo "actiond feature: run \`actiond doctor\` in the container to see what its sandbox can do, then \`actiond serve\`"
