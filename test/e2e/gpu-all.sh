#!/usr/bin/env bash
# Every GPU-machine check in one command, in priority order, each step bounded in time, so that a
# short lease of the GPU machine still gets the most important answers first. From the repository
# root, with a build made elsewhere (carry it over):
#
#   test/e2e/gpu-all.sh BUILD_DIR [OUT_DIR]
#
# Steps (RCMOE_GPU_ALL_STEPS="1 2 ..." to choose; all by default):
#   1 GPU tests: test/gpu/run-on-gpu.sh (codec, wdedup, net, context, coll; kbench)
#   2 unsupported-architecture refusal: needs RCMOE_GPU_ALL_ARCH_BUILD, a build made with a
#     -Dgpu_arch this GPU cannot run (e.g. 100 on an H100); NCCL's INFO log is kept
#   3 Quick start: tools/rcmoe-check.py under torchrun through rcmoe-run, lossless and 8-bit
#   4 PyTorch end to end: gpu-checks.sh (all-to-all) and ar-checks.sh (all-reduce), 4 ranks
#   5 lossless A/B at 4 and 8 ranks against RCMOE_GPU_ALL_OLD_PLUGIN (another plugin .so), with
#     the most threads any rank process had
#   6 all-reduce bench rows: PTS 1% and LSQ 8-bit against Socket, bf16, 64 and 256 MiB
#   7 dp_train.py: loss curves of none, pts:0.01 and lsq:8
#   8 all-to-all at an emulated 10 Gb/s link, 8 and 4 bits
#   9 collaboration dedup: torch_dedup.py, 4 ranks, all_to_all_single with 25% repeated rows,
#     RCMOE_A2A_DEDUP=on, lossless: exact, and the stats file's dedup records show saved bytes.
#     It covers the host-buffer path (RCMOE_CUDA_BUFFERS=auto keeps host buffers with dedup on,
#     C codec); the GPU window-dedup kernels are checked against that codec in step 1
#     (gpu/wdedup) and are not in the plugin's data path yet
# A summary goes to OUT_DIR/summary.txt and stdout; logs beside it. Exit status 0 only if every
# step that ran passed.
set -uo pipefail
build=${1:?usage: gpu-all.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-/tmp/rcmoe-gpu-all}}
mkdir -p "$out"
sum=$out/summary.txt
steps=" ${RCMOE_GPU_ALL_STEPS:-1 2 3 4 5 6 7 8 9} "
t0=$SECONDS
status=0
say() { echo "$*" | tee -a "$sum"; }
want() { [[ $steps == *" $1 "* ]]; }
# step NAME RC: record a step's result
step() {
	say "== step $1: rc=$2, $((SECONDS - t0)) s into the run"
	[ "$2" = 0 ] || status=1
}
plugin=$(readlink -f "$build/plugin/libnccl-net-rcmoe.so")
bench=$build/tools/bench/rcmoe-bench
say "rcmoe gpu-all: $(git rev-parse --short HEAD 2>/dev/null || echo '?') on" \
	"$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"

if want 1; then
	timeout 300 bash test/gpu/run-on-gpu.sh "$build" "$out/gpu" >"$out/gpu.txt" 2>&1
	rc=$?
	grep -E "passed,|^not ok|Assertion" "$out/gpu.txt" | head -20 | tee -a "$sum"
	step "1 GPU tests" $rc
fi

source "$(dirname "$0")/mps.sh"
rcmoe_e2e_setup "$build" "$out" >/dev/null

if want 2 && [ -n "${RCMOE_GPU_ALL_ARCH_BUILD:-}" ]; then
	NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET,ENV timeout 90 python3 \
		test/e2e/torch_collectives.py --nranks 2 --bits 8 --out "$out/arch" --hang-s 60 \
		--plugin "$(readlink -f "$RCMOE_GPU_ALL_ARCH_BUILD/plugin/libnccl-net-rcmoe.so")" \
		>"$out/arch.log" 2>&1
	rc=$?
	warn=$(grep -c "no GPU code" "$out/arch.log")
	grep -E "NET/RCMoE|WARN" "$out/arch.log" | grep -v "set by environment" | cut -c1-220 |
		awk '!seen[substr($0, 30)]++' | head -20 | tee -a "$sum"
	# The job must fail, and say why: the plugin's WARN naming the device and the fix.
	[ $rc != 0 ] && [ "$warn" -gt 0 ]
	step "2 arch refusal (job rc $rc, $warn refusal WARNs)" $?
fi

if want 3; then
	for bits in 0 8; do
		RCMOE_A2A_BITS=$bits NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET timeout 120 \
			tools/rcmoe-run --plugin "$plugin" -- torchrun --nproc-per-node 2 \
			tools/rcmoe-check.py --one-host >"$out/quickstart-b$bits.log" 2>&1
		rc=$?
		grep -E "^rcmoe-check" "$out/quickstart-b$bits.log" | head -6 | tee -a "$sum"
		step "3 Quick start, RCMOE_A2A_BITS=$bits" $rc
	done
