/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe-bench internals shared by its files: the configuration, the size schedule, the datatypes,
 * data generation and checking, the parent <-> child wire messages and the result store.
 *
 * Process model: the parent never initialises CUDA or NCCL. For every (run, transport) it forks
 * and execs itself N times in a hidden --child mode with that transport's environment, because
 * NCCL reads NCCL_NET_PLUGIN once per process. Children talk to the parent over two pipes each.
 */
#ifndef RCMOE_BENCH_H
#define RCMOE_BENCH_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "print_float.h"
#include "rcmoe/nccl_abi.h"

#define BENCH_VERSION    "0.1.0"
#define BENCH_MAX_RANKS  32 /* allreduce check data stays exact in bf16 up to 32 */
#define BENCH_MAX_SIZES  64
#define BENCH_MAX_ENV    64
#define BENCH_ID_BYTES   128 /* NCCL_UNIQUE_ID_BYTES */
#define BENCH_PLUGIN_SO  "libnccl-net-rcmoe.so"
#define BENCH_HOSTID_FMT "rcmoe-bench-h%d"

enum bench_op { BENCH_ALLTOALL, BENCH_ALLREDUCE, BENCH_SENDRECV, BENCH_NUM_OPS };
/* BENCH_COLLNET: the plugin again, with NCCL_COLLNET_ENABLE=1 (and --ar-density / --ar-bits):
 * all-reduce through the plugin's collective side (collnet.c). */
enum bench_transport { BENCH_SOCKET, BENCH_RCMOE, BENCH_COLLNET, BENCH_NUM_TRANSPORTS };
enum bench_check_mode { BENCH_CHECK_EXACT, BENCH_CHECK_ERROR, BENCH_CHECK_NONE };
enum bench_a2a_impl { BENCH_A2A_AUTO, BENCH_A2A_NATIVE, BENCH_A2A_P2P };
enum bench_fail_mode {
	BENCH_FAIL_NONE,
	BENCH_FAIL_CRASH,     /* SIGSEGV */
	BENCH_FAIL_HANG,      /* stop reporting, never exit */
	BENCH_FAIL_ERROR,     /* report an error message, exit 1 */
	BENCH_FAIL_EXIT,      /* exit 3 without a word */
	BENCH_FAIL_WRONG,     /* corrupt one received element per row */
	BENCH_FAIL_NOCOLLNET, /* collNet runs: behave as if NCCL kept all-reduce on its ring */
};

/* The all-reduce mode of the plugin's collective side, as its counters name it. */
enum bench_cn_mode { BENCH_CN_LOSSLESS, BENCH_CN_PTS, BENCH_CN_LSQ, BENCH_CN_NMODES };

struct bench_dtype {
	const char *name; /* nccl-tests spelling */
	int nccl;         /* ncclDataType_t value */
	unsigned size;    /* bytes per element */
	bool is_float;
	bool is_signed;
};

struct bench_cfg {
	/* what to run */
	int nranks;
	int iters;
	int warmup;
	int runs;
	int device;
	size_t min_bytes, max_bytes;
	double factor;
	bool min_set, max_set, factor_set; /* given: loopback mode has its own defaults */
	size_t sizes[BENCH_MAX_SIZES];
	int nsizes;
	const struct bench_dtype *dt;
	int ops[BENCH_NUM_OPS]; /* in the order given */
	int nops;
	bool ops_given; /* -O was given */
	bool transport_on[BENCH_NUM_TRANSPORTS];
	bool transports_given; /* -T was given */
	int check; /* enum bench_check_mode, after folding: integer types always exact */
	bool check_asked_error; /* --check error was given (for the header when folded) */
	int a2a;                /* enum bench_a2a_impl */
	uint64_t seed;
	int check_threads; /* 0: automatic */
	/* --dup-fraction: alltoall rows (of dup_row elements) that repeat an earlier row of the
	 * same peer's slice, the traffic collaboration dedup (RCMOE_A2A_DEDUP) removes */
	double dup_fraction;
	size_t dup_row;

