/* SPDX-License-Identifier: Apache-2.0 */
/*
 * All-reduce through the plugin's collective side (NCCL's collNet): what a run asks for, which
 * algorithm NCCL really used for each all-reduce row, and whether the plugin's counters show
 * the collective side carried it.
 *
 * - What is asked: read from the run's final environment (NCCL_COLLNET_ENABLE, RCMOE_AR_CODEC,
 *   RCMOE_AR_DENSITY, RCMOE_AR_BITS, RCMOE_AR_MIN_BYTES), so `--rcmoe-env` settings count as
 *   much as --ar-density / --ar-bits.
 * - The algorithm: with NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=TUNING, rank 0 of a communicator logs
 *   one line per collective it enqueues (NCCL 2.26-2.30, src/enqueue.cc):
 *     "AllReduce: <bytes> Bytes -> Algo <ALGO> proto <PROTO> channel{Lo..Hi}={a..b}"
 *   The bench sends each rank's log to a file of its own (NCCL_DEBUG_FILE) when the user has not
 *   set NCCL's debug variables, reads rank 0's as each row completes (the row's collectives were
 *   enqueued before the rank reported it, and NCCL's log file is line buffered), and copies the
 *   WARN lines to stderr, where they would have gone.
 * - The counters: RCMOE_STATS_FILE per rank; at finalize the plugin writes one JSON line per
 *   (mode, datatype) of its collective side with comm "0x<id>:collnet-<mode>" (docs/counters.md).
 *   A run that asked for collNet all-reduce of a type it takes, and whose counters show no
 *   collNet call (or no compressed call when compression was asked and a row was large enough),
 *   FAILS: its rows are NCCL's own ring or tree, not what was asked.
 */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const cn_modes[BENCH_CN_NMODES] = { "lossless", "PTS", "LSQ" };

const char *bench_cn_mode_name(int mode)
{
	return mode >= 0 && mode < BENCH_CN_NMODES ? cn_modes[mode] : "?";
}

/* The plugin's own ranges (docs/configuration.md): density in (0, 1], bits 8, 4 or 2. */
int bench_cn_parse_density(struct bench_cfg *cfg, const char *arg)
{
	char *end;
	errno = 0;
	double d = strtod(arg, &end);
	if (end == arg || *end || errno || !(d > 0 && d <= 1))
		return -1;
	cfg->ar_density = d;
	cfg->ar_density_arg = arg;
	return 0;
}

int bench_cn_parse_bits(struct bench_cfg *cfg, const char *arg)
{
	if (strcmp(arg, "8") && strcmp(arg, "4") && strcmp(arg, "2"))
		return -1;
	cfg->ar_bits = atoi(arg);
	cfg->ar_bits_arg = arg;
	return 0;
}

bool bench_cn_dtype_ok(const struct bench_cfg *cfg)
{
	/* reduceSupport: sum of fp16 (6), fp32 (7) and bf16 (9); NCCL keeps the rest. */
	return cfg->dt->nccl == 6 || cfg->dt->nccl == 7 || cfg->dt->nccl == 9;
}

bool bench_has_allreduce(const struct bench_cfg *cfg)
{
	for (int o = 0; o < cfg->nops; o++)
		if (cfg->ops[o] == BENCH_ALLREDUCE)
			return true;
	return false;
}

int bench_workdir(struct bench_cfg *cfg)
{
	if (cfg->workdir[0])
		return 0;
	const char *tmp = getenv("TMPDIR");
	/* NCCL expands % in NCCL_DEBUG_FILE, and the plugin in RCMOE_STATS_FILE */
	if (!tmp || !*tmp || strchr(tmp, '%') || strlen(tmp) > PATH_MAX / 2)
		tmp = "/tmp";
	snprintf(cfg->workdir, sizeof(cfg->workdir), "%s/rcmoe-bench-XXXXXX", tmp);
	if (!mkdtemp(cfg->workdir)) {
		fprintf(stderr, "rcmoe-bench: cannot make a directory %s: %s\n", cfg->workdir,
			strerror(errno));
		cfg->workdir[0] = 0;
		return -1;
	}
	return 0;
}

