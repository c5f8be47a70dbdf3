/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe-bench: NCCL's built-in Socket transport against the rcmoe net plugin, in one invocation,
 * with N ranks on one GPU (one process each, each its own "node" through NCCL_HOSTID, so all
 * traffic crosses the net plugin). Output follows nccl-tests: one table per (op, transport),
 * then the rcmoe/Socket busbw ratio per op.
 *
 * This file: options, the size schedule and the top-level flow.
 */
#include "bench.h"
#include "rcmoe_shaper.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char **bench_orig_argv;
int bench_orig_argc;

/* The help text is laid out by hand. */
/* clang-format off */
static void usage(FILE *out)
{
	fprintf(out,
"usage: rcmoe-bench [options]              NCCL Socket vs the rcmoe plugin, N ranks on one GPU\n"
"       rcmoe-bench --loopback [options]   no GPU: the plugin's net table over 127.0.0.1 vs TCP\n"
"       rcmoe-bench --selftest [options]   no GPU: check the checker, then simulated ranks\n"
"\n"
"what to run\n"
"  -n, --nranks N          ranks (processes) sharing the GPU                  [2]\n"
"  -O, --ops LIST          comma list of alltoall,allreduce,sendrecv          [all three]\n"
"                          (allreduce is sum; sendrecv is a ring: rank r sends to r+1)\n"
"  -T, --transports LIST   comma list of socket,rcmoe,collnet (run in that order)\n"
"                          socket: NCCL's own; rcmoe: the plugin's net side (all-reduce\n"
"                          on NCCL's ring, lossless); collnet: the plugin with\n"
"                          NCCL_COLLNET_ENABLE=1, all-reduce through its collective\n"
"                          side (lossless, or as --ar-density/--ar-bits say)\n"
"                          [socket,rcmoe; socket,rcmoe,collnet with --ar-*]\n"
"  -b, --minbytes SIZE     smallest size, bytes per rank of the send buffer   [1M]\n"
"  -e, --maxbytes SIZE     largest size (K, M, G suffixes: powers of 1024)    [256M]\n"
"  -f, --stepfactor F      multiply the size by F between rows                [2]\n"
"  -d, --datatype TYPE     element type                                       [bfloat16]\n"
"                          %s\n"
"  -i, --iters N           timed iterations per size                          [20]\n"
"  -w, --warmup N          untimed iterations per size before timing          [5]\n"
"      --runs R            repeat the whole Socket/rcmoe comparison R times;\n"
"                          the ratio table uses the median busbw per size     [1]\n"
"      --a2a MODE          alltoall as: auto (ncclAlltoAll when the runtime NCCL\n"
"                          is >= 2.28, else grouped send/recv), native, or p2p\n"
"                          (grouped ncclSend/ncclRecv, what PyTorch does)     [auto]\n"
"  -c, --check MODE        exact: count wrong elements (#wrong);\n"
"                          error: Gaussian data, report relative L2 error and\n"
"                          max abs error (float types; for a compressing run);\n"
"                          none: no check                                     [exact]\n"
"      --seed N            data seed                                          [1]\n"
"      --device N          CUDA device every rank uses                        [0]\n"
"\n"
"environment of the ranks (the Socket run gets NCCL_NET_PLUGIN=none NCCL_NET=Socket,\n"
"the rcmoe run NCCL_NET_PLUGIN=<plugin> NCCL_NET=RCMoE; every rank NCCL_HOSTID=rcmoe-bench-h<r>,\n"
"NCCL_MNNVL_ENABLE=0, and NCCL_SOCKET_IFNAME=lo unless already set)\n"
"      --plugin PATH       the plugin .so  [$RCMOE_PLUGIN, else the installed one\n"
"                          (<libdir> beside the <bindir> holding this executable), else\n"
"                          its build tree's (../../plugin/), else the first in\n"
"                          $LD_LIBRARY_PATH]\n"
"      --gdr-level LEVEL   NCCL_NET_GDR_LEVEL of the rcmoe run; 'unset' leaves NCCL's\n"
"                          default (the plugin then gets host buffers)   [SYS, or the env's]\n"
"      --proto[=PROTO]     set NCCL_PROTO=PROTO (bare: Simple) for both runs  [not set]\n"
"      --env NAME=VALUE    extra variable for both runs (repeatable)\n"
"      --rcmoe-env NAME=VALUE  extra variable for the plugin's runs only (rcmoe and\n"
"                          collnet; repeatable), e.g. RCMOE_A2A_BITS=8\n"
"\n"
"all-reduce through the plugin's collective side (the collnet run only)\n"
"      --ar-density R      PTS all-reduce at density R in (0,1]: RCMOE_AR_DENSITY=R\n"
"      --ar-bits B         LSQ two-step all-reduce, B = 8, 4 or 2: RCMOE_AR_BITS=B\n"
"                          (either one adds collnet to the default transports and\n"
"                          makes -c default to error)\n"
"      --force-collnet     NCCL_ALGO=allreduce:CollNetChain for the collnet run (the\n"
"                          plugin's tuner should make NCCL choose it by itself)\n"
"      --no-algo-log       do not read NCCL's algorithm choice from its log (by default,\n"
"                          when NCCL_DEBUG* are unset, each rank logs NCCL_DEBUG=INFO\n"
"                          NCCL_DEBUG_SUBSYS=TUNING to a file; WARN lines still reach\n"
"                          stderr, and all-reduce rows show NCCL's algo/proto)\n"
"      --keep-logs         keep those logs and the plugin's counter files\n"
"A collnet run FAILS when the plugin's counters show no collNet call (or, with --ar-*,\n"
"no compressed one): its rows would be NCCL's own ring, not what was asked.\n"
"\n"
"      --mps               start the MPS daemon before and stop it after, unless one is\n"
"                          already running; without MPS the ranks are time-sliced  [off]\n"
"      --timeout SEC       abort a run when no rank reports anything for SEC\n"
"                          seconds; the remaining ranks are killed            [600]\n"
"\n"
"emulated link (both transports alike; also with --loopback)\n"
"      --link-gbps G       hold every rank's TCP sends to G Gb/s (1e9 bits/s): preload\n"
"                          librcmoe-shaper.so with RCMOE_SHAPER_GBPS=G into every rank,\n"
"                          which refuses to start without it; the tables, ratios and\n"
"                          JSON say \"emulated link G Gb/s per rank\". An emulation: one\n"
"                          token bucket per process on TCP sends (docs/results.md)\n"
"      --shaper PATH       the shaper .so  [the installed one (<libdir> beside the\n"
"                          <bindir> holding this executable), else its build tree's\n"
"                          (../shaper/), else the first in $LD_LIBRARY_PATH]\n"
"\n"
"output\n"
"      --json FILE         write config, every row of every run and the ratios as JSON\n"
"      --plot FILE.png     draw busbw (and error) against size with matplotlib, if\n"
"                          python3 can import it (never required)\n"
"  -v, --verbose           show each rank's environment and progress on stderr\n"
"      --check-threads N   host threads per rank for data generation and checks  [auto]\n"
"      --dup-fraction F    alltoall data: each row of a peer's slice after the first\n"
"                          repeats an earlier row of that slice (at a random distance)\n"
"                          with probability F, as tokens routed to two experts of one\n"
"                          GPU do; run with --rcmoe-env RCMOE_A2A_DEDUP=on and without\n"
"                          to see collaboration dedup (README)                   [0]\n"
"      --dup-row N         elements per row for --dup-fraction (a multiple of\n"
"                          RCMOE_LSQ_BLOCK dedups row by row)                 [7168]\n"
"\n"
"loopback mode (CPU only, one process: the plugin's ncclNetPlugin_v11 table driven directly)\n"
"      --loopback          isend/irecv over 127.0.0.1 against one blocking TCP stream\n"
"                          between two threads; sizes default to -b 64K -e 256M -f 4\n"
"      --inflight N        messages in flight (1..8)                          [8]\n"
"      --loopback-bytes SIZE  bytes moved per size and transport              [1G]\n"
"                          (with --link-gbps G: G/8 GB take one second)\n"
"      --loopback-peers LIST  instead: P connections at once for each P in LIST\n"
"                          (e.g. 1,4,16,64), -b bytes per message; aggregate GB/s,\n"
"                          threads and open files of the process per P\n"
"      -O allreduce        the collective side instead (or as well, with sendrecv):\n"
"                          -n rank processes, host buffers, each all-reduce in calls of\n"
"                          --chunk bytes as NCCL's CollNetChain posts them; lossless,\n"
"                          and PTS/LSQ with --ar-density/--ar-bits, in one table\n"
"      --chunk SIZE        bytes per collNet call                             [256K]\n"
"\n"
"testing without a GPU\n"
"      --selftest          run the data/check self-test, then the whole flow with\n"
"                          simulated ranks (no CUDA, no NCCL; times are synthetic)\n"
"      --selftest-fail R:MODE  make simulated rank R crash|hang|error|exit|wrong|\n"
"                          nocollnet (its collnet run logs RING and no counters)\n"
"\n"
"  -h, --help              this text\n"
"  -V, --version           version\n"
"\n"
"The exit status is non-zero when an exact check failed or a rank failed.\n"
"\n"
"Running it: NCCL and the CUDA runtime are linked at build time (libnccl.so.2 from\n"
"CUDA_HOME/lib64, found through the binary's RUNPATH). To use the NCCL that ships with\n"
"PyTorch instead, put its directory first (LD_LIBRARY_PATH wins over RUNPATH):\n"
"  export LD_LIBRARY_PATH=$(python3 -c 'import nvidia.nccl, os;\n"
"      print(os.path.join(list(nvidia.nccl.__path__)[0], \"lib\"))'):$LD_LIBRARY_PATH\n"
"  rcmoe-bench --mps -n 4\n"
"The ranks inherit LD_LIBRARY_PATH, so all of them use that library. NCCL_DEBUG=INFO output of\n"
"the ranks goes to stderr; the tables go to stdout.\n",
		bench_dtype_list());
}
/* clang-format on */

