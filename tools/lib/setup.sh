# shellcheck shell=bash
# Shared by tools/test.sh and tools/bench.sh: install what the build needs when it is missing
# (Debian/Ubuntu, as root), find CUDA, and configure + build one build directory.

rcmoe_need() { command -v "$1" >/dev/null 2>&1; }

# Why the build or the tests need a package: said before anything is installed.
rcmoe_pkg_why() {
	case $1 in
	meson) echo "the build system (meson setup, test, install)" ;;
	ninja-build) echo "runs the build that meson writes" ;;
	gcc) echo "the C compiler (plugin, tools, tests)" ;;
	pkg-config) echo "lets meson find Criterion" ;;
	binutils) echo "nm, for the check of the plugin's exported symbols" ;;
	libcriterion-dev) echo "Criterion, the framework of the tests in test/" ;;
	clang-format*) echo "the style check (tools/check-style.sh)" ;;
	*) echo "needed by the build or the tests" ;;
	esac
}

# rcmoe_pkg_list PKG...: one line per package, and why it is needed.
rcmoe_pkg_list() {
	local p
	for p in "$@"; do
		printf '#   %-18s %s\n' "$p" "$(rcmoe_pkg_why "$p")"
	done
}

# Packages: meson, ninja and a C compiler; for the tests also pkg-config, binutils, Criterion and
# clang-format (the style check, tools/check-style.sh). As root with apt-get, the missing ones
# are listed with why, then installed; otherwise listed, and the call fails.
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
		rcmoe_need clang-format-14 || rcmoe_need clang-format || missing+=(clang-format)
	fi
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" = 0 ] && rcmoe_need apt-get; then
		echo "# missing, to be installed with apt-get (apt-get update, then apt-get install):"
		rcmoe_pkg_list "${missing[@]}"
		apt-get update -qq >/dev/null
		# The tree is formatted with clang-format 14: take that version where the archive has it
		# (Debian 12, Ubuntu 22.04/24.04), else the distribution's default clang-format.
		local i
		for i in "${!missing[@]}"; do
			if [ "${missing[$i]}" = clang-format ] &&
				apt-cache show clang-format-14 >/dev/null 2>&1; then
				missing[i]=clang-format-14
			fi
		done
		echo "# apt-get install -y ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	else
		echo "missing (install them, or run this as root on Debian/Ubuntu):" >&2
		rcmoe_pkg_list "${missing[@]}" >&2
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