	/* environment of the children */
	char plugin[PATH_MAX]; /* absolute path once resolved */
	const char *plugin_arg;
	const char *gdr_level; /* NULL: default (SYS for the rcmoe run, env kept if set) */
	const char *proto;
	const char *env[BENCH_MAX_ENV];
	int nenv;
	const char *rcmoe_env[BENCH_MAX_ENV];
	int nrcmoe_env;

	/* the collNet run (collnet.c) */
	const char *ar_density_arg; /* --ar-density, as given: RCMOE_AR_DENSITY */
	double ar_density;
	const char *ar_bits_arg; /* --ar-bits: RCMOE_AR_BITS */
	int ar_bits;
	bool force_collnet;     /* NCCL_ALGO=allreduce:CollNetChain for the collNet run */
	bool no_algo_log;       /* --no-algo-log: do not read NCCL's choice from its log */
	bool check_given;       /* -c was given (--ar-* default to -c error otherwise) */
	char workdir[PATH_MAX]; /* per-run NCCL logs and stats files; "" until made */
	bool keep_workdir;
	/* parent behaviour */
	bool mps;
	const char *json;
	const char *plot;
	double timeout; /* seconds without any news from any rank before a run is aborted */
	bool verbose;
	char exe[PATH_MAX];

	/* --link-gbps: the shaper preloaded into every rank (link.c) */
	double link_gbps;       /* 0: no emulated link */
	const char *link_arg;   /* as given: what RCMOE_SHAPER_GBPS gets */
	const char *shaper_arg; /* --shaper */
	char shaper[PATH_MAX];  /* absolute path once resolved */
	bool shaper_reexec;     /* internal: loopback mode after its re-exec with the shaper */

	/* modes */
	bool loopback;
	int inflight;          /* loopback: messages in flight */
	size_t loopback_bytes; /* loopback: bytes moved per size and transport */
	size_t loopback_chunk; /* loopback all-reduce: bytes per collNet call (--chunk) */
	int peers_list[16];    /* --loopback-peers: connection counts to run, in order */
	int npeers_list;       /* 0: not asked */
	bool selftest;
	bool fake; /* children simulate the collectives on the CPU (selftest) */
	int fail_rank;
	int fail_mode;

	/* --child state */
	bool child;
	int child_rank;
	int child_transport;
	int child_in_fd;  /* the unique id arrives here */
	int child_out_fd; /* messages to the parent */
};

/* ---- parent <-> child messages (same binary on both ends: native layout) ---- */
#define BENCH_MSG_MAGIC 0x52434d42u /* "BMCR" */
enum bench_msg_type {
	BENCH_MSG_ID = 1, /* rank 0 -> parent: the ncclUniqueId, BENCH_ID_BYTES */
	BENCH_MSG_HELLO,  /* struct bench_hello */
	BENCH_MSG_ROW,    /* struct bench_row_msg */
	BENCH_MSG_ERROR,  /* text */
	BENCH_MSG_INFO,   /* text, printed with -v */
	BENCH_MSG_DONE,   /* empty */
};

struct bench_msg_hdr {
	uint32_t magic;
	uint16_t type;
	uint16_t rank;
	uint32_t len;
};
#define BENCH_MSG_MAX 4096

struct bench_hello {
	int32_t nccl_version; /* ncclGetVersion at runtime, 0 when simulated */
	int32_t a2a_native;   /* 1 when ncclAlltoAll is used, 0 for grouped send/recv */
	uint64_t id_hash;     /* hash of the unique id this rank used: all must agree */
	char text[256];       /* environment summary for -v */
};

struct bench_check_res {
	uint64_t wrong;   /* exact mode: elements that differ */
	uint64_t checked; /* elements compared */
	double err_sq;    /* error mode: sum (got-exp)^2 */
	double ref_sq;    /* error mode: sum exp^2 */
	double maxabs;    /* error mode: max |got-exp| (NaN poisons it) */
};

struct bench_row_msg {
	int32_t op;
	int32_t size_idx;
	uint64_t bytes; /* per rank send buffer bytes actually used */
	uint64_t count; /* elements in the send buffer */
	double time_us; /* this rank's average time per op */
	struct bench_check_res chk;
};