enum {
	OPT_RUNS = 256,
	OPT_A2A,
	OPT_SEED,
	OPT_DEVICE,
	OPT_PLUGIN,
	OPT_GDR,
	OPT_PROTO,
	OPT_ENV,
	OPT_RCMOE_ENV,
	OPT_MPS,
	OPT_TIMEOUT,
	OPT_JSON,
	OPT_PLOT,
	OPT_CHECK_THREADS,
	OPT_LOOPBACK,
	OPT_INFLIGHT,
	OPT_LOOPBACK_BYTES,
	OPT_LOOPBACK_PEERS,
	OPT_CHUNK,
	OPT_SELFTEST,
	OPT_SELFTEST_FAIL,
	OPT_LINK_GBPS,
	OPT_SHAPER,
	OPT_SHAPER_LOADED,
	OPT_AR_DENSITY,
	OPT_AR_BITS,
	OPT_FORCE_COLLNET,
	OPT_NO_ALGO_LOG,
	OPT_KEEP_LOGS,
	OPT_DUP_FRACTION,
	OPT_DUP_ROW,
	OPT_CHILD,
};

static const struct option long_opts[] = {
	{ "nranks", required_argument, NULL, 'n' },
	{ "ops", required_argument, NULL, 'O' },
	{ "transports", required_argument, NULL, 'T' },
	{ "minbytes", required_argument, NULL, 'b' },
	{ "maxbytes", required_argument, NULL, 'e' },
	{ "stepfactor", required_argument, NULL, 'f' },
	{ "datatype", required_argument, NULL, 'd' },
	{ "iters", required_argument, NULL, 'i' },
	{ "warmup", required_argument, NULL, 'w' },
	{ "check", required_argument, NULL, 'c' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ "runs", required_argument, NULL, OPT_RUNS },
	{ "a2a", required_argument, NULL, OPT_A2A },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "device", required_argument, NULL, OPT_DEVICE },
	{ "plugin", required_argument, NULL, OPT_PLUGIN },
	{ "gdr-level", required_argument, NULL, OPT_GDR },
	{ "proto", optional_argument, NULL, OPT_PROTO },
	{ "env", required_argument, NULL, OPT_ENV },
	{ "rcmoe-env", required_argument, NULL, OPT_RCMOE_ENV },
	{ "mps", no_argument, NULL, OPT_MPS },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "json", required_argument, NULL, OPT_JSON },
	{ "plot", required_argument, NULL, OPT_PLOT },
	{ "check-threads", required_argument, NULL, OPT_CHECK_THREADS },
	{ "loopback", no_argument, NULL, OPT_LOOPBACK },
	{ "inflight", required_argument, NULL, OPT_INFLIGHT },
	{ "loopback-bytes", required_argument, NULL, OPT_LOOPBACK_BYTES },
	{ "loopback-peers", required_argument, NULL, OPT_LOOPBACK_PEERS },
	{ "chunk", required_argument, NULL, OPT_CHUNK },
	{ "selftest", no_argument, NULL, OPT_SELFTEST },
	{ "selftest-fail", required_argument, NULL, OPT_SELFTEST_FAIL },
	{ "link-gbps", required_argument, NULL, OPT_LINK_GBPS },
	{ "shaper", required_argument, NULL, OPT_SHAPER },
	{ "shaper-loaded", no_argument, NULL, OPT_SHAPER_LOADED }, /* internal: link.c */
	{ "ar-density", required_argument, NULL, OPT_AR_DENSITY },
	{ "ar-bits", required_argument, NULL, OPT_AR_BITS },
	{ "force-collnet", no_argument, NULL, OPT_FORCE_COLLNET },
	{ "no-algo-log", no_argument, NULL, OPT_NO_ALGO_LOG },
	{ "keep-logs", no_argument, NULL, OPT_KEEP_LOGS },
	{ "dup-fraction", required_argument, NULL, OPT_DUP_FRACTION },
	{ "dup-row", required_argument, NULL, OPT_DUP_ROW },
	{ "child", required_argument, NULL, OPT_CHILD }, /* internal: set by the parent */
	{ NULL, 0, NULL, 0 },
};

