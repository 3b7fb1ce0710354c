//go:build tools

// Pins Buildbarn's bb_storage, a team cache for the upstream tier's tests (see ../build-peers.sh).
// Newer commits need more of the patches Buildbarn applies under Bazel; golang.org/x/sys is raised
// to v0.27.0 for the Fsconfig calls this one makes.
package tools

import _ "github.com/buildbarn/bb-storage/cmd/bb_storage"
