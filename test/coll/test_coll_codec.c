/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compressed all-reduce through the exported collNet table: PTS (RCMOE_AR_DENSITY) and the LSQ
 * two-step (RCMOE_AR_BITS). Every rank must hold the same bits; the error of each element stays
 * within the bound the codecs give (stated at each test); repeated calls on the same data
 * average out to the exact sum (unbiased: the error of the mean shrinks as 1/sqrt(calls));
 * NaN and Inf in a contribution come out as NaN and Inf. Each test sets its RCMOE_AR_* before
 * the plugin reads them (every Criterion test runs in a process of its own).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "coll_data.h"
#include "coll_mesh.h"
#include "rcmoe/log.h"
#include "test_log.h"

static void setup(void)
{
	test_log_init();
	setenv("RCMOE_SOCKET_IFNAME", "lo", 1);
	setenv("RCMOE_SOCKET_NSTREAMS", "2", 1);
	setenv("RCMOE_SOCKET_NTHREADS", "1", 1);
	setenv("RCMOE_AR_MIN_BYTES", "0", 1);
	signal(SIGPIPE, SIG_IGN);
}

TestSuite(coll_codec, .init = setup, .timeout = 600);

static const ncclDataType_t dtypes[] = { ncclFloat32, ncclBfloat16, ncclFloat16 };
static const size_t counts[] = { 1, 17, 1001, 70001, 1 << 20 };
#define NCOUNTS (sizeof(counts) / sizeof(counts[0]))

/* Relative rounding of one step in dt (half an ulp, with room). */
static double rel_eps(ncclDataType_t dt)
{
	return dt == ncclFloat32 ? 1.2e-7 : dt == ncclBfloat16 ? 7.9e-3 : 9.8e-4;
}

/* Every rank's result of call (dtype d, count c), kept for the comparison across ranks. */
static void *results[8][3][NCOUNTS];

/* Run every (dtype, count) once, half of them in place; results into `results`. */
static void codec_body(struct mesh_rank *r)
{
	for (size_t d = 0; d < 3; d++)
		for (size_t ci = 0; ci < NCOUNTS; ci++) {
			ncclDataType_t dt = dtypes[d];
			size_t n = counts[ci], es = dt_size(dt);
			int inplace = (int)((d + ci) % 2);
			struct contrib c;
			RCHECK(r,
			       contrib_make(&c, r->m->nranks, dt, n, (unsigned)(d * 10 + ci)) == 0,
			       "memory");
			char *send = malloc(n * es), *recv = malloc(n * es);
			RCHECK(r, send && recv, "memory");
			memcpy(send, c.in[r->rank], n * es);
			char *dst = inplace ? send : recv;
			void *smh, *rmh;
			if (coll_reg_pair(r, send, dst, n * es, &smh, &rmh))
				return;
			void *req = coll_post(r, send, dst, n, dt, smh, rmh);
			if (!req || coll_wait(r, req, n * es, 120.0))
				return;
			if (coll_dereg_pair(r, smh, rmh))
				return;
			results[r->rank][d][ci] = dst;
			free(inplace ? recv : send);
			contrib_free(&c);
		}
}

/* All ranks hold the same bits; each element's error against the exact sum within bound(). */
static void check_results(int nranks, double (*bound)(const struct contrib *c, size_t i),
			  int want_lossy)
{
	for (size_t d = 0; d < 3; d++)
		for (size_t ci = 0; ci < NCOUNTS; ci++) {
			ncclDataType_t dt = dtypes[d];
			size_t n = counts[ci], es = dt_size(dt), differ = 0;
			for (int r = 1; r < nranks; r++)
				cr_expect_eq(memcmp(results[0][d][ci], results[r][d][ci], n * es),
					     0, "%s n=%zu: rank %d holds other bits than rank 0",
					     dt_name(dt), n, r);
			struct contrib c;
			cr_assert_eq(contrib_make(&c, nranks, dt, n, (unsigned)(d * 10 + ci)), 0);
			double worst = 0;
			size_t at = 0;
			for (size_t i = 0; i < n; i++) {
				double exact = exact_sum(&c, i);
				double got = elem_f32(dt, results[0][d][ci], i);
				double err = fabs(got - exact), b = bound(&c, i);
				differ += fabs(got - exact) > fabs(exact) * rel_eps(dt) * nranks;
				if (!(err <= b) && !(err / b <= worst)) {
					worst = err / b;
					at = i;
				}
			}
			cr_expect_eq(worst, 0, "%s n=%zu: element %zu off by %g of its bound",
				     dt_name(dt), n, at, worst);
			if (want_lossy && n >= 70001)
				cr_expect_gt(differ, 0,
					     "%s n=%zu: exact: was it compressed at all?",
					     dt_name(dt), n);
			for (int r = 0; r < nranks; r++)
				free(results[r][d][ci]);
			contrib_free(&c);
		}
}

