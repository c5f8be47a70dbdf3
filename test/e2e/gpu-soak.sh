#!/usr/bin/env bash
# The MoE soak (test/e2e/moe_soak.py) over every configuration the reliability issue asks for,
# on a GPU machine, from the repository root:
#
#   test/e2e/gpu-soak.sh BUILD_DIR [OUT_DIR]
#
# Starts MPS (ranks share GPU 0), then runs moe_soak.py for 2 and 4 ranks, RCMOE_A2A_BITS 0, 8, 4
# and 2, fp32 and bf16 tokens, GPU buffers (the plugin's default under MPS when compressing) and
# host buffers (RCMOE_CUDA_BUFFERS=off), each until at least RCMOE_SOAK_COLLECTIVES (3000)
# collectives, RCMOE_SOAK_PARALLEL (4) jobs at a time (they share the GPU under MPS). Narrow it
# with RCMOE_SOAK_RANKS="2 4", RCMOE_SOAK_BITS="0 8 4 2", RCMOE_SOAK_DTYPES="fp32 bf16",
# RCMOE_SOAK_BUFFERS="default host"; RCMOE_SOAK_ARGS replaces the moe_soak.py options added to
# each job (default "--batch 4": a quarter of the crash report's tokens, so the 32 jobs fit the
# device time; "--batch 16" is its full size). A job that fails, hangs, faults the GPU
# or logs an NCCL WARN fails the run. One line per job, then "gpu-soak: N passed, N failed".
set -uo pipefail
build=${1:?usage: gpu-soak.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-/tmp/rcmoe-gpu-soak}}
source "$(dirname "$0")/mps.sh"
rcmoe_e2e_setup "$build" "$out"

# one_job N BITS DTYPE BUFFERS: run one configuration, print its verdict line.
one_job() {
	local n=$1 bits=$2 dtype=$3 bufs=$4
	local name="soak-n$n-b$bits-$dtype-$bufs" env=()
	[ "$bufs" = host ] && env=(RCMOE_CUDA_BUFFERS=off)
	local t0=$SECONDS
	env "${env[@]}" NCCL_DEBUG=WARN PYTHONUNBUFFERED=1 timeout 900 python3 \
		test/e2e/moe_soak.py --plugin "$plugin" --nranks "$n" --bits "$bits" \
		--dtype "$dtype" --min-collectives "${RCMOE_SOAK_COLLECTIVES:-3000}" \
		--out "$out/$name" ${RCMOE_SOAK_ARGS:---batch 4} >"$out/$name.log" 2>&1
	local rc=$?
	local verdict
	verdict=$(grep -E "^soak " "$out/$name.log" | tail -1)
	# NCCL's and the plugin's warnings mean something went wrong even when the job passed.
	local warns
	warns=$(grep -cE "NCCL WARN|NET/RCMoE.*(refused|failed|error)|illegal memory" \
		"$out/$name.log")
	if [ $rc != 0 ] || [ "$warns" != 0 ] || [ -z "$verdict" ]; then
		echo "FAIL $name: rc=$rc, $warns warnings, $((SECONDS - t0)) s: ${verdict:-no verdict}"
		grep -E "FAIL|WARN|rror" "$out/$name.log" | head -5
	else
		echo "ok   $name: $((SECONDS - t0)) s: $verdict"
	fi
}

jobs_list=()
for n in ${RCMOE_SOAK_RANKS:-2 4}; do
	for bits in ${RCMOE_SOAK_BITS:-0 8 4 2}; do
		for dtype in ${RCMOE_SOAK_DTYPES:-fp32 bf16}; do
			for bufs in ${RCMOE_SOAK_BUFFERS:-default host}; do
				jobs_list+=("$n $bits $dtype $bufs")
			done
		done
	done
done

par=${RCMOE_SOAK_PARALLEL:-4}
for ((i = 0; i < ${#jobs_list[@]}; i += par)); do
	for ((j = i; j < i + par && j < ${#jobs_list[@]}; j++)); do
		# shellcheck disable=SC2086
		one_job ${jobs_list[$j]} >"$out/verdict-$j.txt" &
	done
	wait
	for ((j = i; j < i + par && j < ${#jobs_list[@]}; j++)); do
		cat "$out/verdict-$j.txt"
	done
done
passed=$(cat "$out"/verdict-*.txt | grep -c "^ok ")
failed=$(cat "$out"/verdict-*.txt | grep -c "^FAIL")
echo "gpu-soak: $passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" = ${#jobs_list[@]} ]