/* ---- small shared helpers ---- */

const char *bench_op_name(int op)
{
	static const char *names[] = { "alltoall", "allreduce", "sendrecv" };
	return op >= 0 && op < BENCH_NUM_OPS ? names[op] : "?";
}

const char *bench_transport_name(int t)
{
	return t == BENCH_SOCKET    ? "Socket"
	       : t == BENCH_RCMOE   ? "RCMoE"
	       : t == BENCH_COLLNET ? "RCMoE-collNet"
				    : "?";
}

double bench_busbw_factor(int op, int nranks)
{
	double n = nranks;
	switch (op) {
	case BENCH_ALLTOALL: return (n - 1) / n;
	case BENCH_ALLREDUCE: return 2 * (n - 1) / n;
	default: return 1;
	}
}

size_t bench_op_shape(const struct bench_cfg *cfg, int op, size_t size, size_t *count,
		      size_t *per_peer)
{
	size_t es = cfg->dt->size, c = size / es;
	if (op == BENCH_ALLTOALL) {
		/* every peer gets the same count: round the buffer down to a multiple of n */
		*per_peer = c / (size_t)cfg->nranks;
		c = *per_peer * (size_t)cfg->nranks;
	} else {
		*per_peer = c;
	}
	*count = c;
	return c * es;
}

