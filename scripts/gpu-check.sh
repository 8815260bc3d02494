#!/usr/bin/env bash
# The GPU session kit (issue #17): everything that needs a real GPU, in one command bounded to
# 8 minutes, run on the lent machine from a release `foveate` built elsewhere (that machine has
# no Rust). Prepare here with scripts/gpu-prepare.sh, which prints the exact device command.
#
#   bash scripts/gpu-check.sh [--bin .bin/foveate] [--cache .bin/cuda-cache] [--out DIR]
#   bash scripts/gpu-check.sh --dry-run --bin target/debug/foveate --out /tmp/kit   (CPU, tiny shapes; CI)
#
# Steps, in order, each bounded by `timeout` and each leaving its verdict (steps/NN-NAME.json)
# and its files (steps/NN-NAME/) even when a later one fails:
#   info             foveate info --json, nvidia-smi, the load average
#   selftest         the correctness matrix on cuda: full shapes, every variant, f32/f16/bf16,
#                    one op family per process (--isolate) so one sticky fault cannot hide the rest
#   device-vs-device selftest --reference naive --size full (each fast kernel vs the device's naive one)
#   fault            a planted out-of-bounds launch under FOVEATE_CUDA_SYNC=1: named op, next case runs
#   parity           the HF golden fixtures through `foveate run` (ids, greedy tokens, logits)
#   easy-vqa         the shipped model on 1,000 easy-VQA questions, answers against PyTorch's
#   memcheck         compute-sanitizer memcheck over a reduced selftest (skipped with a reason if absent)
#   racecheck        compute-sanitizer racecheck over the shared-memory kernels
#   selftest-wgpu    the matrix on wgpu through Vulkan on the GPU (loaders carried in .gl/)
#   torch            eval/tools/torch_baseline.py --device cuda: SDPA, matmul, GELU MLP, ViT, Qwen2
#   roofline         foveate bench --roofline: peak GEMM, copy bandwidth, each kernel's fraction
#   e2e              foveate bench on vit-b16 and qwen2-0.5b (f32, bf16), for the ratios vs PyTorch
#   wgpu-bench       the roofline and a decode on wgpu (Vulkan on the GPU)
#   counters         host syncs (cuda) / submits (wgpu) per decode step = 1, allocations = 0
#   cache            nothing was compiled on the device (the carried kernel cache served every kernel)
# then one summary table (pass/fail counts, ratios vs PyTorch, fractions of peak).
#
# --dry-run runs the same steps on the CPU backend (wgpu on lavapipe where it applies) with tiny
# shapes in well under two minutes; steps that need CUDA, compute-sanitizer or PyTorch are skipped
# with the reason printed. A step whose CLI flag does not exist yet is "skip: needs <flag>".
#
# Budget: each step has a share (printed at the start); a step may use its share plus whatever
# earlier steps left unused, never the shares of the steps after it, so the whole run stays within
# --budget (default 480 s; 180 s for --dry-run). A step killed at its cap is "timeout".
#
# Output: --out DIR, default $OUT (the device tool's folder). When the output is $OUT (or --pack),
# the per-step files go to a scratch folder and DIR receives only summary.json, summary.md,
# gpu-kit.tar.gz (everything) and gpu-check.log, refreshed after every step: the device tool
# brings back at most 8 files. `python3 scripts/gpu_kit.py collect DIR` files a run under
# benches/results/.
#
# Exit: 0 when every step that ran passed (skips allowed), 1 when a correctness step failed or
# timed out, 2 when only benchmark steps did; 64 on bad usage.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
KIT_PY="$HERE/gpu_kit.py"

# name, kind, share of the real run (s), share of the dry run (s). The real shares add up to 480.
STEP_TABLE="
info             correctness 10  6
selftest         correctness 80  15
device-vs-device correctness 50  15
fault            correctness 10  3
parity           correctness 30  30
easy-vqa         correctness 20  10
memcheck         correctness 35  3
racecheck        correctness 35  3
selftest-wgpu    correctness 35  30
torch            perf        60  10
roofline         perf        45  15
e2e              perf        40  20
wgpu-bench       perf        25  15
counters         correctness 3   3
cache            perf        2   2
"

