//go:build tools

// Pins remotetool (from remote-apis-sdks) as a test-only interop client; see build-tools.sh.
package tools

import _ "github.com/bazelbuild/remote-apis-sdks/go/cmd/remotetool"
