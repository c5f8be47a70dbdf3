# shellcheck shell=bash
# Sourced by the GPU-machine scripts in test/e2e: the plugin of a build directory, and MPS started
# for the ranks that share GPU 0 (quit again when the script exits).
#
#   rcmoe_e2e_setup BUILD_DIR OUT_DIR   sets $plugin, makes OUT_DIR, prints the GPUs, starts MPS

rcmoe_e2e_setup() {
	local build=$1
	mkdir -p "$2"
	plugin=$(readlink -f "$build/plugin/libnccl-net-rcmoe.so")
	[ -f "$plugin" ] || { echo "no plugin at $plugin"; exit 1; }
	nvidia-smi -L
	export CUDA_MPS_PIPE_DIRECTORY=/tmp/rcmoe-mps CUDA_MPS_LOG_DIRECTORY=/tmp/rcmoe-mps-log
	mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
	rcmoe_started_mps=0
	if nvidia-cuda-mps-control -d 2>/dev/null; then rcmoe_started_mps=1; fi
	trap rcmoe_e2e_stop_mps EXIT
}

rcmoe_e2e_stop_mps() {
	[ "${rcmoe_started_mps:-0}" = 1 ] && echo quit | nvidia-cuda-mps-control
}