die() { echo "gpu-check: $*" >&2; exit 64; }
now() { echo "${EPOCHREALTIME:-$(date +%s.%N)}"; }
secs() { local t; t="$(now)"; echo "${t%.*}"; }
py() { python3 "$KIT_PY" "$@"; }

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; cat <<'EOF'
Options:
  --dry-run             CPU backend, tiny shapes, no torch needed (CI)
  --bin PATH            the foveate binary (default .bin/foveate, else target/release/foveate)
  --out DIR             output folder (default $OUT)
  --cache DIR           carried CUDA kernel cache, exported as FOVEATE_CUDA_CACHE (default .bin/cuda-cache)
  --budget S            total seconds (default 480, dry run 180); the shares are scaled to it
  --only A,B / --skip A,B   run only / leave out these steps
  --pack / --no-pack    write only summary.json, summary.md, gpu-kit.tar.gz, gpu-check.log to the output
                        (default: pack when the output is $OUT)
  --inject-failure STEP run STEP against a binary that fails (tests the kit's failure path)
  --inject-hang STEP    run STEP against a binary that hangs (tests the budget's timeout)
EOF
}

# ------------------------------------------------------------------------------------------
# Step bodies. Each runs in its own process (bash "$0" --_step NAME) under `timeout`, with
# D = its folder, V = its verdict file, and the run's settings in KIT_* variables.

rec() { py record --step "$KIT_STEP" --kind "$KIT_KIND" --verdict "$V" --status "$1" --reason "$2"; }
check() { local c="$1"; shift; py "$c" --step "$KIT_STEP" --kind "$KIT_KIND" --verdict "$V" "$@"; }
dry() { [ "$KIT_MODE" = dry ]; }
left() { echo $(( KIT_STEP_DEADLINE - $(secs) )); }

# run_cmd NAME [--timeout S] CMD...: stdout to $D/NAME.out, stderr to $D/NAME.err, exit code to $D/NAME.rc.
run_cmd() {
  local name="$1"; shift
  local t=()
  if [ "${1:-}" = --timeout ]; then t=(timeout -k 3 "$2"); shift 2; fi
  echo "+ $*" >&2
  (cd "$REPO" && "${t[@]}" "$@" >"$D/$name.out" 2>"$D/$name.err")
  local rc=$?
  echo "$rc" >"$D/$name.rc"
  return $rc
}

# has_flag SUBCOMMAND FLAG: whether `foveate SUBCOMMAND --help` lists FLAG (asked of the real binary).
has_flag() {
  "$KIT_REAL_BIN" "$1" --help 2>/dev/null | grep -Eq -- "(^|[[:space:]])$2([[:space:]=<,]|$)"
}

# The backends usable here, probed once per run (the parent wrote probe.env from `foveate info --json`).
# probe NAME available|reason|ops
probe() {
  local key="${1//-/_}"
  # shellcheck disable=SC1091
  . "$KIT_WORK/.kit/probe.env"
  case "$2" in
    available) local v="avail_$key"; [ "${!v:-0}" = 1 ] ;;
    reason) local v="reason_$key"; echo "${!v:-not listed by foveate info}" ;;
    ops) local v="ops_$key"; echo "${!v:-}" ;;
  esac
}

# Skips (dry run) or fails (real run, or FOVEATE_REQUIRE_WGPU=1) a wgpu step when no adapter is there.
need_wgpu() {
  probe wgpu available && return 0
  local why; why="no wgpu adapter: $(probe wgpu reason)"
  if ! dry || [ "${FOVEATE_REQUIRE_WGPU:-}" = 1 ]; then rec fail "$why"; else rec skip "$why"; fi
  exit 0
}

# Fails the step when the planned backend cannot be opened (every command would fail the same way).
need_backend() {
  probe "$KIT_BACKEND" available && return 0
  rec fail "backend $KIT_BACKEND is unavailable: $(probe "$KIT_BACKEND" reason)"
  exit 0
}

step_info() {
  run_cmd info "$KIT_BIN" info --json
  if ! dry && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu \
      --format=csv,noheader >"$D/nvidia-smi.csv" 2>&1
  fi
  cut -d' ' -f1-3 /proc/loadavg >"$D/loadavg.txt" 2>/dev/null
  check info --dir "$D" --backend "$KIT_BACKEND"
}

