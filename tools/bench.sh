#!/usr/bin/env bash
# Set up, build and run the main benchmark.
#  - With a GPU: rcmoe-bench, 4 ranks on GPU 0 under MPS, bf16 all-to-all and all-reduce at
#    64 MiB and 256 MiB, NCCL's built-in Socket transport then rcmoe in the same invocation,
#    3 runs, median ratios; then the all-to-all compressed with 8-bit and 4-bit LSQ. Extra
#    arguments go to every rcmoe-bench run (e.g. -n 2).
#  - Without a GPU: the loopback benchmark (the plugin's net table over 127.0.0.1 against one
#    plain TCP stream), then the CPU codec benchmark (LSQ against memcpy in the same run).
# Results: results/bench.json, results/bench-a2a-b8.json and -b4.json (and the tables on stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/lib/setup.sh
rcmoe_install_deps 0
rcmoe_find_cuda
rcmoe_build build-bench -Dbuildtype=release -Dtests=disabled
mkdir -p results
bench=build-bench/tools/bench/rcmoe-bench

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 &&
	grep -q "RCMOE_HAVE_CUDA" build-bench/build.ninja; then
	# Use the NCCL that PyTorch ships when there is one (the version jobs really run), else the
	# system's or the toolkit's.
	torch_nccl=$(python3 -c 'import os, nvidia.nccl as n; print(os.path.join(list(n.__path__)[0], "lib"))' \
		2>/dev/null || true)
	[ -n "$torch_nccl" ] && export LD_LIBRARY_PATH="$torch_nccl:${LD_LIBRARY_PATH:-}"
	# Lossless first (the plugin keeps host buffers: nothing to stage), then the compressed
	# all-to-all at 8 and 4 bits (GPU buffers under MPS, coded on the GPU), each against
	# NCCL's Socket transport in the same invocation; -c error reports relative L2 and max abs.
	"$bench" --mps -n 4 -O alltoall,allreduce -d bfloat16 -b 64M -e 256M -f 4 --runs 3 \
		--gdr-level unset --json results/bench.json "$@"
	for bits in 8 4; do
		echo
		"$bench" --mps -n 4 -O alltoall -d bfloat16 -b 64M -e 256M -f 4 --runs 3 -c error \
			--gdr-level unset --rcmoe-env RCMOE_A2A_BITS=$bits \
			--json results/bench-a2a-b$bits.json "$@"
	done
	exit 0
fi
echo "# no GPU here: loopback benchmark of the plugin's transport"
"$bench" --loopback --json results/bench-loopback.json "$@"
echo
echo "# CPU codec benchmark (the host-buffer path's encoder and decoder)"
exec build-bench/tools/cbench/rcmoe-cbench -b 64K -e 64M -f 4 --codec lsq,pts,wdedup --json results/cbench.json