/* Removes the files the bench put there, then the directory; kept when a run failed. */
void bench_workdir_done(struct bench_cfg *cfg, bool failed)
{
	if (!cfg->workdir[0])
		return;
	if (failed || cfg->keep_workdir) {
		fprintf(stderr, "rcmoe-bench: NCCL logs and plugin counters kept in %s\n",
			cfg->workdir);
		return;
	}
	char path[PATH_MAX + 96];
	for (int t = 0; t < BENCH_NUM_TRANSPORTS; t++)
		for (int run = 0; run < cfg->runs; run++)
			for (int r = 0; r < cfg->nranks; r++) {
				snprintf(path, sizeof(path), "%s/nccl-t%d-run%d-r%d.log",
					 cfg->workdir, t, run, r);
				unlink(path);
				snprintf(path, sizeof(path), "%s/stats-t%d-run%d-r%d.jsonl",
					 cfg->workdir, t, run, r);
				unlink(path);
			}
	if (rmdir(cfg->workdir))
		fprintf(stderr, "rcmoe-bench: %s left behind: %s\n", cfg->workdir, strerror(errno));
}

void bench_log_path(const struct bench_cfg *cfg, const struct bench_run *r, int rank, char *out,
		    size_t len)
{
	if (!r->nccl_log[0]) {
		out[0] = 0;
		return;
	}
	snprintf(out, len, "%s/nccl-t%d-run%d-r%d.log", cfg->workdir, r->transport, r->run, rank);
}

static const char *env_in(char *const *env, const char *name)
{
	size_t n = strlen(name);
	const char *found = NULL;
	for (; env && *env; env++)
		if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
			found = *env + n + 1; /* the last one wins, as in the env vector */
	return found;
}

void bench_cn_expect(const struct bench_cfg *cfg, struct bench_run *r, char *const *env)
{
	(void)cfg;
	const char *en = env_in(env, "NCCL_COLLNET_ENABLE");
	r->cn_enabled = en && atoi(en) == 1;
	const char *codec = env_in(env, "RCMOE_AR_CODEC");
	const char *dens = env_in(env, "RCMOE_AR_DENSITY"), *bits = env_in(env, "RCMOE_AR_BITS");
	const char *minb = env_in(env, "RCMOE_AR_MIN_BYTES");
	double d = dens ? strtod(dens, NULL) : 0;
	int b = bits ? atoi(bits) : 0;
	r->cn_min_bytes = minb ? strtoull(minb, NULL, 0) : 65536;
	if (codec && !strcmp(codec, "pts"))
		r->cn_mode = BENCH_CN_PTS;
	else if (codec && !strcmp(codec, "lsq"))
		r->cn_mode = BENCH_CN_LSQ;
	else
		r->cn_mode = d > 0 ? BENCH_CN_PTS : b > 0 ? BENCH_CN_LSQ : BENCH_CN_LOSSLESS;
	if (r->cn_mode == BENCH_CN_PTS)
		snprintf(r->cn_label, sizeof(r->cn_label), "PTS density %.24s", dens ? dens : "?");
	else if (r->cn_mode == BENCH_CN_LSQ)
		snprintf(r->cn_label, sizeof(r->cn_label), "LSQ %.8s bits", bits ? bits : "?");
	else
		snprintf(r->cn_label, sizeof(r->cn_label), "lossless");
}

/* ---- NCCL's algorithm ---- */

int bench_algo_parse_line(const char *line, size_t *bytes, char *name, size_t len)
{
	const char *p = strstr(line, "AllReduce: ");
	if (!p)
		return -1;
	p += strlen("AllReduce: ");
	char *end;
	errno = 0;
	unsigned long long b = strtoull(p, &end, 10);
	if (end == p || errno || strncmp(end, " Bytes -> Algo ", 15))
		return -1;
	p = end + 15;
	size_t an = strcspn(p, " \n");
	if (!an || an > 20 || strncmp(p + an, " proto ", 7))
		return -1;
	const char *q = p + an + 7;
	size_t pn = strcspn(q, " \n");
	if (!pn || pn > 10)
		return -1;
	snprintf(name, len, "%.*s/%.*s", (int)an, p, (int)pn, q);
	*bytes = (size_t)b;
	return 0;
}