step_selftest() {
  need_backend
  local args=(selftest --backend "$KIT_BACKEND" --size "$KIT_SIZE" --json) note=""
  if has_flag selftest --isolate; then
    run_cmd selftest "$KIT_BIN" "${args[@]}" --isolate
  else
    # One process per op family by hand, each with its own timeout, until selftest has --isolate.
    local op ops; ops="$(probe "$KIT_BACKEND" ops)"
    note="one process per op family (selftest has no --isolate yet)"
    for op in $ops; do
      local t=$(( $(left) / 2 )); [ "$t" -lt 10 ] && t=10
      run_cmd "selftest-$op" --timeout "$t" "$KIT_BIN" "${args[@]}" --op "$op"
    done
  fi
  check selftest --dir "$D" --note "$note"
}

step_device-vs-device() {
  has_flag selftest --reference || { rec skip "needs \`foveate selftest --reference naive\` (the device-vs-device check of #20)"; return; }
  need_backend
  run_cmd selftest-dvd "$KIT_BIN" selftest --backend "$KIT_BACKEND" --reference naive --size "$KIT_SIZE" --json
  check selftest --dir "$D"
}

step_fault() {
  dry && { rec skip "dry run: the planted fault is an out-of-bounds CUDA launch"; return; }
  has_flag selftest --plant-fault || { rec skip "needs a planted-fault command (\`foveate selftest --plant-fault\`, #20)"; return; }
  need_backend
  local args=(selftest --backend cuda --size small --dtype f32 --json --plant-fault)
  # A value-taking flag (`--plant-fault <OP>`) gets the GEMM, the op the kit then expects named.
  "$KIT_REAL_BIN" selftest --help | grep -Eq -- '--plant-fault[ =]<' && args+=(gemm)
  FOVEATE_CUDA_SYNC=1 run_cmd fault "$KIT_BIN" "${args[@]}"
  check fault --dir "$D"
}

step_parity() {
  need_backend
  local be=(--backend "cuda:naive,flash,block-sparse" --backend "wgpu:flash@2")
  dry && be=(--backend "cpu:naive,flash,block-sparse" --backend "wgpu:flash@1")
  check parity --dir "$D" --repo "$REPO" --bin "$KIT_BIN" --info "$KIT_WORK/.kit/probe.json" "${be[@]}" --optional wgpu
}

step_easy-vqa() {
  need_backend
  local n=1000; dry && n=50
  run_cmd eval "$KIT_BIN" eval --task easy-vqa --model eval/models/easyvqa-tiny --data eval/data/easy-vqa \
    --limit "$n" --backend "$KIT_BACKEND" --output "$D/run" --json
  check easyvqa --dir "$D" --torch "$REPO/eval/models/easyvqa-tiny/torch_predictions.jsonl" --limit "$n"
}

sanitizer() {
  local tool="$1"; shift
  dry && { rec skip "dry run: compute-sanitizer checks CUDA kernels"; return; }
  local san; san="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)"
  [ -n "$san" ] || { rec skip "compute-sanitizer not found (PATH, /usr/local/cuda/bin)"; return; }
  need_backend
  run_cmd selftest "$san" --tool "$tool" --error-exitcode 86 --print-limit 50 --log-file "$D/$tool.log" \
    "$KIT_BIN" selftest --backend cuda --size small --dtype f32 --json "$@"
  check sanitizer --dir "$D" --tool "$tool" --error-exitcode 86
}
step_memcheck() { sanitizer memcheck; }
# The kernels that share memory between threads; racecheck is slow, the elementwise ones have nothing to race.
step_racecheck() { sanitizer racecheck --op attention,gemm,gelu_mlp,patch_embed,softmax,layer_norm,rms_norm,argmax; }

step_selftest-wgpu() {
  need_wgpu
  if dry; then
    run_cmd selftest "$KIT_BIN" selftest --backend wgpu --size small --dtype f32 --json
    check selftest --dir "$D"
  else
    run_cmd selftest "$KIT_BIN" selftest --backend wgpu --size full --json
    check selftest --dir "$D" --gpu-adapter
  fi
}

step_torch() {
  python3 -c 'import torch' 2>/dev/null || { rec skip "PyTorch is absent (python3 -c 'import torch' fails): no baseline"; return; }
  local tb=(python3 eval/tools/torch_baseline.py)
  if dry; then
    run_cmd torch "${tb[@]}" --device cpu --threads 2 --kernels --no-e2e --seqs 16,32 -r 2 --min-ms 5 -o "$D/torch-cpu-f32.json"
  else
    python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || { rec fail "torch sees no CUDA device"; return; }
    run_cmd torch-f32 "${tb[@]}" --device cuda --kernels -r 3 --warmup 1 -p 512 -n 128 --min-ms 50 -o "$D/torch-cuda-f32.json"
    run_cmd torch-bf16 "${tb[@]}" --device cuda --dtype bf16 -r 3 --warmup 1 -p 512 -n 128 -o "$D/torch-cuda-bf16.json"
  fi
  check bench --dir "$D"
}

