#!/usr/bin/env bash
# Runs the e2e module's tests: unit tests of every package and, with
# GPUMODE_E2E=1, the end-to-end tests that bring test beds up and down.
# Exits non-zero on any failure. Extra arguments go to `go test`
# (e.g. -run TestSmoke -v).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# /usr/local/go first: scripts/deps.sh puts a Go there when the one on
# PATH is too old (Debian 12's 1.19) to fetch the version go.mod names.
if [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
cd "$here"
start=$(date +%s)
# Build the multi-call binary (and the fake nvidia-smi) once, up front.
"$here/testbed" help >/dev/null 2>&1 || "$here/testbed" help
echo "e2e: testbed binary ready after $(( $(date +%s) - start ))s"
export TESTBED_NO_BUILD=1 GPUMODE_E2E=1
go vet ./...
go test -count=1 -timeout "${E2E_TIMEOUT:-35m}" "$@" ./...
echo "e2e: done in $(( $(date +%s) - start ))s"