static void tally_add(struct bench_run *r, size_t bytes, const char *name)
{
	struct bench_algo_tally *t = NULL;
	for (int i = 0; i < r->ntally && !t; i++)
		if (r->tally[i].bytes == bytes)
			t = &r->tally[i];
	if (!t) {
		if (r->ntally == BENCH_MAX_SIZES)
			return;
		t = &r->tally[r->ntally++];
		memset(t, 0, sizeof(*t));
		t->bytes = bytes;
	}
	for (int k = 0; k < t->n; k++)
		if (!strcmp(t->name[k], name)) {
			t->count[k]++;
			return;
		}
	if (t->n == BENCH_ALGO_KINDS) {
		t->other++;
		return;
	}
	snprintf(t->name[t->n], sizeof(t->name[0]), "%.31s", name);
	t->count[t->n++] = 1;
}

/* Reads complete lines from r->log_off on. */
static void algo_read(struct bench_run *r)
{
	FILE *f = fopen(r->nccl_log, "r");
	if (!f)
		return;
	if (fseek(f, r->log_off, SEEK_SET)) {
		fclose(f);
		return;
	}
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(line);
		if (!n || line[n - 1] != '\n') {
			if (n == sizeof(line) - 1)
				continue; /* a long line: skip its rest (it cannot be ours) */
			break;            /* not complete yet: read it next time */
		}
		r->log_off += (long)n;
		size_t bytes;
		char name[sizeof(r->tally[0].name[0])];
		if (!bench_algo_parse_line(line, &bytes, name, sizeof(name)))
			tally_add(r, bytes, name);
	}
	fclose(f);
}

void bench_algo_update(const struct bench_cfg *cfg, struct bench_run *r, int opi, int si)
{
	if (!r->nccl_log[0] || cfg->ops[opi] != BENCH_ALLREDUCE)
		return;
	algo_read(r);
	const struct bench_result *res = &r->res[opi][si];
	char *out = r->algo[opi][si];
	size_t len = sizeof(r->algo[opi][si]);
	out[0] = 0;
	const struct bench_algo_tally *t = NULL;
	for (int i = 0; i < r->ntally && !t; i++)
		if (r->tally[i].bytes == res->bytes)
			t = &r->tally[i];
	if (!t) {
		snprintf(out, len, "not in NCCL's log");
		return;
	}
	bool collnet = false;
	size_t k = 0;
	for (int i = 0; i < t->n && k < len; i++) {
		collnet |= strncmp(t->name[i], "COLLNET", 7) == 0;
		if (t->n == 1)
			k += (size_t)snprintf(out + k, len - k, "%s", t->name[i]);
		else
			k += (size_t)snprintf(out + k, len - k, "%s%s x%d", i ? ", " : "",
					      t->name[i], t->count[i]);
	}
	if (t->other && k < len)
		snprintf(out + k, len - k, ", +%d more", t->other);
	if (r->cn_enabled && bench_cn_dtype_ok(cfg) && !collnet)
		r->rows_not_collnet++;
}

void bench_echo_warnings(const struct bench_cfg *cfg, struct bench_run *r, int nranks)
{
	char path[PATH_MAX + 96], line[1024];
	for (int k = 0; k < nranks; k++) {
		bench_log_path(cfg, r, k, path, sizeof(path));
		FILE *f = path[0] ? fopen(path, "r") : NULL;
		if (!f)
			continue;
		int shown = 0;
		while (fgets(line, sizeof(line), f))
			if (strstr(line, " NCCL WARN ") && shown++ < 50)
				fprintf(stderr, "rcmoe-bench: %s rank %d: %s%s",
					bench_transport_name(r->transport), k, line,
					strchr(line, '\n') ? "" : "\n");
		if (shown > 50)
			fprintf(stderr, "rcmoe-bench: %s rank %d: %d more WARN lines in %s\n",
				bench_transport_name(r->transport), k, shown - 50, path);
		fclose(f);
	}
}

/* ---- the plugin's counters ---- */

static int json_u64(const char *line, const char *key, uint64_t *out)
{
	const char *p = strstr(line, key);
	if (!p)
		return -1;
	p += strlen(key);
	char *end;
	errno = 0;
	unsigned long long v = strtoull(p, &end, 10);
	if (end == p || errno)
		return -1;
	*out = v;
	return 0;
}

