#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# All-reduce through the plugin's collective side, on a GPU machine, from the repository root:
#   test/e2e/ar-checks.sh BUILD_DIR [OUT_DIR]
# Starts MPS (ranks share GPU 0; test/e2e/mps.sh), then runs test/e2e/torch_allreduce.py with 2
# and 4 ranks in the modes pts:0.01, lsq:8 and collnet (lossless): fp32 and bf16 all_reduce the
# same bits on every rank and within the stated bounds of the exact sum, integer-valued floats
# exact losslessly, int64 exact, and the plugin's counters showing collective-side calls of the
# mode. Narrow it with RCMOE_E2E_RANKS="2 4", RCMOE_E2E_AR_MODES="pts:0.01,lsq:8,collnet";
# RCMOE_E2E_FORCE_COLLNET=1 adds --force-collnet (NCCL_ALGO=allreduce:CollNetChain, until the
# plugin's tuner steers all-reduce by itself); RCMOE_E2E_HANG: seconds before a rank counts as
# hung. Also run by test/e2e/gpu-checks.sh with RCMOE_E2E_AR=1. Exit status 0 only if all pass.
set -uo pipefail
build=${1:?usage: ar-checks.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-/tmp/rcmoe-ar-checks}}
source "$(dirname "$0")/mps.sh"
rcmoe_e2e_setup "$build" "$out"

force=()
[ "${RCMOE_E2E_FORCE_COLLNET:-0}" = 1 ] && force=(--force-collnet)
status=0
for n in ${RCMOE_E2E_RANKS:-2 4}; do
	log="$out/torch-allreduce-n$n.log"
	echo "== torch all-reduce e2e: $n ranks, modes ${RCMOE_E2E_AR_MODES:-pts:0.01,lsq:8,collnet}"
	if ! timeout 3600 python3 test/e2e/torch_allreduce.py --plugin "$plugin" --nranks "$n" \
		--modes "${RCMOE_E2E_AR_MODES:-pts:0.01,lsq:8,collnet}" "${force[@]}" \
		--out "$out/ar-n$n" --hang-s "${RCMOE_E2E_HANG:-300}" >"$log" 2>&1; then
		status=1
	fi
	grep -vE '^\[rank' "$log"
done
exit $status
