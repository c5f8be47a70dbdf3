# shellcheck shell=bash
# Shared by tools/test.sh and tools/bench.sh: install what the build needs when it is missing
# (Debian/Ubuntu, as root), find CUDA, and configure + build one build directory.

rcmoe_need() { command -v "$1" >/dev/null 2>&1; }

# Packages: meson, ninja and a C compiler; for the tests also pkg-config, binutils and Criterion.
rcmoe_install_deps() {
	local want_tests=$1 missing=()
	rcmoe_need meson || missing+=(meson)
	rcmoe_need ninja || missing+=(ninja-build)
	rcmoe_need cc || missing+=(gcc)
	# The tests also need Criterion (found through pkg-config) and nm (the export check).
	if [ "$want_tests" = 1 ]; then
		rcmoe_need pkg-config || missing+=(pkg-config)
		rcmoe_need nm || missing+=(binutils)
		if ! pkg-config --exists criterion 2>/dev/null; then
			missing+=(libcriterion-dev)
		fi
	fi
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" = 0 ] && rcmoe_need apt-get; then
		echo "# installing: ${missing[*]}"
		apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	else
		echo "missing: ${missing[*]} (install them, or run as root on Debian/Ubuntu)" >&2
		return 1
	fi
}

# CUDA's nvcc on PATH when the toolkit is there (CUDA_HOME, else /usr/local/cuda).
rcmoe_find_cuda() {
	local home=${CUDA_HOME:-/usr/local/cuda}
	if [ -x "$home/bin/nvcc" ]; then
		export PATH="$home/bin:$PATH"
		export CUDA_HOME="$home"
	fi
}

# rcmoe_build DIR [meson options...]: configure once, then build.
rcmoe_build() {
	local dir=$1
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; return 1; }
	fi
	ninja -C "$dir" >"$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; return 1; }
}