fi

if want 4; then
	RCMOE_E2E_RANKS=4 RCMOE_E2E_HANG=120 timeout 600 bash test/e2e/gpu-checks.sh "$build" \
		"$out/e2e" >"$out/e2e.txt" 2>&1
	rc=$?
	grep -E "^e2e|FAIL" "$out/e2e.txt" | head -12 | tee -a "$sum"
	step "4 gpu-checks.sh, 4 ranks" $rc
	RCMOE_E2E_RANKS=4 RCMOE_E2E_HANG=120 timeout 300 bash test/e2e/ar-checks.sh "$build" \
		"$out/ar" >"$out/ar.txt" 2>&1
	rc=$?
	grep -vE "^\[rank|^$" "$out/ar.txt" | cut -c1-200 | head -20 | tee -a "$sum"
	step "4 ar-checks.sh, 4 ranks" $rc
fi

# The most threads any rank process of rcmoe-bench had while pid $1 ran.
most_threads() {
	local most=0 n p
	while kill -0 "$1" 2>/dev/null; do
		for p in $(pgrep -f rcmoe-bench); do
			n=$(ls "/proc/$p/task" 2>/dev/null | wc -l)
			[ "$n" -gt "$most" ] && most=$n
		done
		sleep 1
	done
	echo "$most"
}

if want 5 && [ -n "${RCMOE_GPU_ALL_OLD_PLUGIN:-}" ]; then
	for n in 4 8; do
		for which in old new old new; do
			p=$plugin
			[ $which = old ] && p=$(readlink -f "$RCMOE_GPU_ALL_OLD_PLUGIN")
			timeout 200 "$bench" -n $n -O alltoall,allreduce -d bfloat16 -b 64M -e 64M \
				--runs 1 --gdr-level unset -T socket,rcmoe --plugin "$p" \
				>"$out/ab-n$n-$which.txt" 2>&1 &
			pid=$!
			threads=$(most_threads $pid)
			wait $pid
			rc=$?
			say "lossless n=$n $which plugin: at most $threads threads in a rank"
			grep -A4 -i "ratio" "$out/ab-n$n-$which.txt" | head -6 | tee -a "$sum"
			step "5 lossless A/B n=$n $which" $rc
		done
	done
fi

if want 6; then
	for codec in "--ar-density 0.01" "--ar-bits 8"; do
		# shellcheck disable=SC2086
		timeout 300 "$bench" --mps -n 4 -O allreduce -d bfloat16 -b 64M -e 256M -f 4 \
			--runs 1 $codec --plugin "$plugin" >"$out/ar-bench.txt" 2>&1
		rc=$?
		cat "$out/ar-bench.txt" >>"$out/ar-bench-all.txt"
		grep -iE "ratio|collnet|FAIL|WARN" "$out/ar-bench.txt" | cut -c1-200 | head -16 |
			tee -a "$sum"
		step "6 all-reduce bench $codec" $rc
	done
fi

if want 7; then
	timeout 600 python3 test/e2e/dp_train.py --build "$build" --nranks 4 \
		--modes none,pts:0.01,lsq:8 --out "$out/dp" >"$out/dp.txt" 2>&1
	rc=$?
	tail -20 "$out/dp.txt" | cut -c1-200 | tee -a "$sum"
	step "7 dp_train" $rc
fi

if want 8; then
	for bits in 8 4; do
		timeout 300 "$bench" --mps -n 4 -O alltoall -d bfloat16 -b 64M -e 256M -f 4 --runs 1 \
			-c error --gdr-level unset --plugin "$plugin" --link-gbps 10 \
			--rcmoe-env RCMOE_A2A_BITS=$bits >"$out/link10-b$bits.txt" 2>&1
		rc=$?
		grep -A5 -i "ratio" "$out/link10-b$bits.txt" | head -8 | tee -a "$sum"
		step "8 all-to-all at 10 Gb/s, $bits bits" $rc
	done
fi
if want 9; then
	unset RCMOE_CUDA_BUFFERS
	PYTHONUNBUFFERED=1 timeout 400 python3 test/e2e/torch_dedup.py --plugin "$plugin" \
		--nranks 4 --dup-frac 0.25 --out "$out/dedup" --hang-s 300 >"$out/dedup.txt" 2>&1
	rc=$?
	grep -E "^(counters|e2e|rank)" "$out/dedup.txt" | cut -c1-200 | head -12 | tee -a "$sum"
	step "9 collaboration dedup, 4 ranks" $rc
fi
exit $status