static int parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || v < 0)
		return -1;
	double mult = 1;
	switch (*end) {
	case 'k':
	case 'K': mult = 1024.0, end++; break;
	case 'm':
	case 'M': mult = 1024.0 * 1024, end++; break;
	case 'g':
	case 'G': mult = 1024.0 * 1024 * 1024, end++; break;
	case 't':
	case 'T': mult = 1024.0 * 1024 * 1024 * 1024, end++; break;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	v *= mult;
	if (*end || v > 1e15 || v != floor(v))
		return -1;
	*out = (size_t)v;
	return 0;
}

void bench_format_size_arg(char *buf, size_t len, size_t v)
{
	static const char *sfx[] = { "", "K", "M", "G", "T" };
	int k = 0;
	while (k < 4 && v && v % 1024 == 0)
		v /= 1024, k++;
	snprintf(buf, len, "%zu%s", v, sfx[k]);
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 0);
	if (end == s || *end || errno || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

int bench_build_sizes(struct bench_cfg *cfg, char *err, size_t errlen)
{
	cfg->nsizes = 0;
	if (cfg->min_bytes == 0 || cfg->max_bytes < cfg->min_bytes) {
		snprintf(err, errlen, "need 0 < minbytes <= maxbytes");
		return -1;
	}
	if (cfg->max_bytes > cfg->min_bytes && !(cfg->factor > 1.0)) {
		snprintf(err, errlen, "the step factor must be > 1");
		return -1;
	}
	for (double s = (double)cfg->min_bytes; s <= (double)cfg->max_bytes; s *= cfg->factor) {
		if (cfg->nsizes == BENCH_MAX_SIZES) {
			snprintf(err, errlen, "more than %d sizes: raise -f", BENCH_MAX_SIZES);
			return -1;
		}
		cfg->sizes[cfg->nsizes++] = (size_t)s;
		if (cfg->min_bytes == cfg->max_bytes)
			break;
	}
	return 0;
}

static int parse_list(const char *arg, const char *const *names, int nnames, int *out, int max,
		      int *nout)
{
	char *copy = strdup(arg), *save = NULL;
	if (!copy)
		return -1;
	*nout = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int found = -1;
		for (int i = 0; i < nnames; i++)
			if (strcasecmp(tok, names[i]) == 0)
				found = i;
		if (found < 0 || *nout == max) {
			free(copy);
			return -1;
		}
		for (int i = 0; i < *nout; i++)
			if (out[i] == found)
				found = -2; /* given twice: keep the first */
		if (found >= 0)
			out[(*nout)++] = found;
	}
	free(copy);
	return *nout ? 0 : -1;
}

static int add_env(const char **list, int *n, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv || *n == BENCH_MAX_ENV)
		return -1;
	list[(*n)++] = kv;
	return 0;
}

static void defaults(struct bench_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->nranks = 2;
	cfg->iters = 20;
	cfg->warmup = 5;
	cfg->runs = 1;
	cfg->min_bytes = 1u << 20;
	cfg->max_bytes = 256u << 20;
	cfg->factor = 2;
	cfg->dt = bench_dtype_find("bfloat16");
	cfg->ops[0] = BENCH_ALLTOALL;
	cfg->ops[1] = BENCH_ALLREDUCE;
	cfg->ops[2] = BENCH_SENDRECV;
	cfg->nops = 3;
	cfg->transport_on[BENCH_SOCKET] = cfg->transport_on[BENCH_RCMOE] = true;
	cfg->check = BENCH_CHECK_EXACT;
	cfg->a2a = BENCH_A2A_AUTO;
	cfg->seed = 1;
	cfg->dup_row = 7168;
	cfg->timeout = 600;
	cfg->inflight = 8;
	cfg->loopback_bytes = 1ull << 30;
	cfg->loopback_chunk = 256u << 10; /* CollNetChain's largest call (NCCL 2.28 enqueue.cc) */
	cfg->fail_rank = -1;
	cfg->child_rank = -1;
}

#define BAD(...)                                                                                   \
	do {                                                                                       \
		fprintf(stderr, "rcmoe-bench: " __VA_ARGS__);                                      \
		fputc('\n', stderr);                                                               \
		return -1;                                                                         \
	} while (0)