/* ---- PTS ---- */

static double pts_density = 0.1;
static double tau_sum[3][NCOUNTS];

/* The sum over ranks of tau_r = ||g_r||_1 / (density n): a small element is dropped or sent as
 * +-tau_r, so its error is at most tau_r; large ones go exactly. Plus one rounding to dt of the
 * fp32 accumulation, and fp32's own roundings. */
static double pts_bound(const struct contrib *c, size_t i)
{
	size_t d = c->dt == ncclFloat32 ? 0 : c->dt == ncclBfloat16 ? 1 : 2, ci = 0;
	while (counts[ci] != c->n)
		ci++;
	if (tau_sum[d][ci] == 0)
		for (int r = 0; r < c->nranks; r++) {
			double l1 = 0;
			for (size_t k = 0; k < c->n; k++)
				l1 += fabs(elem_f32(c->dt, c->in[r], k));
			tau_sum[d][ci] += l1 / (pts_density * (double)c->n);
		}
	double mag = fabs(exact_sum(c, i)) + tau_sum[d][ci];
	return tau_sum[d][ci] * 1.01 + mag * (rel_eps(c->dt) + 1e-6 * c->nranks) + 1e-30;
}

Test(coll_codec, pts_identical_on_every_rank_and_bounded)
{
	setenv("RCMOE_AR_DENSITY", "0.1", 1);
	struct mesh m;
	mesh_open(&m, 11, 3, 1);
	mesh_run(&m, codec_body);
	mesh_close(&m);
	check_results(3, pts_bound, 1);
}

/* ---- LSQ two-step ---- */

static int lsq_levels = 127; /* 8 bits */

/* Element i lies in LSQ block i / 128 (shards start at multiples of the block). Each rank's
 * part is off by at most its block scale s_r = max|x_r| / L, the summed block by its own scale,
 * at most (sum of max|x_r| + sum of s_r) / L; plus the roundings to dt (one per addition, one
 * per decode). */
static double lsq_bound(const struct contrib *c, size_t i)
{
	double m = 0;
	for (int r = 0; r < c->nranks; r++)
		m += block_maxabs(c, r, i / 128, 128);
	double s = m / lsq_levels;
	double agg = (m + s) / lsq_levels;
	return (s + agg) * 1.01 + (fabs(exact_sum(c, i)) + m) * rel_eps(c->dt) * (c->nranks + 3);
}

Test(coll_codec, lsq_identical_on_every_rank_and_bounded)
{
	setenv("RCMOE_AR_BITS", "8", 1);
	struct mesh m;
	mesh_open(&m, 11, 4, 1);
	mesh_run(&m, codec_body);
	mesh_close(&m);
	check_results(4, lsq_bound, 1);
}

Test(coll_codec, lsq_2bit_identical_on_every_rank_and_bounded)
{
	setenv("RCMOE_AR_BITS", "2", 1);
	setenv("RCMOE_AR_CODEC", "lsq", 1);
	lsq_levels = 1;
	struct mesh m;
	mesh_open(&m, 11, 3, 1);
	mesh_run(&m, codec_body);
	mesh_close(&m);
	check_results(3, lsq_bound, 1);
}

/* ---- unbiased: the mean of many calls converges to the exact sum ---- */

enum { TRIALS = 64, UN = 4096 };
static float *trial_out[8];

static void trials_body(struct mesh_rank *r)
{
	struct contrib c;
	RCHECK(r, contrib_make(&c, r->m->nranks, ncclFloat32, UN, 4242) == 0, "memory");
	float *out = malloc((size_t)TRIALS * UN * sizeof(float));
	void *smh, *rmh;
	RCHECK(r, out != NULL, "memory");
	if (coll_reg_user(r, c.in[r->rank], UN * 4, &smh) ||
	    coll_reg_user(r, out, (size_t)TRIALS * UN * 4, &rmh))
		return;
	/* The same contribution every call: only the random draws differ (each call has its own
	 * operation id in the RNG's input). */
	for (int t = 0; t < TRIALS; t++) {
		void *req = coll_post(r, c.in[r->rank], out + (size_t)t * UN, UN, ncclFloat32, smh,
				      rmh);
		if (!req || coll_wait(r, req, UN * 4, 60.0))
			return;
	}
	if (coll_dereg_pair(r, smh, rmh))
		return;
	trial_out[r->rank] = out;
	contrib_free(&c);
}