int bench_cn_parse_stats_line(const char *line, int *mode, uint64_t *messages, uint64_t *logical,
			      uint64_t *wire)
{
	if (!strstr(line, "\"event\":\"finalize\""))
		return -1;
	const char *c = strstr(line, "\"comm\":\"");
	if (!c)
		return -1;
	c += 8;
	const char *q = strchr(c, '"'), *k = strstr(c, ":collnet-");
	if (!q || !k || k > q)
		return -1;
	k += 9;
	*mode = -1;
	for (int m = 0; m < BENCH_CN_NMODES; m++)
		if ((size_t)(q - k) == strlen(cn_modes[m]) &&
		    !strncmp(k, cn_modes[m], (size_t)(q - k)))
			*mode = m;
	if (*mode < 0)
		return -1;
	if (json_u64(line, "\"messages\":", messages) ||
	    json_u64(line, "\"logical_bytes\":", logical) ||
	    json_u64(line, "\"wire_bytes\":", wire))
		return -1;
	return 0;
}

static void fmt_bytes(char *buf, size_t len, uint64_t b)
{
	if (b >= (1ull << 30))
		snprintf(buf, len, "%.2f GiB", (double)b / (1 << 30));
	else if (b >= (1ull << 20))
		snprintf(buf, len, "%.2f MiB", (double)b / (1 << 20));
	else
		snprintf(buf, len, "%" PRIu64 " B", b);
}

int bench_cn_check(const struct bench_cfg *cfg, struct bench_run *r, int nranks)
{
	if (!r->cn_enabled || !r->stats_tmpl[0])
		return 0;
	memset(&r->cn, 0, sizeof(r->cn));
	char path[PATH_MAX + 32], line[1024];
	for (int k = 0; k < nranks; k++) {
		snprintf(path, sizeof(path), r->stats_tmpl, k);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		r->cn.files++;
		while (fgets(line, sizeof(line), f)) {
			int m;
			uint64_t msg, lg, w;
			if (bench_cn_parse_stats_line(line, &m, &msg, &lg, &w))
				continue;
			r->cn.lines++;
			r->cn.messages[m] += msg;
			r->cn.logical[m] += lg;
			r->cn.wire[m] += w;
		}
		fclose(f);
	}
	r->cn_checked = true;
	r->cn_ok = true;
	r->cn_error[0] = 0;
	if (!bench_has_allreduce(cfg) || !bench_cn_dtype_ok(cfg))
		return 0; /* nothing the collective side takes: nothing to expect */
	size_t biggest = 0;
	for (int o = 0; o < cfg->nops; o++)
		if (cfg->ops[o] == BENCH_ALLREDUCE)
			for (int s = 0; s < cfg->nsizes; s++)
				if (r->res[o][s].valid && r->res[o][s].bytes > biggest)
					biggest = r->res[o][s].bytes;
	if (!biggest)
		return 0; /* no all-reduce row completed: the run failed for another reason */
	uint64_t any = 0;
	for (int m = 0; m < BENCH_CN_NMODES; m++)
		any += r->cn.messages[m];
	const char *hint =
		"NCCL kept all-reduce on its own algorithms, so these rows are not what was asked "
		"(is the plugin's tuner there? --force-collnet sets "
		"NCCL_ALGO=allreduce:CollNetChain; NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET "
		"shows "
		"NCCL's CollNet lines and the plugin's reasons)";
	if (!any) {
		snprintf(r->cn_error, sizeof(r->cn_error),
			 "asked for all-reduce through the plugin's collective side (%s), but its "
			 "counters show no collNet call (%d of %d stats files read): %s",
			 r->cn_label, r->cn.files, nranks, hint);
		r->cn_ok = false;
	} else if (r->cn_mode != BENCH_CN_LOSSLESS && !r->cn.messages[r->cn_mode] &&
		   biggest >= 4 * r->cn_min_bytes) {
		snprintf(r->cn_error, sizeof(r->cn_error),
			 "asked for compressed all-reduce (%s), but the plugin's counters show no "
			 "%s call (%" PRIu64 " lossless) although rows reach %zu bytes "
			 "(RCMOE_AR_MIN_BYTES=%" PRIu64 ")",
			 r->cn_label, bench_cn_mode_name(r->cn_mode),
			 r->cn.messages[BENCH_CN_LOSSLESS], biggest, r->cn_min_bytes);
		r->cn_ok = false;
	}
	return r->cn_ok ? 0 : -1;
}

