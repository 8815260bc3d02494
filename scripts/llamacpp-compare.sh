#!/usr/bin/env bash
# llama.cpp side by side on the CPU (docs/BENCHMARKS-llamacpp.md), one command:
#
#  1. builds llama.cpp's llama-bench and llama-quantize twice, native (-march=native) and AVX2-only
#     (AVX2+FMA+F16C, no AVX-512), no BLAS/CUDA/curl, from the llama.cpp that the pinned
#     llama-cpp-python sdist on PyPI vendors (no network beyond PyPI; apt-get for cmake if missing);
#  2. writes random-weight GGUF files of a foveate builtin decoder shape (F32, F16, BF16 with the
#     `gguf` package from PyPI, then llama-quantize to Q8_0, Q4_0, Q4_K_M);
#  3. runs llama-bench (both builds: prompt test at depth 0, generation test at depth PROMPT) and
#     `foveate bench` format by format, interleaved, REPS rounds, logging `uptime` before each run;
#  4. pools the rounds and writes `foveate compare llama-native.json llama-avx2.json foveate.json`.
#
#   scripts/llamacpp-compare.sh [--shape NAME] [--layers N] [--formats LIST] [--out DIR] [--build-only]
#
#   --shape    a foveate builtin with a Qwen2 or Llama decoder: qwen2-0.5b (default) or llava-1.5-7b
#   --layers   fewer decoder layers (both tools), for a quick smoke run
#   --formats  comma separated, of f32,f16,bf16,int8,int4,q4_k_m (int8 = Q8_0, int4 = Q4_0;
#              q4_k_m is llama.cpp only). Default: all; without f32 for llava-1.5-7b (27 GB).
#   --out      the output folder (default target/llamacpp/runs/DATE-SHAPE)
#
# env: REPS=3 rounds, BENCH_REPS=5 timed runs per tool, format and round (each after one warm-up),
#      THREADS=2, PROMPT=256, GEN=32, KV=f16 (both tools' KV cache: f16, bf16 or f32; llama-bench
#      -ctk/-ctv, foveate --kv-dtype; until 2026-12-07 run 5 foveate ran f32), JOBS=2 build jobs, FOVEATE=a foveate binary (default: built
#      with cargo build --release), LLAMACPP_DIR=target/llamacpp (sources, builds, venv, models:
#      cached between runs), LLAMA_CPP_PYTHON_VERSION=0.3.36 (llama.cpp 0c1e57098), GGUF_VERSION.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
die() { echo "llamacpp-compare: error: $*" >&2; exit 1; }
say() { echo "llamacpp-compare: $*" >&2; }