/* RMS over elements of (mean of the first k trials - exact), and the mean signed error. */
static double rms_of_mean(const struct contrib *c, int k, double *bias)
{
	double s2 = 0, s1 = 0;
	for (size_t i = 0; i < UN; i++) {
		double mean = 0;
		for (int t = 0; t < k; t++)
			mean += trial_out[0][(size_t)t * UN + i];
		mean /= k;
		double e = mean - exact_sum(c, i);
		s2 += e * e;
		s1 += e;
	}
	if (bias)
		*bias = s1 / UN;
	return sqrt(s2 / UN);
}

static void check_unbiased(int nranks)
{
	struct contrib c;
	cr_assert_eq(contrib_make(&c, nranks, ncclFloat32, UN, 4242), 0);
	for (int r = 1; r < nranks; r++)
		cr_expect_eq(memcmp(trial_out[0], trial_out[r], (size_t)TRIALS * UN * 4), 0,
			     "rank %d differs from rank 0", r);
	double e1 = rms_of_mean(&c, 1, NULL), bias;
	double e16 = rms_of_mean(&c, 16, NULL), e64 = rms_of_mean(&c, TRIALS, &bias);
	cr_assert_gt(e1, 0, "no error at all: not compressed");
	/* Independent, unbiased errors: the RMS error of a mean of k calls is e1 / sqrt(k), the
	 * mean signed error over all elements about e1 / sqrt(k * elements). A bias, or draws
	 * repeated from call to call, leave the mean's error near e1. Tolerances: 1.5x (64 and 16
	 * calls), 6 standard errors (the bias). */
	cr_expect_lt(e16, 1.5 * e1 / 4, "mean of 16 calls: RMS error %g, one call %g", e16, e1);
	cr_expect_lt(e64, 1.5 * e1 / 8, "mean of 64 calls: RMS error %g, one call %g", e64, e1);
	cr_expect_lt(fabs(bias), 6 * e1 / sqrt((double)TRIALS * UN), "bias %g (one call's RMS %g)",
		     bias, e1);
	for (int r = 0; r < nranks; r++)
		free(trial_out[r]);
	contrib_free(&c);
}

Test(coll_codec, pts_unbiased_over_many_calls)
{
	setenv("RCMOE_AR_DENSITY", "0.05", 1);
	struct mesh m;
	mesh_open(&m, 11, 2, 1);
	mesh_run(&m, trials_body);
	mesh_close(&m);
	check_unbiased(2);
}

Test(coll_codec, lsq_unbiased_over_many_calls)
{
	setenv("RCMOE_AR_BITS", "2", 1);
	struct mesh m;
	mesh_open(&m, 11, 3, 1);
	mesh_run(&m, trials_body);
	mesh_close(&m);
	check_unbiased(3);
}

/* ---- NaN and Inf ---- */

static void nonfinite_body(struct mesh_rank *r)
{
	size_t n = 70001;
	for (size_t d = 0; d < 3; d++) {
		ncclDataType_t dt = dtypes[d];
		size_t es = dt_size(dt);
		struct contrib c;
		RCHECK(r, contrib_make(&c, r->m->nranks, dt, n, 7 + (unsigned)d) == 0, "memory");
		contrib_poison(&c, 1, 1000, NAN);
		contrib_poison(&c, 0, 5000, INFINITY);
		contrib_poison(&c, r->m->nranks - 1, 60000, -INFINITY);
		char *recv = malloc(n * es);
		void *smh, *rmh;
		RCHECK(r, recv != NULL, "memory");
		if (coll_reg_pair(r, c.in[r->rank], recv, n * es, &smh, &rmh))
			return;
		void *req = coll_post(r, c.in[r->rank], recv, n, dt, smh, rmh);
		if (!req || coll_wait(r, req, n * es, 60.0))
			return;
		if (coll_dereg_pair(r, smh, rmh))
			return;
		RCHECK(r, isnan(elem_f32(dt, recv, 1000)), "%s: NaN lost (%g)", dt_name(dt),
		       elem_f32(dt, recv, 1000));
		RCHECK(r, isinf(elem_f32(dt, recv, 5000)) && elem_f32(dt, recv, 5000) > 0,
		       "%s: +Inf lost (%g)", dt_name(dt), elem_f32(dt, recv, 5000));
		RCHECK(r, isinf(elem_f32(dt, recv, 60000)) && elem_f32(dt, recv, 60000) < 0,
		       "%s: -Inf lost (%g)", dt_name(dt), elem_f32(dt, recv, 60000));
		/* Elsewhere finite, and near the sum: within the magnitude of the block's
		 * contributions (128 elements), which a NaN, a garbage value or a lost
		 * contribution in a block without NaN or Inf would exceed. */
		size_t bad = (size_t)-1;
		for (size_t i = 0; i < n && bad == (size_t)-1; i++) {
			if (i / 128 == 1000 / 128 || i / 128 == 5000 / 128 ||
			    i / 128 == 60000 / 128)
				continue;
			double m = 0;
			for (int k = 0; k < r->m->nranks; k++)
				m += block_maxabs(&c, k, i / 128, 128);
			double got = elem_f32(dt, recv, i), exact = exact_sum(&c, i);
			if (!isfinite(got) || fabs(got - exact) > m)
				bad = i;
		}
		if (bad != (size_t)-1)
			RCHECK(r, 0, "%s: element %zu is %g, the sum %g", dt_name(dt), bad,
			       elem_f32(dt, recv, bad), exact_sum(&c, bad));
		free(recv);
		contrib_free(&c);
	}
}

