#!/usr/bin/env bash
# make bench: prints the figures of BENCHMARKS.md, measured on this machine.
# The fleet benchmarks bring up a 5,000-node and a 1,000-node test bed; that
# takes a while on two cores. Sizes: BENCH_NODES, BENCH_ROLLOUT_NODES,
# BENCH_ROLLOUT_BATCH, BENCH_HW_MS, BENCH_DRAIN_RUNS; BENCH_CONTROLLER_QPS;
# BENCH_RUN picks the fleet benchmarks (a go test -run pattern). Exits
# non-zero when a benchmark fails.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/build/bench"
mkdir -p "$out"
results="$out/results-$(date +%Y%m%d-%H%M%S).md"
echo "# make bench, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores" >"$results"
echo >>"$results"

echo "== watch decode and node cache memory (build/tools/benchdecode)"
{
	echo "### Watch decoding (one core, in process)"
	echo
	"$root/build/tools/benchdecode" "$root/test/fixtures/nodes/gpu-node.json" 5000 4
	echo
} | tee -a "$results"

echo "== fleet benchmarks on the test bed"
# /usr/local/go first: scripts/deps.sh puts a Go there when the one on
# PATH is too old (Debian 12's 1.19) to fetch the version go.mod names.
if [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
"$root/e2e/testbed" help >/dev/null
(cd "$root/e2e" && go build -o "$root/build/e2e/bin/informer-peer" ./cmd/informer-peer)
cd "$root/e2e"
rc=0
TESTBED_NO_BUILD=1 GPUMODE_E2E=1 GPUMODE_BENCH=1 BENCH_OUT="$results" \
	go test -count=1 -timeout 120m -run "${BENCH_RUN:-TestBench}" -v ./tests/ |
	{ grep -v '^=== \|^    bench_test' || true; } || rc=$?
echo
echo "results: $results"
exit "$rc"
