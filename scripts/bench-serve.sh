#!/usr/bin/env bash
# The serve load benchmark of docs/BENCHMARKS.md, side by side in one run: the in-process batched
# eval (questions/s) and `foveate serve` under the load client at concurrency 1, 8 and 32
# (requests/s, p50/p99 latency), both on the shipped tiny model and easy-VQA, both at batch B,
# alternated REPS times; the machine's load before and after each step goes into the JSON.
#
#   bash scripts/bench-serve.sh [OUT.json]      (env: N=2000 questions/requests, B=32, REPS=2, BIN, LOAD)
#
# Needs: cargo build --release -p foveate-cli && cargo build --release -p foveate-serve --example load
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}; B=${B:-32}; REPS=${REPS:-2}
OUT=${1:-benches/results/serve-load-$(date -u +%Y-%m-%d).json}
BIN=${BIN:-target/release/foveate}; LOAD=${LOAD:-target/release/examples/load}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"; [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null || true' EXIT
MODEL=eval/models/easyvqa-tiny; DATA=eval/data/easy-vqa
load() { cut -d' ' -f1-3 /proc/loadavg; }
rows=()
for rep in $(seq "$REPS"); do
  l0=$(load)
  "$BIN" eval --task easy-vqa --model $MODEL --data $DATA --limit "$N" --batch-size "$B" -o "$TMP/inproc-$rep" --json > "$TMP/inproc-$rep.json"
  qps=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['questions_per_s'])" "$TMP/inproc-$rep.json")
  echo "rep $rep in-process eval batch $B: $qps q/s (load $l0)"
  rows+=("{\"rep\": $rep, \"kind\": \"in-process\", \"batch_size\": $B, \"questions\": $N, \"questions_per_s\": $qps, \"load_before\": \"$l0\", \"load_after\": \"$(load)\"}")
  l0=$(load)
  "$BIN" serve --model $MODEL --port 0 --batch-size "$B" --max-queue 1024 > "$TMP/serve-$rep.out" 2> "$TMP/serve-$rep.err" &
  SRV=$!
  for _ in $(seq 100); do grep -q http:// "$TMP/serve-$rep.out" 2>/dev/null && break; sleep 0.1; done
  url=$(grep -o 'http://[0-9.:]*' "$TMP/serve-$rep.out" | head -1)
  "$LOAD" --url "$url" --model easyvqa-tiny --data $DATA --concurrency 1,8,32 --requests "$N" --json "$TMP/load-$rep.json"
  kill "$SRV"; wait "$SRV" 2>/dev/null || true; SRV=
  rows+=("{\"rep\": $rep, \"kind\": \"serve\", \"batch_size\": $B, \"load\": $(cat "$TMP/load-$rep.json"), \"load_before\": \"$l0\", \"load_after\": \"$(load)\"}")
done
{
  echo "{\"date\": \"$(date -u +%FT%TZ)\", \"commit\": \"$(git rev-parse --short HEAD)\", \"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\", \"cores\": $(nproc),"
  echo " \"model\": \"$MODEL\", \"requests_per_level\": $N, \"runs\": ["
  (IFS=,; echo "${rows[*]}")
  echo "]}"
} | python3 -m json.tool > "$OUT"
echo "wrote $OUT"
