#!/usr/bin/env bash
# Run the GPU tests (test_gpu_codec: kernels against the CPU references; test_gpu_wdedup: the
# window-dedup kernels against kernels/wdedup.c, message by message; test_gpu_net: the net
# table with device buffers, and the proxy-thread deadlock model; test_gpu_context: whether a
# second CUDA context escapes that deadlock; test_gpu_coll: the collective side's all-reduce with
# device buffers) and rcmoe-kbench on a GPU
# machine from an existing build directory (built elsewhere with -Dgpu_arch matching the GPU).
# The binaries are run directly, so the build directory may have moved. Criterion's shared
# libraries, when the machine lacks them, can sit in .carry/lib (or $RCMOE_CARRY_LIB): they are
# put on LD_LIBRARY_PATH.
#
#   test/gpu/run-on-gpu.sh BUILD_DIR [OUT_DIR] [rcmoe-kbench options...]
#
# Writes OUT_DIR/gpu-tests.tap and .log (codec), OUT_DIR/gpu-wdedup-tests.tap and .log (window
# dedup), OUT_DIR/gpu-net-tests.tap and .log (net; the
# .log holds the deadlock model's "MODEL CHECK" lines), OUT_DIR/gpu-context.tap and .log (its
# "CONTEXT PROBE" lines), OUT_DIR/kbench.txt and kbench.json; exits
# non-zero if a GPU test failed or was skipped (none may skip on a GPU machine) or kbench did not
# finish.
set -uo pipefail
build=${1:?usage: run-on-gpu.sh BUILD_DIR [OUT_DIR] [kbench options]}
out=${2:-${OUT:-.}}
shift $(($# >= 2 ? 2 : 1))
here=$(cd "$(dirname "$0")/../.." && pwd)
lib=${RCMOE_CARRY_LIB:-$here/.carry/lib}
[ -d "$lib" ] && export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p "$out"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
export RCMOE_SOCKET_IFNAME=lo # test_gpu_net sets it too: its pair runs over 127.0.0.1

status=0
# name of the executable, then the base name of its outputs ("$@" stays kbench's options)
for t in "test_gpu_codec gpu-tests" "test_gpu_wdedup gpu-wdedup-tests" \
	"test_gpu_net gpu-net-tests" "test_gpu_context gpu-context" "test_gpu_coll gpu-coll-tests"; do
	read -r name base <<<"$t"
	exe="$build/test/gpu/$name"
	echo "== $name"
	if [ ! -x "$exe" ]; then
		echo "$exe is missing (was the build configured with CUDA and Criterion?)"
		status=1
		continue
	fi
	missing=$(ldd "$exe" | grep "not found")
	[ -n "$missing" ] && echo "missing libraries: $missing"
	"$exe" --tap="$out/$base.tap" -j1 >"$out/$base.log" 2>&1 || status=1
	grep -E "^(ok|not ok)|^  - |Assertion" "$out/$base.tap" | head -60
	passed=$(grep -E "^ok" "$out/$base.tap" | grep -vc "# SKIP")
	skipped=$(grep -c "# SKIP" "$out/$base.tap")
	failed=$(grep -c "^not ok" "$out/$base.tap")
	echo "$name: $passed passed, $failed failed, $skipped skipped"
	[ "$skipped" -eq 0 ] || status=1
done
echo "== the deadlock model (test_gpu_net's log) and the second-context probe"
grep -E "MODEL CHECK|beside the waiting copy" "$out/gpu-net-tests.log"
grep -E "CONTEXT PROBE" "$out/gpu-context.log"

"$build/tools/kbench/rcmoe-kbench" -J "$out/kbench.json" "$@" 2>&1 | tee "$out/kbench.txt" ||
	status=1
exit $status