void bench_cn_print(const struct bench_cfg *cfg, const struct bench_run *r, FILE *out)
{
	(void)cfg;
	if (!r->cn_checked)
		return;
	fprintf(out, "# %s run %d: plugin collNet counters, all ranks (%d stats files):",
		bench_transport_name(r->transport), r->run + 1, r->cn.files);
	bool any = false;
	for (int m = 0; m < BENCH_CN_NMODES; m++) {
		if (!r->cn.messages[m])
			continue;
		char lg[32], w[32];
		fmt_bytes(lg, sizeof(lg), r->cn.logical[m]);
		fmt_bytes(w, sizeof(w), r->cn.wire[m]);
		fprintf(out, "%s collnet-%s %" PRIu64 " calls, logical %s, wire %s, ratio %.2f",
			any ? ";" : "", cn_modes[m], r->cn.messages[m], lg, w,
			r->cn.wire[m] ? (double)r->cn.logical[m] / (double)r->cn.wire[m] : 0.0);
		any = true;
	}
	fprintf(out, "%s\n", any ? "" : " no collNet call");
	if (r->rows_not_collnet)
		fprintf(out,
			"# WARNING: %d all-reduce row%s of this run went without CollNet (see the "
			"algo column): not carried by the collective side, so not compressed\n",
			r->rows_not_collnet, r->rows_not_collnet == 1 ? "" : "s");
}

/* ---- self-test of the parsers ---- */