static int parse_args(struct bench_cfg *cfg, int argc, char **argv)
{
	static const char *const op_names[] = { "alltoall", "allreduce", "sendrecv" };
	static const char *const tr_names[] = { "socket", "rcmoe", "collnet" };
	int c;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "n:O:T:b:e:f:d:i:w:c:vhV", long_opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (parse_int(optarg, 2, BENCH_MAX_RANKS, &cfg->nranks))
				BAD("-n: 2..%d ranks", BENCH_MAX_RANKS);
			break;
		case 'O': {
			static const char *const more[] = { "alltoall", "allreduce", "sendrecv",
							    "a2a",      "ar",        "sr" };
			int tmp[6], n;
			if (parse_list(optarg, more, 6, tmp, 6, &n))
				BAD("-O: comma list of %s,%s,%s", op_names[0], op_names[1],
				    op_names[2]);
			cfg->nops = 0;
			cfg->ops_given = true;
			for (int i = 0; i < n; i++) {
				int op = tmp[i] % 3;
				bool dup = false;
				for (int j = 0; j < cfg->nops; j++)
					dup |= cfg->ops[j] == op;
				if (!dup)
					cfg->ops[cfg->nops++] = op;
			}
			break;
		}
		case 'T': {
			int tmp[BENCH_NUM_TRANSPORTS], n;
			if (parse_list(optarg, tr_names, BENCH_NUM_TRANSPORTS, tmp,
				       BENCH_NUM_TRANSPORTS, &n))
				BAD("-T: comma list of socket,rcmoe,collnet");
			for (int t = 0; t < BENCH_NUM_TRANSPORTS; t++)
				cfg->transport_on[t] = false;
			for (int i = 0; i < n; i++)
				cfg->transport_on[tmp[i]] = true;
			cfg->transports_given = true;
			break;
		}
		case 'b':
			if (parse_size(optarg, &cfg->min_bytes))
				BAD("-b: bad size '%s'", optarg);
			cfg->min_set = true;
			break;
		case 'e':
			if (parse_size(optarg, &cfg->max_bytes))
				BAD("-e: bad size '%s'", optarg);
			cfg->max_set = true;
			break;
		case 'f': {
			char *end;
			cfg->factor = strtod(optarg, &end);
			if (*end || !(cfg->factor > 1.0))
				BAD("-f: a factor > 1");
			cfg->factor_set = true;
			break;
		}
		case 'd':
			cfg->dt = bench_dtype_find(optarg);
			if (!cfg->dt)
				BAD("-d: unknown type '%s' (%s)", optarg, bench_dtype_list());
			break;
		case 'i':
			if (parse_int(optarg, 1, 1000000, &cfg->iters))
				BAD("-i: 1..1000000");
			break;
		case 'w':
			if (parse_int(optarg, 0, 1000000, &cfg->warmup))
				BAD("-w: 0..1000000");
			break;
		case 'c':
			cfg->check_given = true;
			if (!strcmp(optarg, "exact") || !strcmp(optarg, "1"))
				cfg->check = BENCH_CHECK_EXACT;
			else if (!strcmp(optarg, "error") || !strcmp(optarg, "lossy"))
				cfg->check = BENCH_CHECK_ERROR;
			else if (!strcmp(optarg, "none") || !strcmp(optarg, "0"))
				cfg->check = BENCH_CHECK_NONE;
			else
				BAD("-c: exact, error or none");
			break;
		case 'v': cfg->verbose = true; break;
		case 'h': usage(stdout); exit(0);
		case 'V': printf("rcmoe-bench %s\n", BENCH_VERSION); exit(0);
		case OPT_RUNS:
			if (parse_int(optarg, 1, 1000, &cfg->runs))
				BAD("--runs: 1..1000");
			break;
		case OPT_A2A:
			if (!strcmp(optarg, "auto"))
				cfg->a2a = BENCH_A2A_AUTO;
			else if (!strcmp(optarg, "native"))
				cfg->a2a = BENCH_A2A_NATIVE;
			else if (!strcmp(optarg, "p2p") || !strcmp(optarg, "sendrecv"))
				cfg->a2a = BENCH_A2A_P2P;
			else
				BAD("--a2a: auto, native or p2p");
			break;
		case OPT_SEED: {
			char *end;
			cfg->seed = strtoull(optarg, &end, 0);
			if (*end)
				BAD("--seed: a number");
			break;
		}
		case OPT_DEVICE:
			if (parse_int(optarg, 0, 1023, &cfg->device))
				BAD("--device: a CUDA device number");
			break;
		case OPT_PLUGIN: cfg->plugin_arg = optarg; break;
		case OPT_GDR: cfg->gdr_level = optarg; break;
		case OPT_PROTO: cfg->proto = optarg ? optarg : "Simple"; break;
		case OPT_ENV:
			if (add_env(cfg->env, &cfg->nenv, optarg))
				BAD("--env: NAME=VALUE (at most %d)", BENCH_MAX_ENV);
			break;
		case OPT_RCMOE_ENV:
			if (add_env(cfg->rcmoe_env, &cfg->nrcmoe_env, optarg))
				BAD("--rcmoe-env: NAME=VALUE (at most %d)", BENCH_MAX_ENV);
			break;
		case OPT_MPS: cfg->mps = true; break;
		case OPT_TIMEOUT: {
			char *end;
			cfg->timeout = strtod(optarg, &end);
			if (*end || !(cfg->timeout > 0))
				BAD("--timeout: seconds > 0");
			break;
		}
		case OPT_JSON: cfg->json = optarg; break;
		case OPT_PLOT: cfg->plot = optarg; break;
		case OPT_CHECK_THREADS:
			if (parse_int(optarg, 1, 64, &cfg->check_threads))
				BAD("--check-threads: 1..64");
			break;
		case OPT_LOOPBACK: cfg->loopback = true; break;
		case OPT_INFLIGHT:
			if (parse_int(optarg, 1, 8, &cfg->inflight))
				BAD("--inflight: 1..8 (NCCL keeps at most 8 steps in flight)");
			break;
		case OPT_LOOPBACK_BYTES:
			if (parse_size(optarg, &cfg->loopback_bytes) || !cfg->loopback_bytes)
				BAD("--loopback-bytes: bad size '%s'", optarg);
			break;
		case OPT_LOOPBACK_PEERS: {
			char list[256], *save = NULL;
			snprintf(list, sizeof(list), "%s", optarg);
			cfg->npeers_list = 0;
			for (char *t = strtok_r(list, ",", &save); t;
			     t = strtok_r(NULL, ",", &save)) {
				int v;
				if (cfg->npeers_list == 16 || parse_int(t, 1, 256, &v))
					BAD("--loopback-peers: up to 16 counts of 1..256, not '%s'",
					    optarg);
				cfg->peers_list[cfg->npeers_list++] = v;
			}
			if (!cfg->npeers_list)
				BAD("--loopback-peers: no count in '%s'", optarg);
			cfg->loopback = true;
			break;
		}
		case OPT_CHUNK:
			if (parse_size(optarg, &cfg->loopback_chunk) || cfg->loopback_chunk < 4 ||
			    cfg->loopback_chunk > (1u << 30))
				BAD("--chunk: a size from 4 bytes to 1G, not '%s'", optarg);
			break;
		case OPT_SELFTEST: cfg->selftest = cfg->fake = true; break;
		case OPT_SELFTEST_FAIL: {
			static const char *modes[] = { "",     "crash", "hang",     "error",
						       "exit", "wrong", "nocollnet" };
			char mode[16];
			int r;
			if (sscanf(optarg, "%d:%15s", &r, mode) != 2)
				BAD("--selftest-fail: RANK:MODE");
			cfg->fail_rank = r;
			cfg->fail_mode = BENCH_FAIL_NONE;
			for (int m = 1; m < 7; m++)
				if (!strcmp(mode, modes[m]))
					cfg->fail_mode = m;
			if (cfg->fail_mode == BENCH_FAIL_NONE)
				BAD("--selftest-fail: MODE is crash, hang, error, exit, wrong or "
				    "nocollnet");
			break;
		}
		case OPT_LINK_GBPS:
			if (bench_link_parse(cfg, optarg))
				BAD("--link-gbps: Gb/s per rank, 0.001..100000");
			break;
		case OPT_SHAPER: cfg->shaper_arg = optarg; break;
		case OPT_SHAPER_LOADED: cfg->shaper_reexec = true; break;
		case OPT_AR_DENSITY:
			if (bench_cn_parse_density(cfg, optarg))
				BAD("--ar-density: a density in (0, 1], e.g. 0.01");
			break;
		case OPT_AR_BITS:
			if (bench_cn_parse_bits(cfg, optarg))
				BAD("--ar-bits: 8, 4 or 2");
			break;
		case OPT_FORCE_COLLNET: cfg->force_collnet = true; break;
		case OPT_NO_ALGO_LOG: cfg->no_algo_log = true; break;
		case OPT_KEEP_LOGS: cfg->keep_workdir = true; break;
		case OPT_DUP_FRACTION: {
			char *end;
			cfg->dup_fraction = strtod(optarg, &end);
			if (end == optarg || *end || !(cfg->dup_fraction >= 0) ||
			    cfg->dup_fraction > 1)
				BAD("--dup-fraction: a fraction in [0, 1]");
			break;
		}
		case OPT_DUP_ROW: {
			char *end;
			unsigned long long v = strtoull(optarg, &end, 10);
			if (end == optarg || *end || v == 0 || v > (1ull << 24))
				BAD("--dup-row: elements per row, 1..16777216");
			cfg->dup_row = (size_t)v;
			break;
		}
		case OPT_CHILD:
			if (sscanf(optarg, "%d,%d,%d,%d", &cfg->child_rank, &cfg->child_transport,
				   &cfg->child_in_fd, &cfg->child_out_fd) != 4)
				BAD("--child: internal option");
			cfg->child = true;
			break;
		default: fprintf(stderr, "rcmoe-bench: -h lists the options\n"); return -1;
		}
	}
	if (optind < argc)
		BAD("unexpected argument '%s'", argv[optind]);
	if (cfg->fail_rank >= cfg->nranks)
		BAD("--selftest-fail: rank %d of %d", cfg->fail_rank, cfg->nranks);
	/* Compressed all-reduce: the collNet run, lossy checks unless -c says otherwise. */
	if (cfg->ar_density_arg && cfg->ar_bits_arg)
		BAD("--ar-density and --ar-bits: one codec per run (PTS or LSQ)");
	if (cfg->ar_density_arg || cfg->ar_bits_arg) {
		if (cfg->transports_given && !cfg->transport_on[BENCH_COLLNET])
			BAD("--ar-density/--ar-bits apply to the collnet run: add collnet to -T");
		cfg->transport_on[BENCH_COLLNET] = true;
		if (!cfg->check_given)
			cfg->check = BENCH_CHECK_ERROR;
	}
	if (cfg->force_collnet && !cfg->transport_on[BENCH_COLLNET])
		BAD("--force-collnet applies to the collnet run: add collnet to -T");
	/* Integer data cannot carry a lossy codec's error: check it exactly. */
	if (cfg->check == BENCH_CHECK_ERROR && !cfg->dt->is_float) {
		cfg->check = BENCH_CHECK_EXACT;
		cfg->check_asked_error = true;
	}
	if (cfg->loopback) {
		if (!cfg->min_set)
			cfg->min_bytes = 64u << 10;
		if (!cfg->max_set)
			cfg->max_bytes = 256u << 20;
		if (!cfg->factor_set)
			cfg->factor = 4;
	}
	char err[128];
	if (bench_build_sizes(cfg, err, sizeof(err)))
		BAD("%s", err);
	return 0;
}