step_roofline() {
  need_backend
  if dry; then
    run_cmd roofline "$KIT_BIN" bench --roofline --quick -b cpu -r 2 -o json --out "$D/roofline-cpu.json"
  else
    run_cmd roofline "$KIT_BIN" bench --roofline -b cuda -r 5 -o json --out "$D/roofline-cuda.json"
  fi
  check bench --dir "$D" --need-fraction
}

step_e2e() {
  need_backend
  if dry; then
    local b=cpu; probe wgpu available && b=cpu,wgpu
    run_cmd e2e-tiny "$KIT_BIN" bench -m eval/models/easyvqa-tiny -b "$b" -p 16 -n 8 -r 2 -o json --out "$D/e2e-tiny.json"
  else
    run_cmd e2e-vit "$KIT_BIN" bench -m vit-b16 -b cuda -d f32,bf16 -r 3 --warmup 1 -o json --out "$D/e2e-cuda-vit.json"
    run_cmd e2e-qwen "$KIT_BIN" bench -m qwen2-0.5b -b cuda -d f32,bf16 -p 512 -n 128 -r 3 --warmup 1 -o json --out "$D/e2e-cuda-qwen.json"
  fi
  check bench --dir "$D"
}

step_wgpu-bench() {
  need_wgpu
  if dry; then
    run_cmd roofline-wgpu "$KIT_BIN" bench --roofline --quick -b wgpu -r 1 -o json --out "$D/roofline-wgpu.json"
    check bench --dir "$D" --need-fraction
  else
    run_cmd roofline-wgpu "$KIT_BIN" bench --roofline -b wgpu -r 3 -o json --out "$D/roofline-wgpu.json"
    run_cmd e2e-wgpu "$KIT_BIN" bench -m qwen2-0.5b -b wgpu -p 128 -n 32 -r 2 -o json --out "$D/e2e-wgpu-qwen.json"
    check bench --dir "$D" --need-fraction --gpu-adapter
  fi
}

