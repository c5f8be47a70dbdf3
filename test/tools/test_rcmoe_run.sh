#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# tools/rcmoe-run: what it puts in the command's environment. NCCL_COLLNET_ENABLE=1 (and one line
# on stderr) exactly when all-reduce compression is requested and the user has not set it.
# Registered by test/tools/meson.build (suite 'tools'); prints TAP.
#
#   test_rcmoe_run.sh RCMOE_RUN PLUGIN_SO
set -uo pipefail
[ $# -eq 2 ] || { echo "usage: $0 RCMOE_RUN PLUGIN_SO" >&2; exit 2; }
run=$1 plugin=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rcmoe-run-test.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)) failed=$((failed + 1))
	echo "not ok $n - $1"
	[ -f "${2:-}" ] && sed 's/^/# /' "$2"
}

# run_case NAME EXPECTED_VALUE EXPECTED_STDERR_LINES [VAR=VALUE...]: the command prints
# NCCL_COLLNET_ENABLE as it sees it ("<unset>" when unset); stderr is counted in lines.
run_case() {
	local name=$1 want=$2 want_lines=$3
	shift 3
	local got lines
	got=$(env -u NCCL_COLLNET_ENABLE -u RCMOE_AR_DENSITY -u RCMOE_AR_BITS -u RCMOE_AR_CODEC \
		-u RCMOE_PLUGIN "$@" "$run" --plugin "$plugin" -- \
		sh -c 'printf "%s" "${NCCL_COLLNET_ENABLE-<unset>}"' 2>"$tmp/err")
	lines=$(grep -c . "$tmp/err")
	if [ "$got" = "$want" ] && [ "$lines" -eq "$want_lines" ] &&
		{ [ "$want_lines" -eq 0 ] || grep -q "NCCL_COLLNET_ENABLE=1" "$tmp/err"; }; then
		ok "$name: NCCL_COLLNET_ENABLE $want, $lines stderr line(s)"
	else
		echo "got '$got' (want '$want'), $lines stderr line(s) (want $want_lines)" >>"$tmp/err"
		not_ok "$name" "$tmp/err"
	fi
}

echo "1..11"
run_case "no all-reduce compression" "<unset>" 0
run_case "RCMOE_AR_DENSITY=0.01" 1 1 RCMOE_AR_DENSITY=0.01
run_case "RCMOE_AR_DENSITY=1e-3" 1 1 RCMOE_AR_DENSITY=1e-3
run_case "RCMOE_AR_BITS=8" 1 1 RCMOE_AR_BITS=8
run_case "RCMOE_AR_CODEC=pts" 1 1 RCMOE_AR_CODEC=pts RCMOE_AR_DENSITY=0.05
run_case "RCMOE_AR_CODEC=lsq" 1 1 RCMOE_AR_CODEC=lsq
run_case "RCMOE_AR_DENSITY=0 RCMOE_AR_BITS=0 RCMOE_AR_CODEC=auto" "<unset>" 0 \
	RCMOE_AR_DENSITY=0 RCMOE_AR_BITS=0 RCMOE_AR_CODEC=auto
run_case "the user's NCCL_COLLNET_ENABLE=0 is kept" 0 0 RCMOE_AR_DENSITY=0.01 \
	NCCL_COLLNET_ENABLE=0
run_case "the user's NCCL_COLLNET_ENABLE=1 is kept, silently" 1 0 RCMOE_AR_BITS=4 \
	NCCL_COLLNET_ENABLE=1
run_case "an empty NCCL_COLLNET_ENABLE is the user's too" "" 0 RCMOE_AR_DENSITY=0.01 \
	NCCL_COLLNET_ENABLE=

# The rest of what it sets is unchanged by the new variable.
got=$(env -u RCMOE_PLUGIN RCMOE_AR_DENSITY=0.01 "$run" --plugin "$plugin" -- \
	sh -c 'printf "%s %s" "$NCCL_NET_PLUGIN" "$NCCL_NET"' 2>/dev/null)
want="$(cd "$(dirname "$plugin")" && pwd)/$(basename "$plugin") RCMoE"
if [ "$got" = "$want" ]; then
	ok "NCCL_NET_PLUGIN and NCCL_NET as before"
else
	echo "got '$got', want '$want'" >"$tmp/err"
	not_ok "NCCL_NET_PLUGIN and NCCL_NET as before" "$tmp/err"
fi
[ "$failed" -eq 0 ]