#ifndef RCMOE_BENCH_PLUGIN_DIR
#define RCMOE_BENCH_PLUGIN_DIR "../lib" /* set by tools/meson.build */
#endif

/* 0, and its absolute path in cfg->plugin, when `path` is a regular file. */
static int plugin_at(struct bench_cfg *cfg, const char *path)
{
	struct stat sb;
	if (stat(path, &sb) || !S_ISREG(sb.st_mode))
		return -1;
	return realpath(path, cfg->plugin) ? 0 : -1;
}

/* The first directory of $LD_LIBRARY_PATH holding the plugin: where a dlopen by name (NCCL's
 * NCCL_NET_PLUGIN=rcmoe) would find it first. An empty entry is the working directory, as for
 * the dynamic loader. */
static int plugin_in_ld_path(struct bench_cfg *cfg)
{
	const char *s = getenv("LD_LIBRARY_PATH");
	char cand[PATH_MAX];
	while (s && *s) {
		size_t n = strcspn(s, ":");
		int k = snprintf(cand, sizeof(cand), "%.*s/%s", n ? (int)n : 1, n ? s : ".",
				 BENCH_PLUGIN_SO);
		if (k > 0 && (size_t)k < sizeof(cand) && !plugin_at(cfg, cand))
			return 0;
		s += n;
		if (*s == ':')
			s++;
	}
	return -1;
}