int bench_cn_selftest(FILE *out)
{
	int fails = 0;
#define EXPECT(c, ...)                                                                             \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fails++;                                                                   \
			fprintf(out, "# selftest FAILED %s:%d: ", __FILE__, __LINE__);             \
			fprintf(out, __VA_ARGS__);                                                 \
			fputc('\n', out);                                                          \
		}                                                                                  \
	} while (0)
	size_t b = 0;
	char name[64];
	/* NCCL 2.28.9's line, with its usual prefix */
	EXPECT(!bench_algo_parse_line("h0:1234:1240 [0] NCCL INFO AllReduce: 67108864 Bytes -> "
				      "Algo COLLNET_CHAIN proto SIMPLE channel{Lo..Hi}={0..1}\n",
				      &b, name, sizeof(name)) &&
		       b == 67108864 && !strcmp(name, "COLLNET_CHAIN/SIMPLE"),
	       "algo line: %zu %s", b, name);
	EXPECT(!bench_algo_parse_line("AllReduce: 2 Bytes -> Algo RING proto LL channel{Lo..Hi}="
				      "{0..0}",
				      &b, name, sizeof(name)) &&
		       b == 2 && !strcmp(name, "RING/LL"),
	       "algo line without prefix: %zu %s", b, name);
	static const char *const not_algo[] = {
		"NCCL INFO AlltoAll: 1024 Bytes -> Algo RING proto SIMPLE channel{Lo..Hi}={0..1}",
		"NCCL INFO AllReduce: x Bytes -> Algo RING proto SIMPLE",
		"NCCL INFO AllReduce: 12 Bytes -> Algo  proto SIMPLE",
		"NCCL INFO AllReduce: 12 Bytes -> Algo RING",
		"NCCL INFO Connected Collnet Chains 0->1",
		"",
	};
	for (size_t i = 0; i < sizeof(not_algo) / sizeof(not_algo[0]); i++)
		EXPECT(bench_algo_parse_line(not_algo[i], &b, name, sizeof(name)),
		       "not an algo line, parsed: %s", not_algo[i]);

	int m = -1;
	uint64_t msg = 0, lg = 0, w = 0;
	EXPECT(!bench_cn_parse_stats_line(
		       "{\"ts\":1.5,\"event\":\"finalize\",\"pid\":7,\"host\":\"h0\",\"comm\":"
		       "\"0x5a1f:collnet-PTS\",\"dir\":\"send\",\"func\":\"AllReduce\",\"dtype\":"
		       "\"ncclFloat32\",\"messages\":81,\"logical_bytes\":1000,\"wire_bytes\":10,"
		       "\"ratio\":100.0000,\"codec_us\":5.0}\n",
		       &m, &msg, &lg, &w) &&
		       m == BENCH_CN_PTS && msg == 81 && lg == 1000 && w == 10,
	       "stats line: mode %d %" PRIu64 " %" PRIu64 " %" PRIu64, m, msg, lg, w);
	EXPECT(!bench_cn_parse_stats_line("{\"event\":\"finalize\",\"comm\":\"0x1:collnet-"
					  "lossless\",\"messages\":3,\"logical_bytes\":4,"
					  "\"wire_bytes\":4}",
					  &m, &msg, &lg, &w) &&
		       m == BENCH_CN_LOSSLESS && msg == 3,
	       "stats line lossless: %d", m);
	static const char *const not_cn[] = {
		/* the net side's own counters */
		"{\"event\":\"finalize\",\"comm\":\"0x1\",\"messages\":3,\"logical_bytes\":4,"
		"\"wire_bytes\":4}",
		/* periodic records hold running totals: only finalize counts */
		"{\"event\":\"periodic\",\"comm\":\"0x1:collnet-PTS\",\"messages\":3,"
		"\"logical_bytes\":4,\"wire_bytes\":4}",
		"{\"event\":\"finalize\",\"comm\":\"0x1:collnet-XYZ\",\"messages\":3,"
		"\"logical_bytes\":4,\"wire_bytes\":4}",
		"{\"event\":\"finalize\",\"comm\":\"0x1:collnet-LSQ\",\"messages\":3}",
		"garbage",
	};
	for (size_t i = 0; i < sizeof(not_cn) / sizeof(not_cn[0]); i++)
		EXPECT(bench_cn_parse_stats_line(not_cn[i], &m, &msg, &lg, &w),
		       "not a collNet line, parsed: %s", not_cn[i]);

	/* What a run's environment asks for. */
	struct bench_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	struct bench_run *r = calloc(1, sizeof(*r));
	if (!r)
		return fails + 1;
	char *e1[] = { "NCCL_COLLNET_ENABLE=1", "RCMOE_AR_DENSITY=0.01", NULL };
	bench_cn_expect(&cfg, r, e1);
	EXPECT(r->cn_enabled && r->cn_mode == BENCH_CN_PTS && r->cn_min_bytes == 65536,
	       "expect PTS: %d %d", r->cn_enabled, r->cn_mode);
	char *e2[] = { "NCCL_COLLNET_ENABLE=0", "RCMOE_AR_BITS=8", "RCMOE_AR_MIN_BYTES=1024",
		       NULL };
	bench_cn_expect(&cfg, r, e2);
	EXPECT(!r->cn_enabled && r->cn_mode == BENCH_CN_LSQ && r->cn_min_bytes == 1024,
	       "expect LSQ off: %d %d", r->cn_enabled, r->cn_mode);
	char *e3[] = { "NCCL_COLLNET_ENABLE=1", "RCMOE_AR_DENSITY=0", "RCMOE_AR_BITS=0",
		       "NCCL_COLLNET_ENABLE=1", NULL };
	bench_cn_expect(&cfg, r, e3);
	EXPECT(r->cn_enabled && r->cn_mode == BENCH_CN_LOSSLESS, "expect lossless: %d", r->cn_mode);
	free(r);
	EXPECT(bench_cn_parse_density(&cfg, "0") && bench_cn_parse_density(&cfg, "1.5") &&
		       bench_cn_parse_density(&cfg, "x") && !bench_cn_parse_density(&cfg, "1") &&
		       !bench_cn_parse_density(&cfg, "0.01") && cfg.ar_density == 0.01,
	       "--ar-density ranges");
	EXPECT(bench_cn_parse_bits(&cfg, "3") && bench_cn_parse_bits(&cfg, "16") &&
		       !bench_cn_parse_bits(&cfg, "4") && cfg.ar_bits == 4,
	       "--ar-bits values");
#undef EXPECT
	return fails;
}
