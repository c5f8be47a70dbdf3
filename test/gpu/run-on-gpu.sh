#!/usr/bin/env bash
# Run the GPU codec tests and rcmoe-kbench on a GPU machine from an existing build directory
# (built elsewhere with -Dgpu_arch matching the GPU). The binaries are run directly, so the build
# directory may have moved. Criterion's shared libraries, when the machine lacks them, can sit in
# .carry/lib (or $RCMOE_CARRY_LIB): they are put on LD_LIBRARY_PATH.
#
#   test/gpu/run-on-gpu.sh BUILD_DIR [OUT_DIR] [rcmoe-kbench options...]
#
# Writes OUT_DIR/gpu-tests.tap, OUT_DIR/kbench.txt and OUT_DIR/kbench.json; exits non-zero if a
# GPU test failed or kbench did not finish.
set -uo pipefail
build=${1:?usage: run-on-gpu.sh BUILD_DIR [OUT_DIR] [kbench options]}
out=${2:-${OUT:-.}}
shift $(($# >= 2 ? 2 : 1))
here=$(cd "$(dirname "$0")/../.." && pwd)
lib=${RCMOE_CARRY_LIB:-$here/.carry/lib}
[ -d "$lib" ] && export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p "$out"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
missing=$(ldd "$build/test/gpu/test_gpu_codec" | grep "not found")
[ -n "$missing" ] && echo "missing libraries: $missing"

status=0
"$build/test/gpu/test_gpu_codec" --tap -j1 >"$out/gpu-tests.tap" 2>"$out/gpu-tests.log" || status=1
grep -E "^(ok|not ok)|^  - |Assertion" "$out/gpu-tests.tap" | head -60
grep -c "^ok" "$out/gpu-tests.tap" | sed 's/^/gpu tests passed: /'

"$build/tools/kbench/rcmoe-kbench" -J "$out/kbench.json" "$@" 2>&1 | tee "$out/kbench.txt" ||
	status=1
exit $status