/* ---- sizes (shared by parent and children so both agree on the row sequence) ---- */
int bench_build_sizes(struct bench_cfg *cfg, char *err, size_t errlen);
/* Bytes and elements one op really moves for a requested size, 0 when the count is 0.
 * alltoall: count per peer = size / (esize * nranks), the send buffer holds nranks of them. */
size_t bench_op_shape(const struct bench_cfg *cfg, int op, size_t size, size_t *count,
		      size_t *per_peer);
/* busbw factor, as nccl-tests: alltoall (n-1)/n, allreduce 2(n-1)/n, sendrecv 1. */
double bench_busbw_factor(int op, int nranks);
const char *bench_op_name(int op);
const char *bench_transport_name(int t);
const struct bench_dtype *bench_dtype_find(const char *name);
const char *bench_dtype_list(void);

/* ---- data and checks (check.c) ---- */
/* Whether this (cfg, op) uses Gaussian data and error figures. */
bool bench_lossy(const struct bench_cfg *cfg);
/* Fill count elements of rank's send buffer for op. */
void bench_fill(const struct bench_cfg *cfg, int op, int rank, void *buf, size_t count);
/* Check rank's out-of-place result; count = elements of the receive buffer (alltoall: all
 * peers' blocks, count/nranks each). */
void bench_check(const struct bench_cfg *cfg, int op, int rank, const void *recv, size_t count,
		 struct bench_check_res *res);
/* The exact value sender `rank` puts at element i, as a double (floats) or integer bits. */
double bench_value_f(const struct bench_cfg *cfg, int op, int rank, size_t i);
uint64_t bench_value_u(const struct bench_cfg *cfg, int op, int rank, size_t i);
/* Element access in the buffer's own type. */
double bench_load_f(const struct bench_dtype *dt, const void *buf, size_t i);
void bench_store_f(const struct bench_dtype *dt, void *buf, size_t i, double v);
uint64_t bench_load_u(const struct bench_dtype *dt, const void *buf, size_t i);
void bench_store_u(const struct bench_dtype *dt, void *buf, size_t i, uint64_t v);
uint16_t bench_f32_to_bf16(float f);
float bench_bf16_to_f32(uint16_t h);
uint16_t bench_f32_to_f16(float f);
float bench_f16_to_f32(uint16_t h);
uint64_t bench_hash64(uint64_t x);
int bench_check_threads(const struct bench_cfg *cfg);
/* CPU self-test of generation and checking; returns the number of failures. */
int bench_check_selftest(FILE *out);

/* ---- the collNet side of a run: what it asked for, NCCL's algorithm, the plugin's counters
 * (collnet.c) ---- */
struct bench_cn_counters {
	uint64_t messages[BENCH_CN_NMODES], logical[BENCH_CN_NMODES], wire[BENCH_CN_NMODES];
	int files; /* stats files read */
	int lines; /* collNet finalize lines in them */
};

/* One NCCL algorithm/protocol seen for an all-reduce size, and how often. */
#define BENCH_ALGO_KINDS 4
struct bench_algo_tally {
	size_t bytes;
	int n;
	char name[BENCH_ALGO_KINDS][32]; /* "COLLNET_CHAIN/SIMPLE" */
	int count[BENCH_ALGO_KINDS];
	int other; /* lines beyond BENCH_ALGO_KINDS kinds */
};

/* ---- results (report.c) ---- */
struct bench_result {
	bool valid;
	size_t bytes, count;
	double time_us; /* max over ranks */
	double algbw, busbw;
	struct bench_check_res chk; /* summed / maxed over ranks */
	double rank_time_us[BENCH_MAX_RANKS];
};

struct bench_run {
	int run, transport;
	bool attempted;
	bool failed;
	char error[1024];
	int nccl_version;
	int a2a_native;
	/* [op index in cfg->ops][size index] */
	struct bench_result res[BENCH_NUM_OPS][BENCH_MAX_SIZES];

