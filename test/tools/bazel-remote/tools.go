//go:build tools

// Pins bazel-remote, a team cache for the upstream tier's tests (see ../build-peers.sh). v1.3.3 is
// the newest release the module proxy serves (its v2 module path is refused there).
package tools

import _ "github.com/buchgr/bazel-remote"