/*
 * The plugin: --plugin, else $RCMOE_PLUGIN, else the installed one (<libdir> seen from the
 * <bindir> this binary was installed in), else the one of the build tree this binary sits in,
 * else the first found in $LD_LIBRARY_PATH. cfg->plugin gets an absolute path either way: when
 * nothing is found, the build tree's, for the messages.
 */
static int resolve_plugin(struct bench_cfg *cfg)
{
	const char *p = cfg->plugin_arg ? cfg->plugin_arg : getenv("RCMOE_PLUGIN");
	char cand[PATH_MAX];
	if (!p || !*p) {
		char exe[PATH_MAX];
		snprintf(exe, sizeof(exe), "%s", cfg->exe);
		const char *dir = dirname(exe);
		if (RCMOE_BENCH_PLUGIN_DIR[0] == '/')
			snprintf(cand, sizeof(cand), "%s/%s", RCMOE_BENCH_PLUGIN_DIR,
				 BENCH_PLUGIN_SO);
		else
			snprintf(cand, sizeof(cand), "%s/%s/%s", dir, RCMOE_BENCH_PLUGIN_DIR,
				 BENCH_PLUGIN_SO);
		if (!plugin_at(cfg, cand))
			return 0;
		snprintf(cand, sizeof(cand), "%s/../../plugin/%s", dir, BENCH_PLUGIN_SO);
		if (!plugin_at(cfg, cand) || !plugin_in_ld_path(cfg))
			return 0;
		p = cand;
	}
	if (realpath(p, cfg->plugin))
		return 0;
	/* Not built yet: still name it by a clean absolute path in messages and the env. */
	char dirbuf[PATH_MAX], basebuf[PATH_MAX], dir[PATH_MAX];
	snprintf(dirbuf, sizeof(dirbuf), "%s", p);
	snprintf(basebuf, sizeof(basebuf), "%s", p);
	if (realpath(dirname(dirbuf), dir))
		snprintf(cfg->plugin, sizeof(cfg->plugin), "%.*s/%s", PATH_MAX / 2, dir,
			 basename(basebuf));
	else
		snprintf(cfg->plugin, sizeof(cfg->plugin), "%s", p);
	return -1;
}