	/* collNet (collnet.c): what this run's environment asks of the collective side */
	bool cn_enabled;   /* NCCL_COLLNET_ENABLE=1 reached the plugin */
	int cn_mode;       /* enum bench_cn_mode the RCMOE_AR_* settings ask for */
	char cn_label[96]; /* "PTS density 0.01", "LSQ 8 bits", "lossless" */
	uint64_t cn_min_bytes;
	char stats_tmpl[PATH_MAX]; /* RCMOE_STATS_FILE of rank r: %d for the rank; "" if none */
	struct bench_cn_counters cn;
	bool cn_checked, cn_ok; /* the counter check ran, and passed */
	char cn_error[512];
	/* NCCL's algorithm per all-reduce row, from rank 0's NCCL_DEBUG_FILE */
	char nccl_log[PATH_MAX]; /* rank 0's log; "" when the algorithm is not tracked */
	char algo_why[96];       /* why not tracked */
	long log_off;
	struct bench_algo_tally tally[BENCH_MAX_SIZES];
	int ntally;
	char algo[BENCH_NUM_OPS][BENCH_MAX_SIZES][64]; /* per row; "" unknown */
	int rows_not_collnet; /* collNet runs: all-reduce rows NCCL ran without CollNet */
};

struct bench_report {
	const struct bench_cfg *cfg;
	bool mps_on;
	bool mps_started;
	int nruns;
	struct bench_run *runs; /* cfg->runs * BENCH_NUM_TRANSPORTS, [run][transport] */
	uint64_t wrong_total;
	int failures;
	/* live printing state */
	int cur_op; /* op index whose table is open, -1 none */
};

struct bench_run *bench_report_run(struct bench_report *rep, int run, int transport);
void bench_report_preamble(struct bench_report *rep, FILE *out);
void bench_report_row(struct bench_report *rep, struct bench_run *r, int opi, int si, FILE *out);
void bench_report_run_end(struct bench_report *rep, struct bench_run *r, FILE *out);
void bench_report_ratios(struct bench_report *rep, FILE *out);
void bench_report_footer(struct bench_report *rep, FILE *out);
int bench_report_json(struct bench_report *rep, const char *path);
/* JSON helpers, shared with the loopback mode. */
void bench_json_str(FILE *f, const char *s);
void bench_json_num(FILE *f, double v);
/* Print a float right-aligned in width, at most maxchars characters, fewest decimals lost. */
void bench_format_size_arg(char *buf, size_t len, size_t v);

/* The command line as given, before getopt permuted it: children get the same options. */
extern char **bench_orig_argv;
extern int bench_orig_argc;

/* ---- modes ---- */
int bench_launch_all(struct bench_cfg *cfg, struct bench_report *rep); /* launch.c */
int bench_child_main(struct bench_cfg *cfg);                           /* child.c */
int bench_fake_child_main(struct bench_cfg *cfg);                      /* fake.c */
int bench_loopback_main(struct bench_cfg *cfg);                        /* loopback.c */
bool bench_have_nccl(void);                                            /* child.c */
bool bench_mps_running(void);                                          /* launch.c */
int bench_mps_start(void);
int bench_mps_stop(void);
int bench_plot(struct bench_report *rep, const char *png); /* report.c */
/* --loopback -O allreduce: the collective side in calls of chunk_bytes (loopback_coll.c) */
int bench_loopback_coll_main(struct bench_cfg *cfg, size_t chunk_bytes);
/* In a function returning int with an error buffer `err` (an array): a table call that does not
 * return ncclSuccess writes which one into err and returns -1. */
