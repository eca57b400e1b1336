#!/bin/sh
# Runs libFuzzer targets for a fixed time each and prints a summary table.
#   test/fuzz/run.sh <build-dir> <seconds> <build-dir>/fuzz_<name>...
# Each target fuzzes a scratch copy of test/fuzz/corpus/<name> under
# <build-dir>/corpus/, so the repository's seeds stay as committed; crash
# inputs land in <build-dir>/artifacts/<name>/, logs in <build-dir>/logs/.
# Exits non-zero when any target crashed, leaked, timed out or printed a
# sanitizer report.
set -u

build=$1
seconds=$2
shift 2

# Inputs larger than this are never generated; seeds are much smaller.
max_len() {
    case $1 in
    watch) echo 16384 ;;
    kubeconfig | migparted | policy) echo 8192 ;;
    smi | yaml) echo 4096 ;;
    record) echo 2048 ;;
    strsel) echo 512 ;;
    *) echo 4096 ;;
    esac
}

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"

mkdir -p "$build/logs"
table="$build/logs/summary.txt"
printf '%-12s %12s %10s %8s  %s\n' target runs execs/s corpus result >"$table"
failed=0
for bin in "$@"; do
    name=${bin##*/fuzz_}
    corpus="$build/corpus/$name"
    artifacts="$build/artifacts/$name/"
    log="$build/logs/$name.log"
    rm -rf "$corpus"
    mkdir -p "$corpus" "$artifacts"
    if [ -d "test/fuzz/corpus/$name" ]; then
        cp test/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null
    fi
    echo "== fuzz $name (${seconds}s)"
    "$bin" -max_total_time="$seconds" -max_len="$(max_len "$name")" \
        -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -detect_leaks=1 -print_final_stats=1 \
        -artifact_prefix="$artifacts" "$corpus" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    size=$(ls "$corpus" | wc -l)
    result=ok
    if [ $rc -ne 0 ] ||
        grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
        result="FAIL (rc $rc, see $log)"
        failed=1
        grep -E 'ERROR:|runtime error:|SUMMARY:|Test unit written' "$log" | head -5
    fi
    printf '%-12s %12s %10s %8s  %s\n' "$name" "${runs:--}" "${speed:--}" \
        "$size" "$result" >>"$table"
done
echo
cat "$table"
exit $failed
