/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Output: nccl-tests style tables (fixed-width rows, '#' comment headers, the "Out of bounds
 * values" footer), the rcmoe/Socket ratio per op, one JSON document, and the optional plot.
 */
#include "bench.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct bench_run *bench_report_run(struct bench_report *rep, int run, int transport)
{
	return &rep->runs[run * BENCH_NUM_TRANSPORTS + transport];
}

static const char *mps_label(const struct bench_report *rep)
{
	if (rep->cfg->fake)
		return "simulated";
	return rep->mps_on ? "MPS on" : "MPS off, time-sliced";
}

/* The collnet run's all-reduce, as the options ask for it. */
static const char *collnet_label(const struct bench_cfg *cfg)
{
	static char label[96];
	if (cfg->ar_density_arg)
		snprintf(label, sizeof(label), "PTS density %.24s", cfg->ar_density_arg);
	else if (cfg->ar_bits_arg)
		snprintf(label, sizeof(label), "LSQ two-step %s bits", cfg->ar_bits_arg);
	else
		snprintf(label, sizeof(label), "lossless");
	return label;
}

static void transport_label(const struct bench_report *rep, int t, char *buf, size_t len)
{
	if (t == BENCH_SOCKET)
		snprintf(buf, len, "Socket (NCCL built-in)");
	else if (t == BENCH_RCMOE)
		snprintf(buf, len, "RCMoE (plugin %s)", rep->cfg->plugin);
	else
		snprintf(buf, len,
			 "RCMoE-collNet (the plugin, all-reduce %s on its collective side%s)",
			 collnet_label(rep->cfg),
			 rep->cfg->force_collnet ? ", NCCL_ALGO=allreduce:CollNetChain" : "");
}

static const char *check_label(const struct bench_cfg *cfg)
{
	switch (cfg->check) {
	case BENCH_CHECK_EXACT:
		return cfg->check_asked_error ? "exact (integer type: error mode does not apply)"
					      : "exact (#wrong: elements that differ)";
	case BENCH_CHECK_ERROR:
		return "error (Gaussian data; relL2 = ||got-exp||/||exp||, maxabs = max|got-exp|;\n"
		       "#         a bf16/fp16 allreduce shows NCCL's own rounding, Socket "
		       "included)";
	}
	return "none";
}

void bench_report_preamble(struct bench_report *rep, FILE *out)
{
	const struct bench_cfg *cfg = rep->cfg;
	char lo[32], hi[32];
	bench_format_size_arg(lo, sizeof(lo), cfg->min_bytes);
	bench_format_size_arg(hi, sizeof(hi), cfg->max_bytes);
	fprintf(out, "# rcmoe-bench %s: %d ranks on 1 GPU (device %d, %s)\n", BENCH_VERSION,
		cfg->nranks, cfg->device, mps_label(rep));
	fprintf(out, "#   ops");
	for (int o = 0; o < cfg->nops; o++)
		fprintf(out, "%s%s", o ? "," : " ", bench_op_name(cfg->ops[o]));
	if (cfg->nsizes > 1)
		fprintf(out, "  type %s  sizes %s..%s x%g", cfg->dt->name, lo, hi, cfg->factor);
	else
		fprintf(out, "  type %s  size %s", cfg->dt->name, lo);
	fprintf(out, "  iters %d  warmup %d  runs %d\n", cfg->iters, cfg->warmup, cfg->runs);
	fprintf(out, "#   check %s\n", check_label(cfg));
	fprintf(out,
		"#   alltoall via %s; size = bytes per rank of the send buffer; out-of-place "
		"only (in-place is not measured)\n",
		cfg->a2a == BENCH_A2A_P2P ? "grouped ncclSend/ncclRecv (forced)"
		: cfg->a2a == BENCH_A2A_NATIVE
			? "ncclAlltoAll (forced)"
			: "ncclAlltoAll if NCCL >= 2.28, else grouped send/recv");
	fprintf(out, "#   time = max over ranks of each rank's mean time per op (CUDA events); "
		     "busbw factor: alltoall (n-1)/n, allreduce 2(n-1)/n, sendrecv 1\n");
	char label[PATH_MAX + 32];
	fprintf(out, "#   transports:");
	bool first = true;
	for (int t = 0; t < BENCH_NUM_TRANSPORTS; t++)
		if (cfg->transport_on[t]) {
			transport_label(rep, t, label, sizeof(label));
			fprintf(out, " %s%s", first ? "" : "then ", label);
			first = false;
		}
	fprintf(out, "\n");
	if (cfg->transport_on[BENCH_COLLNET]) {
		fprintf(out,
			"#   collnet run: NCCL_COLLNET_ENABLE=1, all-reduce %s through the "
			"plugin's "
			"collective side%s; the other runs NCCL_COLLNET_ENABLE=0\n",
			collnet_label(cfg),
			cfg->force_collnet ? " (forced: NCCL_ALGO=allreduce:CollNetChain)"
					   : " (NCCL's own choice: no NCCL_ALGO)");
		if (!bench_cn_dtype_ok(cfg))
			fprintf(out,
				"#   NOTE: the collective side takes sum of float, half and "
				"bfloat16 "
				"only: %s all-reduce stays on NCCL's own algorithms\n",
				cfg->dt->name);
		if ((cfg->ar_density_arg || cfg->ar_bits_arg) && cfg->check == BENCH_CHECK_EXACT &&
		    cfg->dt->is_float)
			fprintf(out,
				"#   NOTE: -c exact with compressed all-reduce: its rows count "
				"the codec's changes as #wrong (-c error reports its error)\n");
	}
	if (bench_link_label(cfg))
		fprintf(out,
			"#   %s: %s preloaded into every rank of both transports, one token "
			"bucket per rank on its TCP sends\n",
			bench_link_label(cfg), cfg->shaper);
	if (cfg->dup_fraction > 0)
		fprintf(out,
			"#   alltoall data: rows of %zu elements, each after a slice's first a "
			"copy "
			"of an earlier row of it with probability %.3g (--dup-fraction)\n",
			cfg->dup_row, cfg->dup_fraction);
	if (cfg->fake)
		fprintf(out, "# SIMULATED ranks (--selftest): no GPU and no NCCL; times are "
			     "synthetic; data and checks are real up to 4M, not checked above\n");
	else if (!rep->mps_on)
		fprintf(out,
			"# WARNING: MPS is not running: the %d ranks are time-sliced on the GPU "
			"and times are pessimistic (--mps starts it)\n",
			cfg->nranks);
	fflush(out);
}

static void table_header(struct bench_report *rep, struct bench_run *r, int op, FILE *out)
{
	const struct bench_cfg *cfg = rep->cfg;
	char label[PATH_MAX + 32];
	transport_label(rep, r->transport, label, sizeof(label));
	fprintf(out, "\n# rcmoe-bench: %s, %d ranks on 1 GPU (%s), transport=%s%s%s\n",
		bench_op_name(op), cfg->nranks, mps_label(rep), label,
		bench_link_label(cfg) ? ", " : "",
		bench_link_label(cfg) ? bench_link_label(cfg) : "");
	fprintf(out, "# run %d/%d", r->run + 1, cfg->runs);
	if (r->nccl_version)
		fprintf(out, ", NCCL %d.%d.%d", r->nccl_version / 10000,
			r->nccl_version / 100 % 100, r->nccl_version % 100);
	if (op == BENCH_ALLTOALL)
		fprintf(out, ", %s", r->a2a_native ? "ncclAlltoAll" : "grouped ncclSend/ncclRecv");
	if (op == BENCH_ALLREDUCE)
		fprintf(out, ", sum");
	if (op == BENCH_SENDRECV)
		fprintf(out, ", ring r -> r+1");
	if (op == BENCH_ALLREDUCE && r->transport == BENCH_COLLNET)
		fprintf(out, ", collNet %s", r->cn_label);
	fprintf(out, "\n");
	const char *algo = op == BENCH_ALLREDUCE && r->nccl_log[0] ? "  algo/proto (NCCL)" : "";
	fprintf(out, "#                                                   out-of-place\n");
	if (cfg->check == BENCH_CHECK_ERROR) {
		fprintf(out,
			"#       size         count      type      time    algbw    busbw"
			"     relL2    maxabs%s\n",
			algo);
		fprintf(out, "#        (B)    (elements)                (us)   (GB/s)   (GB/s)\n");
	} else {
		fprintf(out,
			"#       size         count      type      time    algbw    busbw"
			"  #wrong%s\n",
			algo);
		fprintf(out, "#        (B)    (elements)                (us)   (GB/s)   (GB/s)\n");
	}
}

static double rel_l2(const struct bench_check_res *c)
{
	if (c->ref_sq > 0)
		return sqrt(c->err_sq / c->ref_sq);
	return c->err_sq > 0 || isnan(c->err_sq) ? INFINITY : 0;
}

void bench_report_row(struct bench_report *rep, struct bench_run *r, int opi, int si, FILE *out)
{
	const struct bench_cfg *cfg = rep->cfg;
	const struct bench_result *res = &r->res[opi][si];
	if (rep->cur_op != opi) {
		table_header(rep, r, cfg->ops[opi], out);
		rep->cur_op = opi;
	}
	fprintf(out, "%12zu%14zu%10s", res->bytes, res->count, cfg->dt->name);
	rcmoe_print_float(out, res->time_us, 10, 7);
	rcmoe_print_float(out, res->algbw, 9, 6);
	rcmoe_print_float(out, res->busbw, 9, 6);
	if (cfg->check == BENCH_CHECK_ERROR)
		fprintf(out, "%10.3e%10.3e", rel_l2(&res->chk), res->chk.maxabs);
	else if (cfg->check == BENCH_CHECK_NONE)
		fprintf(out, "%8s", "N/A");
	else
		fprintf(out, "%8llu", (unsigned long long)res->chk.wrong);
	if (cfg->ops[opi] == BENCH_ALLREDUCE && r->nccl_log[0])
		fprintf(out, "  %s", r->algo[opi][si][0] ? r->algo[opi][si] : "?");
	fprintf(out, "\n");
	fflush(out);
}

void bench_report_run_end(struct bench_report *rep, struct bench_run *r, FILE *out)
{
	if (r->failed)
		fprintf(out, "# %s run %d/%d FAILED: %s\n", bench_transport_name(r->transport),
			r->run + 1, rep->cfg->runs, r->error);
	rep->cur_op = -1; /* the next run starts its own tables */
	fflush(out);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median busbw of (op, size) over the runs that produced it; NAN if none did. A collNet run
 * whose counters show it was not carried as asked does not count. */
static double median_busbw(const struct bench_report *rep, int t, int opi, int si, int *nvalid)
{
	double v[1024];
	int n = 0;
	for (int run = 0; run < rep->nruns && n < 1024; run++) {
		const struct bench_run *r = &rep->runs[run * BENCH_NUM_TRANSPORTS + t];
		if (r->res[opi][si].valid && !(r->cn_checked && !r->cn_ok))
			v[n++] = r->res[opi][si].busbw;
	}
	*nvalid = n;
	if (!n)
		return NAN;
	qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static bool any_valid(const struct bench_report *rep, int opi, int si)
{
	for (int i = 0; i < rep->nruns * BENCH_NUM_TRANSPORTS; i++)
		if (rep->runs[i].res[opi][si].valid)
			return true;
	return false;
}

/* The columns of the ratio table: each transport on, then each ratio that has both sides. */
static const struct {
	int num, den;
	const char *head;
} ratio_cols[] = {
	{ BENCH_RCMOE, BENCH_SOCKET, "RCMoE/Sock" },
	{ BENCH_COLLNET, BENCH_SOCKET, "cNet/Sock" },
	{ BENCH_COLLNET, BENCH_RCMOE, "cNet/RCMoE" },
};
#define NRATIO_COLS ((int)(sizeof(ratio_cols) / sizeof(ratio_cols[0])))

/* The NCCL algorithm of the last collNet run that logged one for (op, size). */
static const char *collnet_algo(const struct bench_report *rep, int opi, int si)
{
	for (int run = rep->nruns - 1; run >= 0; run--) {
		const struct bench_run *r = &rep->runs[run * BENCH_NUM_TRANSPORTS + BENCH_COLLNET];
		if (r->attempted && r->algo[opi][si][0])
			return r->algo[opi][si];
	}
	return NULL;
}

void bench_report_ratios(struct bench_report *rep, FILE *out)
{
	const struct bench_cfg *cfg = rep->cfg;
	int on = 0;
	for (int t = 0; t < BENCH_NUM_TRANSPORTS; t++)
		on += cfg->transport_on[t];
	if (on < 2)
		return;
	static const char *const short_name[] = { "Socket", "RCMoE", "collNet" };
	for (int o = 0; o < cfg->nops; o++) {
		bool ar = cfg->ops[o] == BENCH_ALLREDUCE && cfg->transport_on[BENCH_COLLNET];
		fprintf(out, "\n# ratio: %s %s, %d ranks, busbw median over %d run%s%s%s\n",
			bench_op_name(cfg->ops[o]), cfg->dt->name, cfg->nranks, cfg->runs,
			cfg->runs == 1 ? "" : "s", bench_link_label(cfg) ? ", " : "",
			bench_link_label(cfg) ? bench_link_label(cfg) : "");
		if (cfg->transport_on[BENCH_COLLNET])
			fprintf(out, "#   collNet = RCMoE-collNet: all-reduce %s%s\n",
				collnet_label(cfg),
				cfg->ops[o] == BENCH_ALLREDUCE
					? ""
					: " (this op does not use the collective side)");
		fprintf(out, "#       size");
		for (int t = 0; t < BENCH_NUM_TRANSPORTS; t++)
			if (cfg->transport_on[t])
				fprintf(out, "%10s", short_name[t]);
		for (int c = 0; c < NRATIO_COLS; c++)
			if (cfg->transport_on[ratio_cols[c].num] &&
			    cfg->transport_on[ratio_cols[c].den])
				fprintf(out, "%11s", ratio_cols[c].head);
		fprintf(out, "%s\n#        (B)", ar ? "  collNet algo/proto (NCCL)" : "");
		for (int t = 0; t < BENCH_NUM_TRANSPORTS; t++)
			if (cfg->transport_on[t])
				fprintf(out, "%10s", "(GB/s)");
		fprintf(out, "\n");
		for (int s = 0; s < cfg->nsizes; s++) {
			size_t count, pp;
			size_t bytes = bench_op_shape(cfg, cfg->ops[o], cfg->sizes[s], &count, &pp);
			if (!bytes || !any_valid(rep, o, s))
				continue;
			double bw[BENCH_NUM_TRANSPORTS];
			fprintf(out, "%12zu", bytes);
			for (int t = 0; t < BENCH_NUM_TRANSPORTS; t++) {
				int nv;
				bw[t] = median_busbw(rep, t, o, s, &nv);
				if (cfg->transport_on[t])
					rcmoe_print_float(out, bw[t], 10, 7);
			}
			for (int c = 0; c < NRATIO_COLS; c++) {
				int a = ratio_cols[c].num, b = ratio_cols[c].den;
				if (cfg->transport_on[a] && cfg->transport_on[b])
					rcmoe_print_float(out, bw[b] > 0 ? bw[a] / bw[b] : NAN, 11,
							  7);
			}
			const char *algo = ar ? collnet_algo(rep, o, s) : NULL;
			if (algo)
				fprintf(out, "  %s", algo);
			fprintf(out, "\n");
		}
	}
	fflush(out);
}

void bench_report_footer(struct bench_report *rep, FILE *out)
{
	const struct bench_cfg *cfg = rep->cfg;
	fprintf(out, "\n");
	if (rep->failures)
		fprintf(out, "# %d transport run%s FAILED (see above)\n", rep->failures,
			rep->failures == 1 ? "" : "s");
	const char *note = cfg->check == BENCH_CHECK_ERROR  ? " (error mode: see relL2, maxabs)"
			   : cfg->check == BENCH_CHECK_NONE ? " (not checked)"
							    : "";
	fprintf(out, "# Out of bounds values : %llu %s%s\n", (unsigned long long)rep->wrong_total,
		rep->wrong_total ? "FAILED" : "OK", note);
	fflush(out);
}

/* ---- JSON ---- */

void bench_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void bench_json_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.9g", v);
	else
		fputs("null", f); /* JSON has no NaN or infinity */
}

static void json_str_or_null(FILE *f, const char *s)
{
	if (s)
		bench_json_str(f, s);
	else
		fputs("null", f);
}

static void json_strlist(FILE *f, const char *const *v, int n)
{
	fputc('[', f);
	for (int i = 0; i < n; i++) {
		if (i)
			fputs(", ", f);
		bench_json_str(f, v[i]);
	}
	fputc(']', f);
}

static void json_write(struct bench_report *rep, FILE *f)
{
	const struct bench_cfg *cfg = rep->cfg;
	fprintf(f, "{\n  \"tool\": \"rcmoe-bench\",\n  \"version\": \"%s\",\n", BENCH_VERSION);
	fprintf(f, "  \"time\": %lld,\n", (long long)time(NULL));
	fprintf(f, "  \"config\": {\n    \"nranks\": %d,\n    \"device\": %d,\n", cfg->nranks,
		cfg->device);
	fprintf(f, "    \"ops\": [");
	for (int o = 0; o < cfg->nops; o++)
		fprintf(f, "%s\"%s\"", o ? ", " : "", bench_op_name(cfg->ops[o]));
	fprintf(f, "],\n    \"transports\": [");
	bool first = true;
	for (int t = 0; t < BENCH_NUM_TRANSPORTS; t++)
		if (cfg->transport_on[t]) {
			fprintf(f, "%s\"%s\"", first ? "" : ", ", bench_transport_name(t));
			first = false;
		}
	fprintf(f, "],\n    \"datatype\": \"%s\",\n    \"sizes\": [", cfg->dt->name);
	for (int s = 0; s < cfg->nsizes; s++)
		fprintf(f, "%s%zu", s ? ", " : "", cfg->sizes[s]);
	fprintf(f, "],\n    \"iters\": %d,\n    \"warmup\": %d,\n    \"runs\": %d,\n", cfg->iters,
		cfg->warmup, cfg->runs);
	fprintf(f, "    \"check\": \"%s\",\n",
		cfg->check == BENCH_CHECK_EXACT   ? "exact"
		: cfg->check == BENCH_CHECK_ERROR ? "error"
						  : "none");
	fprintf(f, "    \"a2a\": \"%s\",\n",
		cfg->a2a == BENCH_A2A_AUTO     ? "auto"
		: cfg->a2a == BENCH_A2A_NATIVE ? "native"
					       : "p2p");
	fprintf(f, "    \"in_place\": false,\n    \"seed\": %llu,\n",
		(unsigned long long)cfg->seed);
	fprintf(f, "    \"plugin\": ");
	bench_json_str(f, cfg->transport_on[BENCH_RCMOE] || cfg->transport_on[BENCH_COLLNET]
				  ? cfg->plugin
				  : NULL);
	fprintf(f, ",\n    \"gdr_level\": ");
	/* what the rcmoe run got: the option, else the inherited value, else SYS */
	const char *gdr = cfg->gdr_level ? cfg->gdr_level : getenv("NCCL_NET_GDR_LEVEL");
	bench_json_str(f, gdr ? gdr : "SYS");
	fprintf(f, ",\n    \"proto\": ");
	if (cfg->proto)
		bench_json_str(f, cfg->proto);
	else
		fputs("null", f);
	fprintf(f, ",\n    \"env\": ");
	json_strlist(f, cfg->env, cfg->nenv);
	fprintf(f, ",\n    \"rcmoe_env\": ");
	json_strlist(f, cfg->rcmoe_env, cfg->nrcmoe_env);
	fprintf(f, ",\n    \"link_gbps\": ");
	bench_json_num(f, cfg->link_gbps > 0 ? cfg->link_gbps : NAN); /* null: no emulated link */
	fprintf(f, ",\n    \"link\": ");
	json_str_or_null(f, bench_link_label(cfg));
	fprintf(f, ",\n    \"shaper\": ");
	json_str_or_null(f, cfg->link_gbps > 0 ? cfg->shaper : NULL);
	fprintf(f, ",\n    \"collnet\": ");
	if (cfg->transport_on[BENCH_COLLNET]) {
		fprintf(f, "{\"allreduce\": ");
		bench_json_str(f, collnet_label(cfg));
		fprintf(f, ", \"ar_density\": ");
		bench_json_num(f, cfg->ar_density_arg ? cfg->ar_density : NAN);
		fprintf(f, ", \"ar_bits\": ");
		bench_json_num(f, cfg->ar_bits_arg ? cfg->ar_bits : NAN);
		fprintf(f, ", \"force_collnet\": %s}", cfg->force_collnet ? "true" : "false");
	} else {
		fputs("null", f);
	}
	fprintf(f, ",\n    \"mps\": %s,\n    \"simulated\": %s\n  },\n",
		rep->mps_on ? "true" : "false", cfg->fake ? "true" : "false");

	fprintf(f, "  \"runs\": [");
	first = true;
	for (int run = 0; run < rep->nruns; run++)
		for (int t = 0; t < BENCH_NUM_TRANSPORTS; t++) {
			const struct bench_run *r = &rep->runs[run * BENCH_NUM_TRANSPORTS + t];
			if (!r->attempted)
				continue;
			fprintf(f, "%s\n    {\"run\": %d, \"transport\": \"%s\", \"ok\": %s",
				first ? "" : ",", run + 1, bench_transport_name(t),
				r->failed ? "false" : "true");
			first = false;
			if (r->failed) {
				fprintf(f, ", \"error\": ");
				bench_json_str(f, r->error);
			}
			fprintf(f, ", \"nccl_version\": %d, \"a2a_native\": %s", r->nccl_version,
				r->a2a_native ? "true" : "false");
			if (r->cn_enabled) {
				fprintf(f, ", \"collnet\": {\"asked\": ");
				bench_json_str(f, r->cn_label);
				fprintf(f, ", \"counters_checked\": %s, \"counters_ok\": %s",
					r->cn_checked ? "true" : "false",
					r->cn_ok ? "true" : "false");
				for (int m = 0; m < BENCH_CN_NMODES; m++)
					fprintf(f,
						", \"%s\": {\"calls\": %llu, \"logical_bytes\": "
						"%llu, \"wire_bytes\": %llu}",
						bench_cn_mode_name(m),
						(unsigned long long)r->cn.messages[m],
						(unsigned long long)r->cn.logical[m],
						(unsigned long long)r->cn.wire[m]);
				fprintf(f, ", \"rows_without_collnet\": %d}", r->rows_not_collnet);
			}
			fprintf(f, ", \"results\": [");
			bool firstrow = true;
			for (int o = 0; o < cfg->nops; o++)
				for (int s = 0; s < cfg->nsizes; s++) {
					const struct bench_result *x = &r->res[o][s];
					if (!x->valid)
						continue;
					fprintf(f,
						"%s\n      {\"op\": \"%s\", \"size\": %zu, "
						"\"count\": %zu, \"time_us\": ",
						firstrow ? "" : ",", bench_op_name(cfg->ops[o]),
						x->bytes, x->count);
					firstrow = false;
					bench_json_num(f, x->time_us);
					fprintf(f, ", \"algbw\": ");
					bench_json_num(f, x->algbw);
					fprintf(f, ", \"busbw\": ");
					bench_json_num(f, x->busbw);
					if (cfg->check == BENCH_CHECK_EXACT)
						fprintf(f, ", \"wrong\": %llu",
							(unsigned long long)x->chk.wrong);
					if (cfg->check == BENCH_CHECK_ERROR) {
						fprintf(f, ", \"rel_l2\": ");
						bench_json_num(f, rel_l2(&x->chk));
						fprintf(f, ", \"max_abs\": ");
						bench_json_num(f, x->chk.maxabs);
					}
					if (r->algo[o][s][0]) {
						fprintf(f, ", \"algo\": ");
						bench_json_str(f, r->algo[o][s]);
					}
					fprintf(f, ", \"checked\": %llu, \"rank_time_us\": [",
						(unsigned long long)x->chk.checked);
					for (int k = 0; k < cfg->nranks; k++) {
						if (k)
							fputs(", ", f);
						bench_json_num(f, x->rank_time_us[k]);
					}
					fprintf(f, "]}");
				}
			fprintf(f, "%s]}", firstrow ? "" : "\n    ");
		}
	fprintf(f, "\n  ],\n  \"ratios\": [");
	first = true;
	int on = 0;
	for (int t = 0; t < BENCH_NUM_TRANSPORTS; t++)
		on += cfg->transport_on[t];
	if (on >= 2)
		for (int o = 0; o < cfg->nops; o++)
			for (int s = 0; s < cfg->nsizes; s++) {
				size_t count, pp;
				size_t bytes = bench_op_shape(cfg, cfg->ops[o], cfg->sizes[s],
							      &count, &pp);
				if (!bytes || !any_valid(rep, o, s))
					continue;
				int n0, n1, n2;
				double a = median_busbw(rep, BENCH_SOCKET, o, s, &n0);
				double b = median_busbw(rep, BENCH_RCMOE, o, s, &n1);
				double c = median_busbw(rep, BENCH_COLLNET, o, s, &n2);
				fprintf(f,
					"%s\n    {\"op\": \"%s\", \"size\": %zu, "
					"\"socket_busbw\": ",
					first ? "" : ",", bench_op_name(cfg->ops[o]), bytes);
				first = false;
				bench_json_num(f, a);
				fprintf(f, ", \"rcmoe_busbw\": ");
				bench_json_num(f, b);
				fprintf(f, ", \"ratio\": ");
				bench_json_num(f, a > 0 ? b / a : NAN);
				if (cfg->transport_on[BENCH_COLLNET]) {
					fprintf(f, ", \"collnet_busbw\": ");
					bench_json_num(f, c);
					fprintf(f, ", \"collnet_ratio\": ");
					bench_json_num(f, a > 0 ? c / a : NAN);
					fprintf(f, ", \"collnet_vs_rcmoe\": ");
					bench_json_num(f, b > 0 ? c / b : NAN);
					fprintf(f, ", \"collnet_runs\": %d", n2);
				}
				fprintf(f,
					", \"socket_runs\": %d, \"rcmoe_runs\": %d, \"link\": ", n0,
					n1);
				json_str_or_null(f, bench_link_label(cfg));
				fputc('}', f);
			}
	fprintf(f, "%s],\n", first ? "" : "\n  ");
	fprintf(f, "  \"failed_runs\": %d,\n  \"out_of_bounds\": %llu,\n  \"ok\": %s\n}\n",
		rep->failures, (unsigned long long)rep->wrong_total,
		rep->failures || rep->wrong_total ? "false" : "true");
}

int bench_report_json(struct bench_report *rep, const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "rcmoe-bench: --json %s: %s\n", path, strerror(errno));
		return -1;
	}
	json_write(rep, f);
	if (fclose(f)) {
		fprintf(stderr, "rcmoe-bench: --json %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- plot: a python3 script beside the binary (meson copies it there) ---- */

static int find_plot_script(const struct bench_cfg *cfg, char *out, size_t len)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", cfg->exe);
	char *d = dirname(dir);
	snprintf(out, len, "%s/rcmoe-bench-plot.py", d); /* installed side by side */
	if (access(out, R_OK) == 0)
		return 0;
#ifdef RCMOE_BENCH_PLOT_SCRIPT
	snprintf(out, len, "%s", RCMOE_BENCH_PLOT_SCRIPT); /* the source tree it was built from */
	if (access(out, R_OK) == 0)
		return 0;
#endif
	/* a source tree copied elsewhere with its build dir: <src>/<build>/tools/bench/ */
	snprintf(out, len, "%s/../../../tools/bench/rcmoe-bench-plot.py", d);
	return access(out, R_OK) == 0 ? 0 : -1;
}

int bench_plot(struct bench_report *rep, const char *png)
{
	char script[PATH_MAX], tmp[] = "/tmp/rcmoe-bench-XXXXXX.json";
	const char *json = rep->cfg->json;
	if (find_plot_script(rep->cfg, script, sizeof(script))) {
		fprintf(stderr, "rcmoe-bench: --plot: rcmoe-bench-plot.py not found beside %s\n",
			rep->cfg->exe);
		return -1;
	}
	if (!json) {
		int fd = mkstemps(tmp, 5);
		if (fd < 0)
			return -1;
		close(fd);
		if (bench_report_json(rep, tmp)) {
			unlink(tmp);
			return -1;
		}
		json = tmp;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(STDERR_FILENO, STDOUT_FILENO);
		signal(SIGPIPE, SIG_DFL);
		execlp("python3", "python3", script, json, png, (char *)NULL);
		_exit(127);
	}
	int st = 0;
	bool reaped = false;
	if (pid > 0) {
		/* Bounded: a plot is never worth a hang. */
		for (int i = 0; i < 1200 && !reaped; i++) {
			reaped = waitpid(pid, &st, WNOHANG) == pid;
			if (!reaped)
				usleep(100000);
		}
		if (!reaped) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
		}
	}
	if (json == tmp)
		unlink(tmp);
	if (reaped && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		printf("# plot: %s\n", png);
		return 0;
	}
	fprintf(stderr, "rcmoe-bench: --plot: no plot written (python3 with matplotlib needed)\n");
	return -1;
}
