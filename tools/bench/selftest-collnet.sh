#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# rcmoe-bench's collNet rows with simulated ranks (no GPU, no NCCL): what the tables, the ratio
# table and the JSON say, and that a collNet run whose counters show no collNet call fails.
#   selftest-collnet.sh PATH/TO/rcmoe-bench
# Each simulated rank writes what NCCL and the plugin would: rank 0's NCCL_DEBUG_FILE line per
# all-reduce, and the plugin's finalize records in RCMOE_STATS_FILE (tools/bench/fake.c); its
# compressed all-reduce follows the codecs' definitions and checks each element's bound.
set -u
bench=${1:?usage: selftest-collnet.sh RCMOE_BENCH}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rcmoe-bench-cn-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0

fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

# has FILE PATTERN WHAT: the output must hold the (extended) pattern
has() {
	grep -Eq -- "$2" "$1" || fail "$3 (no /$2/ in $1):" "$(tail -5 "$1")"
}

run() { # run NAME WANT_STATUS ARGS...: output in $tmp/NAME.out
	name=$1 want=$2
	shift 2
	"$bench" --selftest "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
	st=$?
	[ "$st" = "$want" ] || fail "$name: exit status $st, expected $want" "$(tail -5 "$tmp/$name.err")"
}

# PTS: Socket, rcmoe and collnet in one invocation; error figures by default; ratios and algo
run pts 0 -n 3 -O allreduce,alltoall -b 64K -e 1M -f 4 --ar-density 0.01 --json "$tmp/pts.json"
has "$tmp/pts.out" '^# RCMoE-collNet run 1/1, environment.*NCCL_COLLNET_ENABLE=1 RCMOE_AR_CODEC=pts RCMOE_AR_DENSITY=0.01' "collnet run environment"
has "$tmp/pts.out" '^# RCMoE run 1/1, environment.*NCCL_COLLNET_ENABLE=0' "rcmoe run kept off collNet"
has "$tmp/pts.out" 'relL2    maxabs  algo/proto \(NCCL\)' "error columns and the algo column"
has "$tmp/pts.out" '^ +1048576 +524288 +bfloat16 .*COLLNET_CHAIN/SIMPLE$' "collNet row labelled COLLNET_CHAIN"
has "$tmp/pts.out" '^ +1048576 +524288 +bfloat16 .*RING/SIMPLE$' "Socket/rcmoe rows labelled RING"
has "$tmp/pts.out" 'collnet-PTS [0-9]+ calls, logical .* ratio' "counters line"
has "$tmp/pts.out" 'Socket +RCMoE +collNet RCMoE/Sock +cNet/Sock cNet/RCMoE' "ratio table columns"
has "$tmp/pts.json" '"collnet_ratio": [0-9.]+' "JSON collnet_ratio"
has "$tmp/pts.json" '"algo": "COLLNET_CHAIN/SIMPLE"' "JSON algo"
has "$tmp/pts.json" '"PTS": \{"calls": [1-9]' "JSON counters"
if command -v python3 >/dev/null 2>&1; then
	python3 -m json.tool "$tmp/pts.json" >/dev/null || fail "pts.json is not JSON"
fi

# LSQ, fp32, 4 ranks (the simulated ranks check the LSQ bound element by element)
run lsq 0 -n 4 -O allreduce -b 256K -e 1M -f 4 -d float --ar-bits 8
has "$tmp/lsq.out" 'collnet-LSQ [0-9]+ calls' "LSQ counters"
has "$tmp/lsq.out" 'all-reduce LSQ two-step 8 bits' "LSQ label"

# lossless collective side, exact check, with --force-collnet
run lossless 0 -n 2 -O allreduce -b 1M -e 1M -T socket,collnet -d half --force-collnet
has "$tmp/lossless.out" 'NCCL_ALGO=allreduce:CollNetChain' "forced algorithm in the environment"
has "$tmp/lossless.out" 'collnet-lossless [0-9]+ calls' "lossless counters"
has "$tmp/lossless.out" '^ +1048576 +524288 +half .* 0  COLLNET_CHAIN/SIMPLE$' "exact lossless row"

# NCCL kept all-reduce on its ring: the collnet run must FAIL, loudly
run nocollnet 1 -n 2 -O allreduce -b 1M -e 1M --ar-bits 4 --selftest-fail 1:nocollnet
has "$tmp/nocollnet.out" 'RCMoE-collNet run 1/1 FAILED: asked for all-reduce through the plugin.s collective side \(LSQ 4 bits\), but its counters show no collNet call' "failure line"
has "$tmp/nocollnet.out" 'WARNING: 1 all-reduce row of this run went without CollNet' "row warning"
has "$tmp/nocollnet.err" 'NCCL WARN simulated' "NCCL WARN lines reach stderr"

# the user's own NCCL_DEBUG: no log is taken over, and the table says so
NCCL_DEBUG=INFO "$bench" --selftest -n 2 -O allreduce -b 1M -e 1M -T collnet >"$tmp/dbg.out" 2>&1 ||
	fail "user NCCL_DEBUG run failed"
has "$tmp/dbg.out" "NCCL's algorithm is not shown: NCCL_DEBUG=INFO is set" "user NCCL_DEBUG kept"

# refusals
for args in "--ar-density 0" "--ar-density 1.5" "--ar-bits 3" "--ar-bits 8 --ar-density 0.1" \
	"-T socket,rcmoe --ar-bits 8" "--force-collnet"; do
	# shellcheck disable=SC2086
	"$bench" --selftest $args >/dev/null 2>&1
	st=$?
	[ $st = 2 ] || fail "'$args': exit status $st, expected 2 (usage)"
done

[ $fails = 0 ] && echo "selftest-collnet: OK" && exit 0
echo "selftest-collnet: $fails FAILED"
exit 1
