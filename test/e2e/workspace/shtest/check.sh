#!/bin/sh
# Runs the C binary and checks the genrule-tool output, from the test's runfiles.
set -eu
hello="$1"
shout="$2"
out="$("$hello")"
[ "$out" = "hello from c" ] || { echo "hello printed: $out" >&2; exit 1; }
[ "$(cat "$shout")" = "HELLO FROM A TOOL" ] || { echo "shout.txt is: $(cat "$shout")" >&2; exit 1; }
echo PASS
