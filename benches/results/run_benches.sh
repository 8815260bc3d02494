#!/usr/bin/env bash
# The criterion suites of docs/BENCHMARKS.md, summarised as foveate-bench/1 files and charts.
#
# Usage (from the repository root): benches/results/run_benches.sh [quick|full] [SUITE...]
#   quick: FOVEATE_BENCH_QUICK=1 (shorter timings, fewer shapes, f32 only, 2-layer e2e models)
#   SUITE: attention kernels e2e gemm_cpu (default: all four)
# Writes benches/results/criterion-SUITE-BACKEND-DATE.json (one file per suite and backend) and
# benches/results/attention-BACKEND-DATE{-gflops,-gbps}.{svg,png}. The load average before and after
# each suite goes into the files' host.note (the machine may be shared).
set -euo pipefail
MODE="${1:-full}"
shift || true
if [ $# -gt 0 ]; then SUITES=("$@"); else SUITES=(attention kernels e2e gemm_cpu); fi
DATE="$(date -u +%Y-%m-%d)"
OUT="${FOVEATE_RESULTS_DIR:-benches/results}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
if [ "$MODE" = quick ]; then export FOVEATE_BENCH_QUICK=1; else unset FOVEATE_BENCH_QUICK; fi
LOGS="$CARGO_TARGET_DIR/bench-logs"
mkdir -p "$LOGS"
cargo build --release -p foveate-cli -p foveate-benches --bins
FOVEATE="$CARGO_TARGET_DIR/release/foveate"
COLLECT="$CARGO_TARGET_DIR/release/foveate-bench-collect"
load() { cut -d' ' -f1-3 /proc/loadavg; }
for s in "${SUITES[@]}"; do
  # Only this run's results: criterion keeps every case it ever ran.
  rm -rf "$CARGO_TARGET_DIR/criterion"
  before="$(load)"; t0=$(date +%s)
  cargo bench -p foveate-benches --bench "$s" > "$LOGS/$s.log" 2>&1
  after="$(load)"; t1=$(date +%s)
  note="$MODE run of cargo bench --bench $s, $((t1 - t0)) s wall; load average (1, 5, 15 min) $before before, $after after"
  echo "$note"
  echo "$(grep -c '^bench: skip' "$LOGS/$s.log" || true) cases skipped, each with its reason, in $LOGS/$s.log"
  # gemm_cpu compares cpu, cpu-oracle and a host loop: one file, no backend filter.
  if [ "$s" = gemm_cpu ]; then backends=(all); else backends=(cpu wgpu); fi
  for be in "${backends[@]}"; do
    if [ "$be" = all ]; then f="$OUT/criterion-$s-$DATE.json"; filter=(); else f="$OUT/criterion-$s-$be-$DATE.json"; filter=(--backend "$be"); fi
    if "$COLLECT" "${filter[@]}" --note "$note" --out "$f" 2>/dev/null && grep -q '"workload"' "$f"; then
      echo "wrote $f"
      if [ "$s" = attention ]; then
        "$FOVEATE" compare "$f" --out /dev/null --chart "$OUT/attention-$be-$DATE" \
          --chart-only "vit-b16-none,qwen2-causal,qwen2-decode"
      fi
    else
      rm -f "$f"
    fi
  done
done