SHAPE=qwen2-0.5b; LAYERS=""; FORMATS=""; OUT=""; BUILD_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) SHAPE=${2:?--shape needs a value}; shift 2 ;;
    --layers) LAYERS=${2:?--layers needs a value}; shift 2 ;;
    --formats) FORMATS=${2:?--formats needs a value}; shift 2 ;;
    --out) OUT=${2:?--out needs a value}; shift 2 ;;
    --build-only) BUILD_ONLY=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument \`$1\` (see --help)" ;;
  esac
done
REPS=${REPS:-3}; BENCH_REPS=${BENCH_REPS:-5}; THREADS=${THREADS:-2}; PROMPT=${PROMPT:-256}; GEN=${GEN:-32}
JOBS=${JOBS:-2}; KV=${KV:-f16}
case "$KV" in f16|bf16|f32) ;; *) die "KV=$KV: the KV cache is f16, bf16 or f32" ;; esac
VER=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
PINNED_VER=0.3.36
PINNED_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
GGUF_VERSION=${GGUF_VERSION:-0.19.0}
WORK=${LLAMACPP_DIR:-$ROOT/target/llamacpp}
case "$SHAPE" in
  qwen2-0.5b) FORMATS=${FORMATS:-f32,f16,bf16,int8,int4,q4_k_m} ;;
  *) FORMATS=${FORMATS:-f16,bf16,int8,int4,q4_k_m} ;;
esac
for f in ${FORMATS//,/ }; do
  case "$f" in f32|f16|bf16|int8|int4|q4_k_m) ;; *) die "--formats: unknown format \`$f\` (f32,f16,bf16,int8,int4,q4_k_m)" ;; esac
done
[[ -z "$LAYERS" || "$LAYERS" =~ ^[1-9][0-9]*$ ]] || die "--layers: \`$LAYERS\` is not a positive count"
for v in REPS BENCH_REPS THREADS PROMPT GEN JOBS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v=${!v} is not a positive count"
done

# --- 1. llama.cpp, from the sdist ---------------------------------------------------------------
SRC=$WORK/src/llama_cpp_python-$VER/vendor/llama.cpp
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  mkdir -p "$WORK/src"
  TGZ=$WORK/src/llama_cpp_python-$VER.tar.gz
  if [ ! -f "$TGZ" ]; then
    say "downloading the llama-cpp-python $VER sdist from PyPI"
    # Straight from PyPI's simple index (PEP 691 JSON): `pip download --no-binary :all:` would
    # build the sdist's build dependencies (cmake among them) from source to read its metadata.
    python3 - "$VER" "$TGZ" <<'PY' >&2 || die "cannot download the llama-cpp-python $VER sdist from PyPI"
import json, os, sys, urllib.request
ver, dest = sys.argv[1], sys.argv[2]
req = urllib.request.Request("https://pypi.org/simple/llama-cpp-python/",
                             headers={"Accept": "application/vnd.pypi.simple.v1+json"})
files = json.load(urllib.request.urlopen(req))["files"]
name = os.path.basename(dest)
url = next(f["url"] for f in files if f["filename"] == name)
urllib.request.urlretrieve(url, dest)
print("downloaded", url)
PY
  fi
  [ -f "$TGZ" ] || die "pip did not leave $TGZ"
  SUM=$(sha256sum "$TGZ" | cut -d' ' -f1)
  if [ "$VER" = "$PINNED_VER" ]; then
    [ "$SUM" = "$PINNED_SHA256" ] || die "$TGZ: sha256 $SUM, expected $PINNED_SHA256"
  else
    say "llama-cpp-python $VER is not the pinned $PINNED_VER: sha256 $SUM (not checked)"
  fi
  tar -xzf "$TGZ" -C "$WORK/src"
  [ -f "$SRC/CMakeLists.txt" ] || die "$TGZ holds no vendor/llama.cpp"
fi
# The commit llama-bench reports: the sdist carries the submodule's git directory (without it, git
# would find foveate's repository above target/), else the changelog names it.
if [ -e "$SRC/.git" ] && LLAMA_COMMIT=$(git -C "$SRC" rev-parse --short=9 HEAD 2>/dev/null); then :
else
  LLAMA_COMMIT=$(sed -n "/^## \[$VER\]/,/^## /p" "$SRC/../../CHANGELOG.md" 2>/dev/null \
    | grep -o 'llama.cpp@[0-9a-f]*' | head -1 | cut -d@ -f2)
  LLAMA_COMMIT=${LLAMA_COMMIT:-unknown}
fi

if ! command -v cmake > /dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    say "installing cmake (apt-get)"
    apt-get install -y cmake >&2 || { apt-get update >&2 && apt-get install -y cmake >&2; }
  fi
  command -v cmake > /dev/null || die "cmake not found (apt-get install cmake, or pip install cmake)"
fi

COMMON=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_BLAS=OFF -DGGML_CUDA=OFF
        -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
        -DLLAMA_BUILD_COMMIT="$LLAMA_COMMIT")
build() {  # NAME FLAGS...
  local name=$1; shift
  local b=$WORK/build-$name stamp="$VER ${COMMON[*]} $*"
  if [ -x "$b/bin/llama-bench" ] && [ -x "$b/bin/llama-quantize" ] && [ "$(cat "$b/.stamp" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  say "building llama.cpp $LLAMA_COMMIT ($name: $*) into $b"
  nice -n 19 cmake -S "$SRC" -B "$b" "${COMMON[@]}" "$@" > "$WORK/cmake-$name.log" 2>&1 \
    || die "cmake configure failed, see $WORK/cmake-$name.log"
  nice -n 19 cmake --build "$b" --target llama-bench llama-quantize -j "$JOBS" > "$WORK/build-$name.log" 2>&1 \
    || die "the build failed, see $WORK/build-$name.log"
  echo "$stamp" > "$b/.stamp"
}
build native -DGGML_NATIVE=ON
build avx2 -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF

PY=$WORK/venv/bin/python
if ! "$PY" -c "import gguf, numpy" 2> /dev/null || [ "$("$PY" -c 'import importlib.metadata as m; print(m.version("gguf"))')" != "$GGUF_VERSION" ]; then
  say "installing gguf==$GGUF_VERSION (PyPI) into $WORK/venv"
  python3 -m venv "$WORK/venv"
  "$PY" -m pip install -q "gguf==$GGUF_VERSION" >&2
fi
[ "$BUILD_ONLY" = 1 ] && { say "built: $WORK/build-native/bin, $WORK/build-avx2/bin (llama.cpp $LLAMA_COMMIT)"; exit 0; }

if [ -z "${FOVEATE:-}" ]; then
  say "building foveate (cargo build --release -p foveate-cli)"
  nice -n 19 cargo build --release -q -p foveate-cli >&2
  FOVEATE=${CARGO_TARGET_DIR:-$ROOT/target}/release/foveate
fi
[ -x "$FOVEATE" ] || die "no foveate binary at $FOVEATE"

# --- 2. the models ------------------------------------------------------------------------------
MODELS=$WORK/models/$SHAPE${LAYERS:+-l$LAYERS}
mkdir -p "$MODELS"
"$FOVEATE" bench --model "$SHAPE" ${LAYERS:+--layers "$LAYERS"} --print-config --out "$MODELS/config.json.new"
if ! cmp -s "$MODELS/config.json.new" "$MODELS/config.json"; then
  rm -f "$MODELS"/*.gguf
  mv "$MODELS/config.json.new" "$MODELS/config.json"
else
  rm "$MODELS/config.json.new"
fi
gguf_of() { case "$1" in int8) echo q8_0 ;; int4) echo q4_0 ;; *) echo "$1" ;; esac; }
model() { echo "$MODELS/$SHAPE-$(gguf_of "$1").gguf"; }
SOURCE=""
for f in f32 f16 bf16; do
  if [[ ",$FORMATS," == *",$f,"* ]] || { [ "$f" = f16 ] && [ -z "$SOURCE" ]; }; then
    [ -f "$(model $f)" ] || nice -n 19 "$PY" scripts/llamacpp_compare.py gguf "$MODELS/config.json" "$(model $f)" --type $f --name "$SHAPE" >&2
    SOURCE=${SOURCE:-$(model $f)}
  fi
done
for f in int8 int4 q4_k_m; do
  [[ ",$FORMATS," == *",$f,"* ]] || continue
  q=$(gguf_of $f | tr a-z A-Z)
  [ -f "$(model $f)" ] || nice -n 19 "$WORK/build-native/bin/llama-quantize" "$SOURCE" "$(model $f)" "$q" > "$MODELS/quantize-$f.log" 2>&1 \
    || die "llama-quantize $q failed, see $MODELS/quantize-$f.log"
done

# --- 3. the runs --------------------------------------------------------------------------------
OUT=${OUT:-$WORK/runs/$(date -u +%Y-%m-%dT%H%M%SZ)-$SHAPE${LAYERS:+-l$LAYERS}}
# A folder of its own: the pooling below takes every per-run file in it.
[ -z "$(ls -A "$OUT" 2>/dev/null)" ] || die "--out $OUT is not empty"
mkdir -p "$OUT"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "command: $0 --shape $SHAPE ${LAYERS:+--layers $LAYERS }--formats $FORMATS"
  echo "env: REPS=$REPS BENCH_REPS=$BENCH_REPS THREADS=$THREADS PROMPT=$PROMPT GEN=$GEN KV=$KV"
  echo "foveate: $FOVEATE ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "llama.cpp: $LLAMA_COMMIT (llama-cpp-python $VER sdist), builds native and avx2"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
  echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o 'avx[0-9a-z_]*\|fma\|f16c\|amx[a-z_]*' | sort -u | xargs)"
} > "$OUT/run.txt"
cat "$OUT/run.txt" >&2
log_uptime() { echo "$(date -u +%T) $* | $(uptime)" | tee -a "$OUT/uptime.log" >&2; }
run_llama() {  # BUILD FORMAT ROUND
  local bin=$WORK/build-$1/bin/llama-bench m; m=$(model "$2")
  local args=(-m "$m" -t "$THREADS" -fa 1 -ctk "$KV" -ctv "$KV" -r "$BENCH_REPS" -o json)
  log_uptime "llama.cpp $1 $2 round $3: pp$PROMPT"
  "$bin" "${args[@]}" -p "$PROMPT" -n 0 > "$OUT/llama-$1-r$3-$2-pp.json" 2>> "$OUT/llama-$1.log" \
    || die "llama-bench failed, see $OUT/llama-$1.log"
  log_uptime "llama.cpp $1 $2 round $3: tg$GEN at depth $PROMPT"
  "$bin" "${args[@]}" -p 0 -n "$GEN" -d "$PROMPT" > "$OUT/llama-$1-r$3-$2-tg.json" 2>> "$OUT/llama-$1.log" \
    || die "llama-bench failed, see $OUT/llama-$1.log"
}
run_foveate() {  # FORMAT ROUND
  [ "$1" = q4_k_m ] && return
  log_uptime "foveate $1 round $2: p$PROMPT n$GEN"
  "$FOVEATE" bench --model "$SHAPE" ${LAYERS:+--layers "$LAYERS"} --no-image -p "$PROMPT" -n "$GEN" -t "$THREADS" \
    --weights "$1" --kv-dtype "$KV" -r "$BENCH_REPS" -o json --out "$OUT/foveate-r$2-$1.json" 2>> "$OUT/foveate.log" \
    || die "foveate bench failed, see $OUT/foveate.log"
}
for round in $(seq "$REPS"); do
  for f in ${FORMATS//,/ }; do
    # Odd rounds llama.cpp first, even rounds foveate first: neither always runs on a warmer machine.
    if [ $((round % 2)) = 1 ]; then
      run_llama native "$f" "$round"; run_llama avx2 "$f" "$round"; run_foveate "$f" "$round"
    else
      run_foveate "$f" "$round"; run_llama avx2 "$f" "$round"; run_llama native "$f" "$round"
    fi
  done
done
log_uptime "done"

# --- 4. the table -------------------------------------------------------------------------------
"$PY" scripts/llamacpp_compare.py concat "$OUT/llama-native.json" "$OUT"/llama-native-r*-*.json >&2
"$PY" scripts/llamacpp_compare.py concat "$OUT/llama-avx2.json" "$OUT"/llama-avx2-r*-*.json >&2
FILES=("$OUT/llama-native.json" "$OUT/llama-avx2.json")
if ls "$OUT"/foveate-r*-*.json > /dev/null 2>&1; then
  "$PY" scripts/llamacpp_compare.py pool "$OUT/foveate.json" "$OUT"/foveate-r*-*.json >&2
  FILES+=("$OUT/foveate.json")
fi
"$FOVEATE" compare "${FILES[@]}" --out "$OUT/compare.md"
cat "$OUT/compare.md"
say "wrote $OUT (compare.md, run.txt, uptime.log, the per-run JSON and logs)"
