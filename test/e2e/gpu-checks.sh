#!/usr/bin/env bash
# GPU-machine checks, run from the repository root: test/e2e/gpu-checks.sh BUILD_DIR [OUT_DIR]
# Starts MPS (ranks share GPU 0), then runs the PyTorch end-to-end checks with 2 and 4 ranks,
# lossless and with 8, 4 and 2-bit LSQ (lossy runs also replay an all-to-all captured in a CUDA
# graph), in two buffer modes: "default" (the plugin's defaults: under MPS, GPU buffers staged
# and coded on the GPU when compressing, host buffers when lossless; fails unless NCCL's log
# shows GDRDMA exactly when compressing) and "host"
# (RCMOE_CUDA_BUFFERS=off: host buffers, CPU codec). The checks' own .cpu() copies run while
# collectives are in flight, the pattern that deadlocks GPU work issued in the primary context.
# Narrow it with RCMOE_E2E_GDR="default host", RCMOE_E2E_RANKS="2 4", RCMOE_E2E_BITS="0 8 4 2",
# RCMOE_E2E_HANG (seconds before a rank counts as hung). RCMOE_E2E_AR=1 also runs
# test/e2e/ar-checks.sh (all-reduce through the plugin's collective side, compressed and
# lossless) into OUT_DIR/ar. Exit status 0 only if all pass.
set -uo pipefail
build=${1:?usage: gpu-checks.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-/tmp/rcmoe-gpu-checks}}
source "$(dirname "$0")/mps.sh"
rcmoe_e2e_setup "$build" "$out"

status=0
for gdr in ${RCMOE_E2E_GDR:-default host}; do
	for n in ${RCMOE_E2E_RANKS:-2 4}; do
		for bits in ${RCMOE_E2E_BITS:-0 8 4 2}; do
			log="$out/torch-n$n-gdr$gdr-b$bits.log"
			unset NCCL_NET_GDR_LEVEL RCMOE_CUDA_BUFFERS
			[ $gdr = host ] && export RCMOE_CUDA_BUFFERS=off
			extra=()
			[ "$bits" != 0 ] && extra=(--graph)
			echo "== torch e2e: $n ranks, GPU buffers: $gdr, bits: $bits"
			if ! NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET PYTHONUNBUFFERED=1 timeout 900 \
				python3 test/e2e/torch_collectives.py --plugin "$plugin" --nranks $n \
				--bits "$bits" "${extra[@]}" --out "$out/e2e-n$n-$gdr-b$bits" \
				--hang-s "${RCMOE_E2E_HANG:-300}" >"$log" 2>&1; then
				status=1
			fi
			grep -E "^(rank|counters|e2e|\[rank)" "$log"
			grep -m3 -E "GDRDMA|via NET/RCMoE" "$log" || true
			gpu_buffers=no
			grep -q "via NET/RCMoE/[0-9]*/GDRDMA" "$log" && gpu_buffers=yes
			want=no
			[ $gdr = default ] && [ "$bits" != 0 ] && want=yes
			if [ $gpu_buffers != $want ]; then
				echo "FAIL: GPU buffers: $gpu_buffers, expected $want (GDRDMA in $log)"
				status=1
			fi
		done
	done
done
if [ "${RCMOE_E2E_AR:-0}" = 1 ]; then
	unset NCCL_NET_GDR_LEVEL RCMOE_CUDA_BUFFERS
	"$(dirname "$0")/ar-checks.sh" "$build" "$out/ar" || status=1
fi
exit $status