#define BENCH_NET_CHECK(err, call)                                                                 \
	do {                                                                                       \
		ncclResult_t r_ = (call);                                                          \
		if (r_ != ncclSuccess) {                                                           \
			snprintf(err, sizeof(err), "%s returned %d", #call, (int)r_);              \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

/* Load the plugin at path as NCCL does, init it (warnings to stderr) and check that device 0
 * takes host memory; 0, or -1 with why in err (loopback.c, for both loopback modes). */
int bench_net_open(const char *path, ncclNet_v11_t **net, void **ctx, char *err, size_t errlen);
/* --loopback-peers: the net side with many connections at once (loopback_peers.c) */
int bench_loopback_peers_main(struct bench_cfg *cfg);

/* ---- collNet (collnet.c) ---- */
const char *bench_cn_mode_name(int mode); /* "lossless", "PTS", "LSQ" (the counters' names) */
/* Parse --ar-density / --ar-bits; -1 when out of range. */
int bench_cn_parse_density(struct bench_cfg *cfg, const char *arg);
int bench_cn_parse_bits(struct bench_cfg *cfg, const char *arg);
/* Whether all-reduce of cfg->dt can go through the collective side (sum of fp32/fp16/bf16). */
bool bench_cn_dtype_ok(const struct bench_cfg *cfg);
/* Whether cfg->ops holds allreduce. */
bool bench_has_allreduce(const struct bench_cfg *cfg);
/* Makes cfg->workdir (once); -1 on failure. */
int bench_workdir(struct bench_cfg *cfg);
void bench_workdir_done(struct bench_cfg *cfg, bool failed);
/* From a run's final environment (NAME=VALUE strings, NULL-terminated): what it asks of the
 * collective side, into r->cn_*. */
void bench_cn_expect(const struct bench_cfg *cfg, struct bench_run *r, char *const *env);
/* Read rank 0's NCCL log up to its end and label the row (opi, si) with the algorithms seen. */
void bench_algo_update(const struct bench_cfg *cfg, struct bench_run *r, int opi, int si);
/* Parse one NCCL_TUNING line into (bytes, "ALGO/PROTO"); 0 when it is one. */
int bench_algo_parse_line(const char *line, size_t *bytes, char *name, size_t len);
/* After a run: its stats files into r->cn and the check (r->cn_ok, r->cn_error); returns -1
 * when the run asked for collNet (compressed) and the counters show none. */
int bench_cn_check(const struct bench_cfg *cfg, struct bench_run *r, int nranks);
/* Parse one stats JSON line: mode and counters of a collNet finalize record; 0 when it is one. */
int bench_cn_parse_stats_line(const char *line, int *mode, uint64_t *messages, uint64_t *logical,
			      uint64_t *wire);
/* The counters per mode, and the rows that went without CollNet, after a run's tables. */
void bench_cn_print(const struct bench_cfg *cfg, const struct bench_run *r, FILE *out);
/* NCCL WARN lines of each rank's log to stderr (they would have gone there without the log). */
void bench_echo_warnings(const struct bench_cfg *cfg, struct bench_run *r, int nranks);
/* The log and stats file paths of (run, rank): "" when unused. */
void bench_log_path(const struct bench_cfg *cfg, const struct bench_run *r, int rank, char *out,
		    size_t len);
/* CPU self-test of the parsers; returns the number of failures. */
int bench_cn_selftest(FILE *out);

/* ---- the emulated link (link.c) ---- */
int bench_link_parse(struct bench_cfg *cfg, const char *arg);
/* "emulated link G Gb/s per rank", or NULL without --link-gbps. */
const char *bench_link_label(const struct bench_cfg *cfg);
/* Finds librcmoe-shaper.so into cfg->shaper; -1 when there is none. */
int bench_link_resolve(struct bench_cfg *cfg);
/* The LD_PRELOAD value of a rank, given the one it would inherit. */
int bench_link_preload(const struct bench_cfg *cfg, const char *current, char *out, size_t len);
/* In a rank: 0 when the shaper is loaded in this process at cfg->link_gbps, else -1 and why. */
int bench_link_check(const struct bench_cfg *cfg, char *err, size_t len);
/* --loopback: returns 0 once this process is shaped; re-executes it with the shaper preloaded
 * when it is not (and does not return then); 2 on failure, said on stderr. */
int bench_link_loopback_enter(struct bench_cfg *cfg);

/* Child helpers (child.c, fake.c). */
int bench_msg_send(int fd, int type, int rank, const void *payload, size_t len);
int bench_child_read_id(int fd, void *id);
uint64_t bench_id_hash(const void *id);

#endif
