#!/bin/sh
echo "coverage is not supported in the actiond e2e workspace (stand-in for @remote_coverage_tools)" >&2
exit 0