Test(coll_codec, pts_nan_inf_propagate)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	struct mesh m;
	mesh_open(&m, 11, 3, 1);
	mesh_run(&m, nonfinite_body);
	mesh_close(&m);
}

Test(coll_codec, lsq_nan_inf_propagate)
{
	setenv("RCMOE_AR_BITS", "4", 1);
	struct mesh m;
	mesh_open(&m, 11, 3, 1);
	mesh_run(&m, nonfinite_body);
	mesh_close(&m);
}

/* Contradicting settings stop the plugin at init (net init, so the job fails loudly). */
Test(coll_codec, density_and_bits_together_refused)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	setenv("RCMOE_AR_BITS", "8", 1);
	extern const ncclCollNet_v11_t ncclCollNetPlugin_v11;
	void *ctx = NULL;
	int before = test_log_warn_count();
	cr_expect_neq(ncclCollNetPlugin_v11.init(&ctx, 1, rcmoe_log_get()), ncclSuccess);
	cr_expect_gt(test_log_warn_count(), before);
}

/* ---- counters ---- */

static void counters_body(struct mesh_rank *r)
{
	/* One call under RCMOE_AR_MIN_BYTES (lossless), one above it (PTS). */
	static const size_t sizes[] = { 1000, 1 << 18 };
	for (int i = 0; i < 2; i++) {
		size_t n = sizes[i];
		struct contrib c;
		RCHECK(r, contrib_make(&c, r->m->nranks, ncclFloat32, n, 5) == 0, "memory");
		float *recv = malloc(n * 4);
		void *smh, *rmh;
		RCHECK(r, recv != NULL, "memory");
		if (coll_reg_pair(r, c.in[r->rank], recv, n * 4, &smh, &rmh))
			return;
		void *req = coll_post(r, c.in[r->rank], recv, n, ncclFloat32, smh, rmh);
		if (!req || coll_wait(r, req, n * 4, 60.0) || coll_dereg_pair(r, smh, rmh))
			return;
		free(recv);
		contrib_free(&c);
	}
}

/* The finalize record of comm 0x<id>:<kind>, AllReduce fp32: 1 if found. */
static int stats_cell(const char *path, uint64_t comm, const char *kind, unsigned long *messages,
		      unsigned long *logical, unsigned long *wire)
{
	char want[160], line[1024];
	snprintf(want, sizeof(want),
		 "\"comm\":\"0x%lx:%s\",\"dir\":\"send\",\"func\":\"AllReduce\",\"dtype\":"
		 "\"ncclFloat32\"",
		 (unsigned long)comm, kind);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	int found = 0;
	while (fgets(line, sizeof(line), f)) {
		char *m = strstr(line, want) ? strstr(line, "\"messages\":") : NULL;
		if (m && strstr(line, "\"event\":\"finalize\""))
			found = sscanf(m,
				       "\"messages\":%lu,\"logical_bytes\":%lu,\"wire_bytes\":%lu",
				       messages, logical, wire) == 3;
	}
	fclose(f);
	return found;
}

