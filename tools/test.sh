#!/usr/bin/env bash
# Set up and run every test: the style check (tools/check-style.sh) and the path check
# (tools/check-paths.py), one counted case each; the CPU suites (unit, codec, transport, plugin,
# coll, smoke; GPU cases skip without a GPU, saying so), the tools and install suites (install: meson
# install into a temporary DESTDIR, then the installed tree used), then the CPU suites again under
# AddressSanitizer + UBSan and the threaded ones under ThreadSanitizer. Ends with one line:
# "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
source tools/lib/setup.sh
rcmoe_install_deps 1 || exit 1
rcmoe_find_cuda

failed=0
passed_cases=0
failed_cases=0
skipped_cases=0

# count_cases DIR: add the run's results to the totals: TAP cases from Meson's log (Criterion
# prints "ok - suite::case"), and one case for each test that speaks no TAP (tools) or was
# skipped whole (GPU suites on a machine without a GPU).
count_cases() {
	local dir=$1 p f s
	p=$(grep -cE '^ok( |$)' "$dir/meson-logs/testlog.txt" || true)
	s=$(grep -cE '^ok( |$).*# SKIP' "$dir/meson-logs/testlog.txt" || true)
	f=$(grep -cE '^not ok( |$)' "$dir/meson-logs/testlog.txt" || true)
	passed_cases=$((passed_cases + p - s))
	skipped_cases=$((skipped_cases + s))
	failed_cases=$((failed_cases + f))
	p=$(grep -E '^ *[0-9]+/[0-9]+ ' "$dir/test.out" | grep -v 'subtests' |
		grep -cE ' (OK|EXPECTEDFAIL) ' || true)
	s=$(grep -E '^ *[0-9]+/[0-9]+ ' "$dir/test.out" | grep -v 'subtests' | grep -cE ' SKIP ' ||
		true)
	f=$(grep -E '^ *[0-9]+/[0-9]+ ' "$dir/test.out" | grep -v 'subtests' |
		grep -cE ' (FAIL|ERROR|TIMEOUT|UNEXPECTEDPASS) ' || true)
	passed_cases=$((passed_cases + p))
	skipped_cases=$((skipped_cases + s))
	failed_cases=$((failed_cases + f))
}

# run_suites NAME DIR [env...] -- SUITES...
run_suites() {
	local name=$1 dir=$2
	shift 2
	local envs=() suites=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	for s in "$@"; do suites+=(--suite "$s"); done
	echo "# $name: meson test ${suites[*]}"
	if ! env "${envs[@]}" meson test -C "$dir" "${suites[@]}" --print-errorlogs \
		--num-processes 2 >"$dir/test.out" 2>&1; then
		failed=1
		echo "# $name: FAILED"
	fi
	grep -E '^ *[0-9]+/[0-9]+ ' "$dir/test.out" || true
	count_cases "$dir"
}

# run_check NAME COMMAND...: one counted case for a whole-tree check (style, paths). Its output is
# shown; a non-zero exit counts one failed case and fails the run.
run_check() {
	local name=$1
	shift
	echo "# $name: $*"
	if "$@"; then
		passed_cases=$((passed_cases + 1))
	else
		failed_cases=$((failed_cases + 1))
		failed=1
		echo "# $name: FAILED"
	fi
}

# The ABI checks (plugin/abi/abi_checks.c) are compile-time: every build below runs them.
run_check style tools/check-style.sh
run_check paths python3 tools/check-paths.py

echo "# build (CUDA objects included when nvcc is present)"
rcmoe_build build-test -Dbuildtype=debugoptimized || exit 1
run_suites main build-test -- unit codec transport plugin coll smoke gpu tools install

if [ "${RCMOE_SKIP_SANITIZERS:-0}" != 1 ]; then
	echo "# build with AddressSanitizer + UndefinedBehaviorSanitizer"
	rcmoe_build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dcuda=disabled \
		-Dtools=false || exit 1
	run_suites asan build-asan ASAN_OPTIONS=protect_shadow_gap=0:detect_leaks=1 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 -- unit codec transport plugin coll
	echo "# build with ThreadSanitizer (transport workers, CPU codec workers)"
	rcmoe_build build-tsan -Db_sanitize=thread -Db_lundef=false -Dcuda=disabled -Dtools=false ||
		exit 1
	# Criterion's runner does not start under TSan; the transport and plugin suites build against
	# a small stand-in (test/transport/cr_shim) there.
	run_suites tsan build-tsan TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 -- \
		transport plugin
fi

echo "$passed_cases passed, $failed_cases failed, $skipped_cases skipped"
[ $failed = 0 ] && [ $failed_cases = 0 ]
