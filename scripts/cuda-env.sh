#!/usr/bin/env bash
# Prints `export ...` lines that put NVRTC on LD_LIBRARY_PATH and name the CUDA headers and ptxas
# for foveate's NVRTC compiles. Use: eval "$(bash scripts/cuda-env.sh)"
#
# Knows both PyPI wheel layouts and a toolkit install:
#   CUDA 12 wheels (nvidia-cuda-nvrtc-cu12, ...): site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12
#   CUDA 13 wheels (nvidia-cuda-nvrtc, ...):      site-packages/nvidia/cu13/lib/libnvrtc.so.13
#   toolkit:                                      /usr/local/cuda/lib64 ($CUDA_HOME/lib64)
# foveate opens libnvrtc.so.13, then .so.12, then .so from that path; FOVEATE_NVRTC_PATH (a file
# or a folder) overrides the search. FOVEATE_NVRTC_CU12 / FOVEATE_NVRTC_CU13 name each library
# found, so a caller can pick one: FOVEATE_NVRTC_PATH=$FOVEATE_NVRTC_CU12 foveate cuda-compile.
set -eu
site=$(python3 - <<'PY' 2>/dev/null || true
import importlib.util
spec = importlib.util.find_spec("nvidia")
if spec and spec.submodule_search_locations:
    print(list(spec.submodule_search_locations)[0])
PY
)
lib=() inc=() ptxas="" have13="" have12=""
cuda_home="${CUDA_HOME:-/usr/local/cuda}"
if [ -n "$site" ]; then
  [ -e "$site/cu13/lib/libnvrtc.so.13" ] && { lib+=("$site/cu13/lib"); have13=1; echo "export FOVEATE_NVRTC_CU13=\"$site/cu13/lib/libnvrtc.so.13\""; }
  [ -e "$site/cuda_nvrtc/lib/libnvrtc.so.12" ] && { lib+=("$site/cuda_nvrtc/lib"); have12=1; echo "export FOVEATE_NVRTC_CU12=\"$site/cuda_nvrtc/lib/libnvrtc.so.12\""; }
  [ -d "$site/cuda_runtime/lib" ] && lib+=("$site/cuda_runtime/lib")
  for d in "$site/cu13/include" "$site/cuda_runtime/include" "$site/cuda_nvcc/include"; do
    [ -d "$d" ] && inc+=("$d")
  done
  for p in "$site/cu13/bin/ptxas" "$site/cuda_nvcc/bin/ptxas"; do
    [ -z "$ptxas" ] && [ -x "$p" ] && ptxas="$p"
  done
fi
if [ -d "$cuda_home/lib64" ]; then
  lib+=("$cuda_home/lib64")
  [ -z "$have13" ] && [ -e "$cuda_home/lib64/libnvrtc.so.13" ] && echo "export FOVEATE_NVRTC_CU13=\"$cuda_home/lib64/libnvrtc.so.13\""
  [ -z "$have12" ] && [ -e "$cuda_home/lib64/libnvrtc.so.12" ] && echo "export FOVEATE_NVRTC_CU12=\"$cuda_home/lib64/libnvrtc.so.12\""
  [ -d "$cuda_home/include" ] && inc+=("$cuda_home/include")
  [ -z "$ptxas" ] && [ -x "$cuda_home/bin/ptxas" ] && ptxas="$cuda_home/bin/ptxas"
fi
if [ ${#lib[@]} -eq 0 ]; then
  echo "echo 'cuda-env: no NVRTC found (pip install nvidia-cuda-nvrtc for CUDA 13, or nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12 nvidia-cuda-nvcc-cu12 for CUDA 12)' >&2"
  exit 0
fi
joined=$(IFS=:; echo "${lib[*]}")
echo "export LD_LIBRARY_PATH=\"$joined\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
[ ${#inc[@]} -gt 0 ] && echo "export FOVEATE_CUDA_INCLUDE=\"$(IFS=:; echo "${inc[*]}")\""
[ -n "$ptxas" ] && echo "export FOVEATE_PTXAS=\"$ptxas\""
exit 0