int main(int argc, char **argv)
{
	static struct bench_cfg cfg;
	defaults(&cfg);
	bench_orig_argc = argc;
	bench_orig_argv = calloc((size_t)argc + 1, sizeof(char *));
	if (!bench_orig_argv)
		return 2;
	memcpy(bench_orig_argv, argv, (size_t)argc * sizeof(char *));
	if (parse_args(&cfg, argc, argv))
		return 2;
	ssize_t k = readlink("/proc/self/exe", cfg.exe, sizeof(cfg.exe) - 1);
	if (k <= 0) {
		fprintf(stderr, "rcmoe-bench: cannot read /proc/self/exe: %s\n", strerror(errno));
		return 2;
	}
	cfg.exe[k] = 0;

	bool need_plugin = cfg.transport_on[BENCH_RCMOE] || cfg.transport_on[BENCH_COLLNET];
	int plugin_rc = resolve_plugin(&cfg);
	if (cfg.child) {
		/* Before CUDA or NCCL: an unshaped rank must not produce a labelled row. */
		char err[600];
		if (cfg.link_gbps > 0 && bench_link_check(&cfg, err, sizeof(err))) {
			bench_msg_send(cfg.child_out_fd, BENCH_MSG_ERROR, cfg.child_rank, err,
				       strlen(err));
			return 1;
		}
		return cfg.fake ? bench_fake_child_main(&cfg) : bench_child_main(&cfg);
	}
	if (cfg.link_gbps > 0 && bench_link_resolve(&cfg)) {
		fprintf(stderr,
			"rcmoe-bench: --link-gbps: the link shaper was not found: %s\n"
			"  build it (ninja -C <builddir> tools/shaper/%s) or install it\n"
			"  (meson install), or pass --shaper PATH\n",
			cfg.shaper, RCMOE_SHAPER_LIB);
		return 2;
	}
	if (cfg.link_gbps > 0 && strpbrk(cfg.shaper, " :")) {
		fprintf(stderr,
			"rcmoe-bench: --link-gbps: %s cannot be preloaded (LD_PRELOAD splits "
			"paths at spaces and colons)\n",
			cfg.shaper);
		return 2;
	}
	if (cfg.link_gbps > 0 && cfg.loopback) {
		int rc = bench_link_loopback_enter(&cfg); /* re-executes when not yet shaped */
		if (rc)
			return rc;
	}

	if (cfg.selftest) {
		int f = bench_check_selftest(stdout) + bench_cn_selftest(stdout);
		printf("# selftest: data generation and checks: %s\n", f ? "FAILED" : "OK");
		if (f)
			return 1;
	}
	if (cfg.loopback && cfg.npeers_list)
		return bench_loopback_peers_main(&cfg);
	if (cfg.loopback) {
		/* -O allreduce: the collective side; sendrecv (the default): the net side. */
		bool ar = cfg.ops_given && bench_has_allreduce(&cfg);
		bool p2p = !cfg.ops_given || cfg.nops > (ar ? 1 : 0);
		int rc = p2p ? bench_loopback_main(&cfg) : 0;
		if (ar && rc != 2) {
			int rc2 = bench_loopback_coll_main(&cfg, cfg.loopback_chunk);
			rc = rc > rc2 ? rc : rc2;
		}
		return rc;
	}

	if (!cfg.fake && !bench_have_nccl()) {
		fprintf(stderr, "rcmoe-bench: built without CUDA/NCCL: only --loopback and "
				"--selftest work in this build\n");
		return 2;
	}
	if (need_plugin && plugin_rc && !cfg.fake) {
		fprintf(stderr,
			"rcmoe-bench: plugin not found: %s\n"
			"  build it (ninja -C <builddir> plugin/%s) or install it\n"
			"  (meson install), put its directory on LD_LIBRARY_PATH, pass\n"
			"  --plugin PATH or set RCMOE_PLUGIN; -T socket runs the Socket\n"
			"  transport alone\n",
			cfg.plugin, BENCH_PLUGIN_SO);
		return 2;
	}

	int rows = 0;
	for (int o = 0; o < cfg.nops; o++)
		for (int s = 0; s < cfg.nsizes; s++) {
			size_t count, pp;
			rows += bench_op_shape(&cfg, cfg.ops[o], cfg.sizes[s], &count, &pp) != 0;
		}
	if (!rows) {
		fprintf(stderr,
			"rcmoe-bench: no size holds one %s element per rank (per peer for "
			"alltoall): raise -b/-e\n",
			cfg.dt->name);
		return 2;
	}

	struct bench_report rep;
	memset(&rep, 0, sizeof(rep));
	rep.cfg = &cfg;
	rep.cur_op = -1;
	rep.nruns = cfg.runs;
	rep.runs = calloc((size_t)cfg.runs * BENCH_NUM_TRANSPORTS, sizeof(*rep.runs));
	if (!rep.runs) {
		fprintf(stderr, "rcmoe-bench: out of memory\n");
		return 2;
	}
	for (int r = 0; r < cfg.runs; r++)
		for (int t = 0; t < BENCH_NUM_TRANSPORTS; t++) {
			rep.runs[r * BENCH_NUM_TRANSPORTS + t].run = r;
			rep.runs[r * BENCH_NUM_TRANSPORTS + t].transport = t;
		}

	/* MPS: processes sharing a GPU are otherwise time-sliced, and latencies meaningless. */
	if (!cfg.fake) {
		rep.mps_on = bench_mps_running();
		if (cfg.mps && !rep.mps_on) {
			if (bench_mps_start()) {
				fprintf(stderr, "rcmoe-bench: --mps: cannot start the MPS daemon "
						"(nvidia-cuda-mps-control -d)\n");
				free(rep.runs);
				return 2;
			}
			rep.mps_on = rep.mps_started = true;
		}
	}
	bench_report_preamble(&rep, stdout);
	int rc = bench_launch_all(&cfg, &rep);
	bench_report_ratios(&rep, stdout);
	bench_report_footer(&rep, stdout);
	if (rep.mps_started && bench_mps_stop())
		fprintf(stderr, "rcmoe-bench: stopping MPS (echo quit | nvidia-cuda-mps-control) "
				"failed\n");

	bench_workdir_done(&cfg, rc != 0);
	int status = rc == -2 ? 130 : (rc || rep.wrong_total) ? 1 : 0;
	if (cfg.json && bench_report_json(&rep, cfg.json))
		status = status ? status : 1;
	if (cfg.plot)
		bench_plot(&rep, cfg.plot); /* optional by design: never fails the run */
	free(rep.runs);
	return status;
}