step_counters() {
  local dirs=() d
  for d in "$KIT_WORK"/steps/*-e2e "$KIT_WORK"/steps/*-wgpu-bench; do [ -d "$d" ] && dirs+=(--dir "$d"); done
  [ ${#dirs[@]} -gt 0 ] || { rec skip "no e2e bench ran (steps e2e, wgpu-bench)"; return; }
  check counters "${dirs[@]}"
}

step_cache() {
  dry && { rec skip "dry run: no CUDA kernel cache"; return; }
  [ -n "${KIT_CACHE:-}" ] || { rec fail "no kernel cache carried (--cache): every kernel was compiled on the device"; return; }
  check cache --cache "$KIT_CACHE" --before "$KIT_WORK/.kit/cache-before.txt"
}

# ------------------------------------------------------------------------------------------
# Child mode: one step.
if [ "${1:-}" = --_step ]; then
  KIT_STEP="$2"; D="$KIT_STEP_DIR"; V="$KIT_VERDICT"
  mkdir -p "$D"
  "step_$KIT_STEP"
  exit 0
fi

# ------------------------------------------------------------------------------------------
# Parent: options, environment, the steps under the budget, the summary.
MODE=real BIN="" OUTDIR="${OUT:-}" CACHE="" BUDGET="" ONLY="" SKIP="" PACK="" INJECT_FAIL="" INJECT_HANG=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) MODE=dry ;;
    --bin) BIN="${2:?--bin needs a path}"; shift ;;
    --out) OUTDIR="${2:?--out needs a folder}"; shift ;;
    --cache) CACHE="${2:?--cache needs a folder}"; shift ;;
    --budget) BUDGET="${2:?--budget needs seconds}"; shift ;;
    --only) ONLY="${2:?--only needs step names}"; shift ;;
    --skip) SKIP="${2:?--skip needs step names}"; shift ;;
    --pack) PACK=1 ;;
    --no-pack) PACK=0 ;;
    --inject-failure) INJECT_FAIL="${2:?--inject-failure needs a step}"; shift ;;
    --inject-hang) INJECT_HANG="${2:?--inject-hang needs a step}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option \`$1\` (see --help)" ;;
  esac
  shift
done

# Steps selected, with their shares.
names=() kinds=() shares=()
while read -r n k real drys; do
  [ -n "$n" ] || continue
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$n,"* ]]; then continue; fi
  [[ ",$SKIP," == *",$n,"* ]] && continue
  names+=("$n"); kinds+=("$k"); if [ "$MODE" = dry ]; then shares+=("$drys"); else shares+=("$real"); fi
done <<<"$STEP_TABLE"
all="$(awk 'NF {print $1}' <<<"$STEP_TABLE" | paste -sd, -)"
for s in ${ONLY//,/ } ${SKIP//,/ } $INJECT_FAIL $INJECT_HANG; do
  [[ ",$all," == *",$s,"* ]] || die "unknown step \`$s\` (steps: $all)"
done
[ ${#names[@]} -gt 0 ] || die "no step selected"
total=0; for s in "${shares[@]}"; do total=$((total + s)); done
if [ -n "$BUDGET" ]; then
  [[ "$BUDGET" =~ ^[0-9]+$ ]] && [ "$BUDGET" -gt 0 ] || die "--budget $BUDGET: want whole seconds > 0"
  for i in "${!shares[@]}"; do s=$(( shares[i] * BUDGET / total )); [ "$s" -lt 1 ] && s=1; shares[i]=$s; done
else
  BUDGET=$total
fi

if [ -z "$BIN" ]; then
  for c in "$REPO/.bin/foveate" "$REPO/target/release/foveate"; do [ -x "$c" ] && { BIN="$c"; break; }; done
fi
[ -n "$BIN" ] || die "no foveate binary: pass --bin PATH (scripts/gpu-prepare.sh builds .bin/foveate)"
[ -x "$BIN" ] || die "--bin $BIN: not an executable file"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
[ -n "$OUTDIR" ] || die "no output folder: pass --out DIR (or run where \$OUT is set)"
command -v python3 >/dev/null || die "python3 is needed (standard library only)"
command -v timeout >/dev/null || die "timeout (coreutils) is needed"
mkdir -p "$OUTDIR" || die "--out $OUTDIR: cannot create it"
OUTDIR="$(cd "$OUTDIR" && pwd)"
[ -e "$OUTDIR/steps" ] || [ -e "$OUTDIR/gpu-kit.tar.gz" ] && die "--out $OUTDIR already holds a kit run; give an empty folder"
if [ -z "$PACK" ]; then PACK=0; [ -n "${OUT:-}" ] && [ "$(cd "$OUT" 2>/dev/null && pwd)" = "$OUTDIR" ] && PACK=1; fi
if [ "$PACK" = 1 ]; then
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-kit.XXXXXX")"
  exec > >(tee -a "$OUTDIR/gpu-check.log") 2>&1
  TEE_PID=$!
else
  WORK="$OUTDIR"
fi
mkdir -p "$WORK/steps" "$WORK/.kit"

# Environment.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" PYTHONUNBUFFERED=1
if [ "$MODE" = real ]; then
  [ -f "$REPO/scripts/cuda-env.sh" ] && eval "$(bash "$REPO/scripts/cuda-env.sh" 2>/dev/null)"
  [ -d /usr/local/cuda/lib64 ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/cuda/lib64"
  [ -z "$CACHE" ] && [ -d "$REPO/.bin/cuda-cache" ] && CACHE="$REPO/.bin/cuda-cache"
  # The NVIDIA Vulkan/EGL drivers of the lent machine (its README: "if no driver is found").
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
  [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"
fi
if [ -n "$CACHE" ]; then
  [ -d "$CACHE" ] || die "--cache $CACHE: no such folder"
  CACHE="$(cd "$CACHE" && pwd)"
  export FOVEATE_CUDA_CACHE="$CACHE"
  (cd "$CACHE" && find . -type f | sed 's|^\./||' | sort) >"$WORK/.kit/cache-before.txt"
fi
BUILD="$(dirname "$BIN")/BUILD.json"; [ -f "$BUILD" ] || BUILD=""
COMMIT="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || true)"
DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
if [ "$MODE" = dry ]; then BACKEND=cpu SIZE=small; else BACKEND=cuda SIZE=full; fi

# Stand-in binaries for --inject-failure / --inject-hang.
printf '#!/bin/sh\necho "error: injected failure (gpu-check.sh --inject-failure)" >&2\nexit 1\n' >"$WORK/.kit/inject-fail"
printf '#!/bin/sh\nexec sleep 3600\n' >"$WORK/.kit/inject-hang"
chmod +x "$WORK/.kit/inject-fail" "$WORK/.kit/inject-hang"
# Which backends open here, asked once of the real binary.
"$BIN" info --json >"$WORK/.kit/probe.json" 2>"$WORK/.kit/probe.err"
py probe-env "$WORK/.kit/probe.json" >"$WORK/.kit/probe.env"

export KIT_MODE="$MODE" KIT_BACKEND="$BACKEND" KIT_SIZE="$SIZE" KIT_REAL_BIN="$BIN" KIT_WORK="$WORK" KIT_CACHE="$CACHE"
sumargs() {
  SUM=(--work "$WORK" --out "$OUTDIR" --mode "$MODE" --backend "$BACKEND" --budget "$BUDGET" \
    --used "$(( $(secs) - T0 ))" --date "$DATE" --commit "$COMMIT")
  [ -n "$BUILD" ] && SUM+=(--build "$BUILD")
  [ "$PACK" = 1 ] && SUM+=(--pack)
}
# Seconds between two $EPOCHREALTIME readings, to the millisecond.
elapsed() { local a="${1/./}" b="${2/./}"; local ms=$(( (10#$b - 10#$a) / 1000 )); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }

T0=$(secs); DEADLINE=$(( T0 + BUDGET ))
echo "gpu-check: $MODE run, backend $BACKEND, binary $BIN"
echo "gpu-check: output $OUTDIR$([ "$PACK" = 1 ] && echo " (packed; working folder $WORK)")${CACHE:+, kernel cache $CACHE}"
echo "gpu-check: load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null); budget $BUDGET s; shares:"
for i in "${!names[@]}"; do printf '  %-17s %-11s %4s s\n' "${names[i]}" "${kinds[i]}" "${shares[i]}"; done

n=${#names[@]}
for i in "${!names[@]}"; do
  name="${names[i]}" kind="${kinds[i]}" share="${shares[i]}"
  order="$(printf '%02d' $((i + 1)))"
  later=0; for ((j = i + 1; j < n; j++)); do later=$((later + shares[j])); done
  cap=$(( DEADLINE - $(secs) - later ))
  dir="$WORK/steps/$order-$name" verdict="$WORK/steps/$order-$name.json"
  mkdir -p "$dir"
  echo "gpu-check: [$order/$n] $name ($kind), share $share s, cap $cap s"
  stepbin="$BIN" injected=""
  [ "$name" = "$INJECT_FAIL" ] && stepbin="$WORK/.kit/inject-fail" injected=failure
  [ "$name" = "$INJECT_HANG" ] && stepbin="$WORK/.kit/inject-hang" injected=hang
  t1="$(now)"
  if [ "$cap" -lt 1 ]; then
    py record --step "$name" --kind "$kind" --verdict "$verdict" --status skip --reason "no budget left" 2>/dev/null
    rc=0
  else
    KIT_STEP_DIR="$dir" KIT_VERDICT="$verdict" KIT_KIND="$kind" KIT_BIN="$stepbin" KIT_STEP_DEADLINE=$(( $(secs) + cap )) \
      timeout -k 5 "$cap" bash "$0" --_step "$name" >"$dir/step.log" 2>&1
    rc=$?
  fi
  t2="$(now)"
  sumargs
  py close --step "$name" --kind "$kind" --verdict "$verdict" --rc "$rc" --order "$order" --share "$share" --cap "$cap" \
    --seconds "$(elapsed "$t1" "$t2")" --injected "$injected" "${SUM[@]}"
done

py compare-md --work "$WORK" --bin "$BIN" 2>/dev/null
sumargs
py summary "${SUM[@]}" --final
code=$?
if [ "$PACK" = 1 ]; then
  echo "gpu-check: files in $OUTDIR: $(cd "$OUTDIR" && ls | paste -sd' ' -)"
  exec >&- 2>&-
  wait "$TEE_PID" 2>/dev/null # the log is complete before the device tool collects it
  rm -rf "$WORK"              # all of it is in gpu-kit.tar.gz
fi
exit $code
