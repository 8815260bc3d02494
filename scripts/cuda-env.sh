#!/usr/bin/env bash
# Prints `export ...` lines that put the NVRTC library from the nvidia-cuda-*-cu12 PyPI wheels on
# LD_LIBRARY_PATH and name the CUDA headers for foveate's NVRTC compiles. Use: eval "$(bash scripts/cuda-env.sh)"
set -eu
site=$(python3 - <<'PY' 2>/dev/null || true
import importlib.util, os
spec = importlib.util.find_spec("nvidia")
if spec and spec.submodule_search_locations:
    print(list(spec.submodule_search_locations)[0])
PY
)
[ -n "$site" ] || { echo "echo 'cuda-env: no nvidia-* wheels found (pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12 nvidia-cuda-nvcc-cu12)' >&2"; exit 0; }
echo "export LD_LIBRARY_PATH=\"$site/cuda_nvrtc/lib:$site/cuda_runtime/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
echo "export FOVEATE_CUDA_INCLUDE=\"$site/cuda_runtime/include:$site/cuda_nvcc/include\""
[ -x "$site/cuda_nvcc/bin/ptxas" ] && echo "export FOVEATE_PTXAS=\"$site/cuda_nvcc/bin/ptxas\""
exit 0