Test(coll_codec, counters_per_mode_in_the_stats_file)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/rcmoe-coll-stats-%d.jsonl", (int)getpid());
	unlink(path);
	setenv("RCMOE_STATS_FILE", path, 1);
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	setenv("RCMOE_AR_MIN_BYTES", "65536", 1);
	struct mesh m;
	mesh_open(&m, 11, 2, 1);
	mesh_run(&m, counters_body);
	mesh_close(&m); /* finalize writes (and waits for) the records */
	unsigned long msg, logical, wire;
	/* rank 0's context (comm id 0x100, coll_mesh.c) */
	cr_assert(stats_cell(path, 0x100, "collnet-lossless", &msg, &logical, &wire),
		  "no lossless all-reduce record in %s", path);
	cr_expect_eq(msg, 1);
	/* 2 ranks, 1000 elements: rank 0 sends shard 1 (504 elements) and its summed shard 0 (496)
	 */
	cr_expect_eq(logical, 4000, "lossless logical bytes %lu", logical);
	cr_expect_eq(wire, logical, "lossless: wire %lu != logical %lu", wire, logical);
	cr_assert(stats_cell(path, 0x100, "collnet-PTS", &msg, &logical, &wire),
		  "no PTS all-reduce record in %s", path);
	cr_expect_eq(msg, 1);
	cr_expect_eq(logical, (1ul << 18) * 4, "PTS logical bytes %lu", logical);
	cr_expect_lt(wire * 5, logical, "PTS at 1%%: %lu wire bytes for %lu", wire, logical);
	unlink(path);
}

/* ---- lossless and compressed calls in flight together ---- */

enum { MIXED = 36 };
static float *mixed_out[8][MIXED];

static size_t mixed_n(int i)
{
	return i % 3 == 0 ? 70001 : 1000 + (size_t)i; /* PTS, else under RCMOE_AR_MIN_BYTES */
}

static void mixed_body(struct mesh_rank *r)
{
	struct contrib c[MIXED];
	void *req[MIXED], *smh[MIXED], *rmh[MIXED];
	char done[MIXED] = { 0 };
	int posted = 0, ndone = 0;
	for (int i = 0; i < MIXED; i++) {
		RCHECK(r, contrib_make(&c[i], r->m->nranks, ncclFloat32, mixed_n(i), 900 + i) == 0,
		       "memory");
		mixed_out[r->rank][i] = malloc(mixed_n(i) * 4);
		RCHECK(r, mixed_out[r->rank][i] != NULL, "memory");
		if (coll_reg_pair(r, c[i].in[r->rank], mixed_out[r->rank][i], mixed_n(i) * 4,
				  &smh[i], &rmh[i]))
			return;
	}
	double t0 = mesh_now();
	while (ndone < MIXED) {
		while (posted < MIXED) {
			void *q = NULL;
			RCHECK(r,
			       coll_iallreduce(r, c[posted].in[r->rank], mixed_out[r->rank][posted],
					       mixed_n(posted), ncclFloat32, smh[posted],
					       rmh[posted], &q) == ncclSuccess,
			       "iallreduce %d", posted);
			if (!q)
				break;
			req[posted++] = q;
		}
		for (int i = posted - 1; i >= 0; i--) {
			int d = 0, size = 0;
			if (done[i])
				continue;
			RCHECK(r, coll_test(r, req[i], &d, &size) == ncclSuccess, "test %d", i);
			if (d) {
				done[i] = 1;
				ndone++;
			}
		}
		RCHECK(r, mesh_now() - t0 < 120, "%d of %d calls done", ndone, MIXED);
	}
	for (int i = 0; i < MIXED; i++) {
		if (mixed_n(i) < 65536 / 4) {
			size_t bad = ref_compare(&c[i], mixed_out[r->rank][i], 1);
			RCHECK(r, bad == (size_t)-1, "lossless call %d: element %zu differs", i,
			       bad);
		}
		if (coll_dereg_pair(r, smh[i], rmh[i]))
			return;
		contrib_free(&c[i]);
	}
}

Test(coll_codec, lossless_and_pts_calls_in_flight_together)
{
	setenv("RCMOE_AR_DENSITY", "0.05", 1);
	setenv("RCMOE_AR_MIN_BYTES", "65536", 1);
	struct mesh m;
	mesh_open(&m, 11, 3, 1);
	mesh_run(&m, mixed_body);
	mesh_close(&m);
	for (int i = 0; i < MIXED; i++) {
		for (int r = 1; r < 3; r++)
			cr_expect_eq(memcmp(mixed_out[0][i], mixed_out[r][i], mixed_n(i) * 4), 0,
				     "call %d: rank %d differs from rank 0", i, r);
		for (int r = 0; r < 3; r++)
			free(mixed_out[r][i]);
	}
}
