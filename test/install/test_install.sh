#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# meson install of this build directory into a temporary DESTDIR (the build is not touched and
# nothing is rebuilt), then the installed tree used as a user would use it:
#  - the plugin is in <libdir> and loads by its name through LD_LIBRARY_PATH, as NCCL loads it
#    for NCCL_NET_PLUGIN=rcmoe;
#  - rcmoe-bench --loopback, run from <bindir> with neither --plugin, RCMOE_PLUGIN nor
#    LD_LIBRARY_PATH, finds the installed plugin by itself; a copy outside the prefix finds it
#    through LD_LIBRARY_PATH, and fails without it;
#  - rcmoe-run, installed and executable, hands the installed plugin to the command it runs;
#  - LICENSE, README.md and docs/*.md are in <datadir>/doc/rcmoe.
# Registered by test/install/meson.build (suite 'install'); prints TAP.
#
#   test_install.sh MESON BUILD_DIR SOURCE_DIR PREFIX BINDIR LIBDIR DATADIR DLOPEN_PROG \
#       tools|notools
set -uo pipefail
[ $# -eq 9 ] || {
	echo "usage: $0 MESON BUILD_DIR SOURCE_DIR PREFIX BINDIR LIBDIR DATADIR DLOPEN_PROG" \
		"tools|notools" >&2
	exit 2
}
meson=$1 build=$2 src=$3 prefix=$4 bindir=$5 libdir=$6 datadir=$7 dlopen_name=$8 tools=$9
so=libnccl-net-rcmoe.so

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rcmoe-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest
# Meson's directory options are relative to the prefix unless given outside it.
under_prefix() { case $1 in /*) echo "$dest$1" ;; *) echo "$dest$prefix/$1" ;; esac; }
bin=$(under_prefix "$bindir")
lib=$(under_prefix "$libdir")
doc=$(under_prefix "$datadir")/doc/rcmoe

n=0
failed=0
ok() {
	n=$((n + 1))
	echo "ok $n - $1"
}
# not_ok DESCRIPTION [FILE]: a failed check, with FILE (its output) as diagnostics.
not_ok() {
	n=$((n + 1))
	failed=1
	echo "not ok $n - $1"
	[ -n "${2:-}" ] && [ -f "$2" ] && sed 's/^/#   /' "$2" | head -40
	return 0
}
skip() {
	n=$((n + 1))
	echo "ok $n - $1 # SKIP $2"
}
# check DESCRIPTION COMMAND...: passes when the command exits 0; its output is shown otherwise.
check() {
	local desc=$1
	shift
	if "$@" >"$tmp/out" 2>&1; then ok "$desc"; else not_ok "$desc" "$tmp/out"; fi
}
finish() {
	echo "1..$n"
	exit $failed
}

echo "# meson install -C $build --destdir $dest (prefix $prefix)"
if env -u DESTDIR "$meson" install -C "$build" --no-rebuild --destdir "$dest" \
	>"$tmp/install.log" 2>&1; then
	ok "meson install into a temporary DESTDIR"
else
	not_ok "meson install into a temporary DESTDIR" "$tmp/install.log"
	finish
fi

# The plugin, by name, as NCCL loads it.
check "plugin installed in <libdir> ($libdir)" test -f "$lib/$so"
check "plugin loads by name through LD_LIBRARY_PATH (dlopen \"$so\")" \
	env -u RCMOE_PLUGIN LD_LIBRARY_PATH="$lib" "$dlopen_name" "$lib"

# The license and the documentation.
if grep -q "Apache License" "$doc/LICENSE" 2>/dev/null && grep -q "Version 2.0" "$doc/LICENSE" &&
	cmp -s "$src/LICENSE" "$doc/LICENSE"; then
	ok "LICENSE (Apache-2.0) installed in <datadir>/doc/rcmoe"
else
	not_ok "LICENSE (Apache-2.0) installed in <datadir>/doc/rcmoe"
fi
check "README.md installed in <datadir>/doc/rcmoe" cmp "$src/README.md" "$doc/README.md"
missing=()
for f in "$src"/docs/*.md; do
	[ -e "$f" ] || continue
	cmp -s "$f" "$doc/docs/$(basename "$f")" || missing+=("docs/$(basename "$f")")
done
if [ ${#missing[@]} -eq 0 ]; then
	ok "docs/*.md installed in <datadir>/doc/rcmoe/docs"
else
	echo "missing or different: ${missing[*]}" >"$tmp/out"
	not_ok "docs/*.md installed in <datadir>/doc/rcmoe/docs" "$tmp/out"
fi

if [ "$tools" != tools ]; then
	for t in "rcmoe-bench installed" "rcmoe-bench --loopback finds the installed plugin" \
		"rcmoe-bench finds the plugin through LD_LIBRARY_PATH" "rcmoe-run installed" \
		"rcmoe-run finds the installed plugin" "rcmoe-check.py installed" \
		"rcmoe-check.py --help" "moe_train_bench.py installed" "moe_train_bench.py --selftest" \
		"moe_train_bench.py finds the installed plugin"; do
		skip "$t" "built with -Dtools=false"
	done
	finish
fi

# rcmoe-bench, run from the install tree with nothing pointing at the plugin.
want=$(realpath "$lib/$so" 2>/dev/null || echo "$lib/$so")
check "rcmoe-bench installed in <bindir> ($bindir), executable" test -x "$bin/rcmoe-bench"
# loopback_run BENCH [env...]: the plugin alone over 127.0.0.1, a few small sizes.
loopback_run() {
	local exe=$1
	shift
	env -u RCMOE_PLUGIN -u LD_LIBRARY_PATH "$@" "$exe" --loopback -T rcmoe -b 64K -e 256K \
		--loopback-bytes 4M >"$tmp/out" 2>&1
}
if loopback_run "$bin/rcmoe-bench" && grep -qF "# plugin $want:" "$tmp/out"; then
	ok "rcmoe-bench --loopback from <bindir> finds the installed plugin by itself"
else
	echo "expected a line '# plugin $want: ...'" >>"$tmp/out"
	not_ok "rcmoe-bench --loopback from <bindir> finds the installed plugin by itself" "$tmp/out"
fi
# meson install drops the build's RUNPATH: the installed binary must keep the entries outside
# the build directory (CUDA_HOME/lib64, where libnccl.so.2 of a CUDA build is found).
runpath() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(R[UN]*PATH).*\[\(.*\)\]$/\1/p'; }
if ! command -v readelf >/dev/null 2>&1; then
	skip "installed rcmoe-bench keeps the RUNPATH to its libraries" "no readelf"
else
	lost=()
	IFS=: read -ra built_rp <<<"$(runpath "$build/tools/bench/rcmoe-bench")"
	inst_rp=":$(runpath "$bin/rcmoe-bench"):"
	for d in "${built_rp[@]}"; do
		case $d in '' | \$ORIGIN* | "$build"/*) continue ;; esac
		case $inst_rp in *":$d:"*) ;; *) lost+=("$d") ;; esac
	done
	if [ ${#lost[@]} -eq 0 ]; then
		ok "installed rcmoe-bench keeps the RUNPATH to its libraries"
	else
		echo "lost on install: ${lost[*]} (installed RUNPATH '$inst_rp')" >"$tmp/out"
		not_ok "installed rcmoe-bench keeps the RUNPATH to its libraries" "$tmp/out"
	fi
fi
# A copy outside the prefix: nothing beside it, so only LD_LIBRARY_PATH can lead to the plugin.
mkdir -p "$tmp/elsewhere/bin"
cp "$bin/rcmoe-bench" "$tmp/elsewhere/bin/"
if loopback_run "$tmp/elsewhere/bin/rcmoe-bench" LD_LIBRARY_PATH="$lib" &&
	grep -qF "# plugin $want:" "$tmp/out"; then
	ok "rcmoe-bench outside the prefix finds the plugin through LD_LIBRARY_PATH"
else
	not_ok "rcmoe-bench outside the prefix finds the plugin through LD_LIBRARY_PATH" "$tmp/out"
fi
if ! loopback_run "$tmp/elsewhere/bin/rcmoe-bench" && grep -q "cannot load the plugin" "$tmp/out"
then
	ok "rcmoe-bench outside the prefix, without LD_LIBRARY_PATH, says it has no plugin"
else
	not_ok "rcmoe-bench outside the prefix, without LD_LIBRARY_PATH, says it has no plugin" \
		"$tmp/out"
fi

# rcmoe-run: installed, executable, and hands the installed plugin to the command.
check "rcmoe-run installed in <bindir>, executable" test -x "$bin/rcmoe-run"
check "rcmoe-run --help" "$bin/rcmoe-run" --help
want_run=$(cd "$lib" && pwd)/$so
got=$(env -u RCMOE_PLUGIN "$bin/rcmoe-run" printenv NCCL_NET_PLUGIN NCCL_NET 2>"$tmp/out" |
	tr '\n' ' ')
if [ "$got" = "$want_run RCMoE " ]; then
	ok "rcmoe-run finds the installed plugin (NCCL_NET_PLUGIN=$want_run NCCL_NET=RCMoE)"
else
	echo "got: '$got'" >>"$tmp/out"
	echo "expected: '$want_run RCMoE'" >>"$tmp/out"
	not_ok "rcmoe-run finds the installed plugin" "$tmp/out"
fi
# rcmoe-check.py, the Quick start's check: installed beside rcmoe-run and runnable (its --help
# needs no PyTorch).
check "rcmoe-check.py installed in <bindir>, executable" test -x "$bin/rcmoe-check.py"
check "rcmoe-check.py --help" python3 "$bin/rcmoe-check.py" --help
# moe_train_bench.py, the training benchmark: installed beside it, its self-test (no torch), and
# the plugin it would run with, found beside the installed tree.
check "moe_train_bench.py installed in <bindir>, executable" test -x "$bin/moe_train_bench.py"
check "moe_train_bench.py --selftest" python3 "$bin/moe_train_bench.py" --selftest
got=$(env -u RCMOE_PLUGIN python3 "$bin/moe_train_bench.py" --dry-run --modes rcmoe \
	--out "$tmp/moeb" 2>"$tmp/out" | sed -n 's/^  NCCL_NET_PLUGIN=//p')
if [ -n "$got" ] && [ "$(realpath "$got" 2>/dev/null)" = "$want" ]; then
	ok "moe_train_bench.py finds the installed plugin"
else
	echo "got: '$got', expected: '$want'" >>"$tmp/out"
	not_ok "moe_train_bench.py finds the installed plugin" "$tmp/out"
fi
# RCMOE_PLUGIN still comes first.
if ! RCMOE_PLUGIN=$tmp/none.so "$bin/rcmoe-run" true >"$tmp/out" 2>&1 &&
	grep -q "plugin not found: $tmp/none.so" "$tmp/out"; then
	ok "rcmoe-run: RCMOE_PLUGIN comes before the installed plugin"
else
	not_ok "rcmoe-run: RCMOE_PLUGIN comes before the installed plugin" "$tmp/out"
fi
finish
