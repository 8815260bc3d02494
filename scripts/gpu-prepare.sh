#!/usr/bin/env bash
# Prepares a GPU session (issue #17), HERE, on the machine without a GPU, before the device tool
# is called: the lent machine has no Rust and no network, and its 15 minutes are for running.
#
#   bash scripts/gpu-prepare.sh [--no-build] [--no-gl] [--arch sm_90]
#
# 1. builds the release binary and copies it, stripped, to .bin/foveate, with .bin/BUILD.json
#    (commit, dirty, date, toolchain, glibc) so results made there carry the commit;
# 2. fills the CUDA kernel cache for sm_90 into .bin/cuda-cache (`foveate cuda-compile
#    --fill-cache`), so nothing compiles on the device (gpu-check.sh exports FOVEATE_CUDA_CACHE);
# 3. downloads the Vulkan/EGL loader .debs into .gl/ (the device README's recipe), so wgpu runs on
#    the GPU there;
# 4. checks that what travels (tracked and untracked-not-ignored files + .bin + .gl) is under 64 MiB;
# 5. prints the exact device `run` call and its carry list.
# .bin/ and .gl/ are git-ignored (.gitignore). Exits non-zero when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
BUILD=1 GL=1 ARCH=sm_90 LIMIT_MIB=64
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --no-gl) GL=0 ;;
    --arch) ARCH="${2:?--arch needs a value}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-prepare: unknown option \`$1\`" >&2; exit 64 ;;
  esac
  shift
done
say() { echo "gpu-prepare: $*"; }
fail() { echo "gpu-prepare: error: $*" >&2; exit 1; }

say "load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$(git rev-parse --git-dir)" != "$(git rev-parse --git-common-dir)" ]; then
  say "note: this is a linked worktree; the device tool sends the checkout the session was started in,"
  say "      so run this script there (after merging) or the files below will not travel"
fi

# 1. The binary.
if [ "$BUILD" = 1 ]; then
  cargo build --release -p foveate-cli
fi
[ -x target/release/foveate ] || fail "target/release/foveate is missing (drop --no-build)"
mkdir -p .bin
cp target/release/foveate .bin/foveate.tmp
strip .bin/foveate.tmp 2>/dev/null || say "strip not found: carrying the unstripped binary"
mv .bin/foveate.tmp .bin/foveate
dirty=false; [ -n "$(git status --porcelain --untracked-files=no)" ] && dirty=true
python3 - "$dirty" <<'PY'
import hashlib, json, platform, subprocess, sys, datetime
def out(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return None
b = {
    "commit": out("git", "rev-parse", "HEAD"), "dirty": sys.argv[1] == "true",
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "rustc": out("rustc", "--version"), "glibc": platform.libc_ver()[1], "host": platform.node(),
    "sha256": hashlib.sha256(open(".bin/foveate", "rb").read()).hexdigest(),
}
json.dump(b, open(".bin/BUILD.json", "w"), indent=1)
print(f"gpu-prepare: .bin/foveate at {b['commit'][:10]}{' (dirty: commit first, or the results name a commit that is not the code)' if b['dirty'] else ''}, glibc {b['glibc']}")
PY

# 2. The CUDA kernel cache.
eval "$(bash scripts/cuda-env.sh)"
if .bin/foveate cuda-compile --help | grep -q -- '--fill-cache'; then
  rm -rf .bin/cuda-cache
  say "compiling every CUDA kernel for $ARCH into .bin/cuda-cache (NVRTC here, no GPU needed)"
  .bin/foveate cuda-compile --arch "$ARCH" --fill-cache .bin/cuda-cache --threads "$(nproc)" >.bin/cuda-compile.log 2>&1 ||
    { tail -5 .bin/cuda-compile.log >&2; fail "cuda-compile --fill-cache failed (log: .bin/cuda-compile.log)"; }
  say "$(grep -m1 '^NVRTC' .bin/cuda-compile.log || true); $(find .bin/cuda-cache -type f | wc -l) cache files, $(du -sh .bin/cuda-cache | cut -f1)"
else
  say "warning: \`foveate cuda-compile\` has no --fill-cache yet (issue #20): every kernel will compile"
  say "         on the device with its NVRTC (about a minute of the budget), and the kit's cache step fails"
  rm -rf .bin/cuda-cache
fi

# 3. Vulkan/EGL loaders for wgpu on the GPU machine (its README's recipe).
DEBS=(libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
if [ "$GL" = 1 ]; then
  missing=()
  for p in "${DEBS[@]}"; do compgen -G ".gl/${p}_*.deb" >/dev/null || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    mkdir -p .gl /tmp/amd64/partial
    o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update -qq
    (cd .gl && apt-get "${o[@]}" download "${missing[@]}")
  fi
  say ".gl: $(ls .gl/*.deb | wc -l) loader packages, $(du -sh .gl | cut -f1)"
fi

# 4. What travels.
tree_bytes=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carried=(.bin); [ "$GL" = 1 ] && carried+=(.gl)
carry_bytes=$(du -cb "${carried[@]}" | tail -1 | cut -f1)
total=$((tree_bytes + carry_bytes))
say "travels: working tree $((tree_bytes >> 20)) MiB + carried ${carried[*]} $((carry_bytes >> 20)) MiB = $((total >> 20)) MiB (limit $LIMIT_MIB MiB)"
[ "$total" -lt $((LIMIT_MIB << 20)) ] || fail "over the device tool's $LIMIT_MIB MiB: carry less (e.g. --no-gl) or shrink .bin"

# 5. The device call.
gl_cmd=""; [ "$GL" = 1 ] && gl_cmd='for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; '
carry_json="$(printf '"%s", ' "${carried[@]}")"
cache_opt=""; [ -d .bin/cuda-cache ] && cache_opt=" --cache .bin/cuda-cache"
cat <<EOF

Ready. Check the device first (status: can_start_another), then make ONE call:

  run(command='${gl_cmd}bash scripts/gpu-check.sh --bin .bin/foveate${cache_opt}',
      carry=[${carry_json%, }], timeout_s=570)

The kit stays within 480 s; the results come back as summary.md, summary.json, gpu-kit.tar.gz and
gpu-check.log. Give the machine back unless you rerun at once (give_back), then file them:

  python3 scripts/gpu_kit.py collect <files_at>      # -> benches/results/gpu-<device>-<date>/
EOF
