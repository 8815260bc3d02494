#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a fixed time, one after another, and prints the
# number of executions and the result of each.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     SECONDS per target (default 600); all targets if none named
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). Seeds are read
# from fuzz/corpus/<target> (committed, never written); new inputs go to fuzz/corpus-run/<target>
# and crashes to fuzz/artifacts/<target> (both git-ignored). Logs: $FUZZ_LOGS (default fuzz/logs).
# Builds without a sanitizer (the targets are safe Rust) but with debug assertions, so integer
# overflow is a crash. Exit status: non-zero when any target crashed, hung or ran out of memory.
set -euo pipefail

secs=${1:-600}
[ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
logs=${FUZZ_LOGS:-$root/fuzz/logs}
mkdir -p "$logs"
flags=(-s none --debug-assertions)

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build "${flags[@]}" >"$logs/build.log" 2>&1 || {
    echo "build failed; see $logs/build.log" >&2
    exit 1
}

failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus-run/$t"
    log="$logs/$t.log"
    set +e
    cargo +nightly fuzz run "${flags[@]}" "$t" "corpus-run/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    if [ $rc -eq 0 ]; then
        result=ok
    else
        result="FAILED (exit $rc; see $log and fuzz/artifacts/$t)"
        failed=1
    fi
    echo "$t: ${secs}s, ${execs:-?} execs, $result"
done
exit $failed
