#!/usr/bin/env bash
# The CPU-vs-PyTorch comparison of docs/BENCHMARKS.md: 2 threads, f32, same machine, one run.
# foveate and PyTorch alternate workload by workload so both see the same machine load.
# Usage: benches/results/run_cpu_vs_torch.sh [REPS]   (from the repository root)
set -euo pipefail
REPS="${1:-3}"
DATE="$(date -u +%Y-%m-%d)"
OUT=benches/results
FOVEATE="${FOVEATE:-target/release/foveate}"
export RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2
uptime
"$FOVEATE" bench --model vit-b16 --threads 2 -r "$REPS" -o json --out "$OUT/.f-vit.json"
python3 eval/tools/torch_baseline.py --threads 2 -r "$REPS" --only vit-b16 -o "$OUT/.t-vit.json"
"$FOVEATE" bench --model qwen2-0.5b --threads 2 -p 256 -n 32 -r "$REPS" -o json --out "$OUT/.f-qwen.json"
python3 eval/tools/torch_baseline.py --threads 2 -r "$REPS" --only qwen2-0.5b -p 256 -n 32 -o "$OUT/.t-qwen.json"
uptime
# One file per tool (rows of both runs).
python3 - "$OUT" "$DATE" <<'PY'
import json, sys
out, date = sys.argv[1], sys.argv[2]
for tool, parts, name in [("f", ["vit", "qwen"], f"cpu-{date}.json"), ("t", ["vit", "qwen"], f"torch-cpu-{date}.json")]:
    files = [json.load(open(f"{out}/.{tool}-{p}.json")) for p in parts]
    merged = files[0]
    for f in files[1:]:
        merged["rows"] += f["rows"]
    json.dump(merged, open(f"{out}/{name}", "w"), indent=1)
    print("wrote", f"{out}/{name}")
PY
rm -f "$OUT"/.f-*.json "$OUT"/.t-*.json
"$FOVEATE" compare "$OUT/torch-cpu-$DATE.json" "$OUT/cpu-$DATE.json" --out "$OUT/compare-cpu-torch-$DATE.md"
cat "$OUT/compare-cpu-torch-$DATE.md"
