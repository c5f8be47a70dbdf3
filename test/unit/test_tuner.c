/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tuner, driven through the exported ncclTunerPlugin_v5 table (linked statically) with cost
 * tables shaped as NCCL 2.28 fills them: [7 algorithms][3 protocols], -1 (NCCL_ALGO_PROTO_IGNORE)
 * for what NCCL ruled out. Compression off or anything but an all-reduce: not one byte changes.
 * Compressed all-reduces: CollNetChain/Simple strictly cheapest when NCCL offers it; smaller
 * ones off collNet unless nothing else is left; a ruled-out entry never comes back.
 * Also: the per-call mode of the collective side agrees with the tuner (ar_policy.h), and the
 * plugin's NCCL_COLLNET_ENABLE handling at net init.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/log.h"
#include "coll/ar_policy.h"
#include "test_log.h"

extern const ncclTuner_v5_t ncclTunerPlugin_v5;
extern const ncclNet_v11_t ncclNetPlugin_v11;

#define NA  NCCL_NUM_ALGORITHMS
#define NP  NCCL_NUM_PROTOCOLS
#define IGN ((float)NCCL_ALGO_PROTO_IGNORE)
#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

static void clear_env(void)
{
	static const char *vars[] = { "RCMOE_AR_DENSITY", "RCMOE_AR_BITS", "RCMOE_AR_CODEC",
				      "RCMOE_AR_MIN_BYTES", "NCCL_COLLNET_ENABLE" };
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	setenv("RCMOE_SOCKET_IFNAME", "lo", 1);
	test_log_init();
}

TestSuite(tuner, .init = clear_env);

/* A 2-node table with collNet usable: Tree and Ring on all protocols, CollNetChain on Simple
 * only (NCCL's collNet is Simple-only), CollNetDirect and NVLS ruled out (no NVSwitch). */
static void table_collnet(float t[NA][NP])
{
	static const float v[NA][NP] = {
		{ 30.5f, 22.0f, 41.0f },  /* Tree */
		{ 28.0f, 19.5f, 12.25f }, /* Ring */
		{ IGN, IGN, IGN },        /* CollNetDirect */
		{ IGN, IGN, 55.0f },      /* CollNetChain */
		{ IGN, IGN, IGN },        /* NVLS */
		{ IGN, IGN, IGN },        /* NVLS_TREE */
		{ IGN, IGN, 90.0f },      /* PAT */
	};
	memcpy(t, v, sizeof(v));
}

/* The same communicator for a collective NCCL keeps off collNet (collNet disabled, or an integer
 * all-reduce the collective side's reduceSupport declined): the collNet rows are all IGNORE. */
static void table_no_collnet(float t[NA][NP])
{
	table_collnet(t);
	t[NCCL_ALGO_COLLNET_CHAIN][NCCL_PROTO_SIMPLE] = IGN;
}

static void *tuner_open(void)
{
	void *ctx = NULL;
	ncclNvlDomainInfo_v5_t nvl = { 2, 1, 1 };
	ncclTunerConstants_v5_t constants;
	memset(&constants, 0x5a, sizeof(constants));
	ncclTunerConstants_v5_t before = constants;
	cr_assert_eq(ncclTunerPlugin_v5.init(&ctx, 0x77, 4, 2, rcmoe_log_get(), &nvl, &constants),
		     ncclSuccess);
	cr_assert_not_null(ctx);
	cr_expect_eq(memcmp(&before, &constants, sizeof(constants)), 0, "constants changed");
	return ctx;
}

static void tuner_close(void *ctx)
{
	cr_expect_eq(ncclTunerPlugin_v5.finalize(ctx), ncclSuccess);
}

/* getCollInfo as NCCL 2.28.9 calls it (enqueue.cc:1942-1945): nChannels starts at 0. */
static void coll_info(void *ctx, int func, size_t nbytes, float t[NA][NP])
{
	int nchannels = 0;
	cr_assert_eq(ncclTunerPlugin_v5.getCollInfo(ctx, func, nbytes, 1, (float **)t, NA, NP, 0,
						    &nchannels),
		     ncclSuccess, "getCollInfo(func %d, %zu bytes)", func, nbytes);
	cr_expect_eq(nchannels, 0, "nChannels set to %d", nchannels);
}

/* What NCCL would pick (enqueue.cc:1831-1840): the first cheapest entry that is not negative. */
static void pick(float t[NA][NP], int *algo, int *proto)
{
	float best = 3600000000.0f;
	*algo = *proto = -1;
	for (int a = 0; a < NA; a++)
		for (int p = 0; p < NP; p++)
			if (t[a][p] != IGN && t[a][p] >= 0.0f && t[a][p] < best) {
				best = t[a][p];
				*algo = a;
				*proto = p;
			}
}

static int is_collnet(int a)
{
	return a == NCCL_ALGO_COLLNET_DIRECT || a == NCCL_ALGO_COLLNET_CHAIN;
}

static const size_t sizes[] = { 0,        1,   4 * KiB,   64 * KiB - 1,
				64 * KiB, MiB, 256 * MiB, (size_t)1 << 40 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* NCCL 2.28.9 nccl_tuner.h:41, the one ABI constant abi_checks.c cannot assert at compile time;
 * NCCL compares its float table entries with it (enqueue.cc:1833). */
Test(tuner, ignore_is_minus_one)
{
	cr_expect(NCCL_ALGO_PROTO_IGNORE == -1.0);
	cr_expect(IGN == -1.0f);
}

/* ---- compression off: nothing changes ---- */

static void expect_untouched(void *ctx, int func, size_t nbytes, void (*fill)(float[NA][NP]))
{
	float t[NA][NP], before[NA][NP];
	fill(t);
	memcpy(before, t, sizeof(t));
	coll_info(ctx, func, nbytes, t);
	cr_expect_eq(memcmp(before, t, sizeof(t)), 0, "func %d, %zu bytes: cost table changed",
		     func, nbytes);
}

Test(tuner, compression_off_changes_nothing)
{
	void *ctx = tuner_open();
	for (int func = ncclFuncBroadcast; func <= ncclFuncGather; func++)
		for (size_t i = 0; i < NSIZES; i++) {
			expect_untouched(ctx, func, sizes[i], table_collnet);
			expect_untouched(ctx, func, sizes[i], table_no_collnet);
		}
	tuner_close(ctx);
}

/* RCMOE_AR_MIN_BYTES alone (no codec) steers nothing either. */
Test(tuner, min_bytes_without_a_codec_changes_nothing)
{
	setenv("RCMOE_AR_MIN_BYTES", "0", 1);
	void *ctx = tuner_open();
	for (size_t i = 0; i < NSIZES; i++)
		expect_untouched(ctx, ncclFuncAllReduce, sizes[i], table_collnet);
	tuner_close(ctx);
}

/* ---- compression on ---- */

Test(tuner, other_functions_untouched_with_pts)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	void *ctx = tuner_open();
	static const int funcs[] = { ncclFuncBroadcast,
				     ncclFuncReduce,
				     ncclFuncAllGather,
				     ncclFuncReduceScatter,
				     ncclFuncSendRecv,
				     ncclFuncSend,
				     ncclFuncRecv,
				     ncclFuncAlltoAll,
				     ncclFuncScatter,
				     ncclFuncGather,
				     11,
				     99,
				     -1 };
	for (size_t f = 0; f < sizeof(funcs) / sizeof(funcs[0]); f++)
		for (size_t i = 0; i < NSIZES; i++) {
			expect_untouched(ctx, funcs[f], sizes[i], table_collnet);
			expect_untouched(ctx, funcs[f], sizes[i], table_no_collnet);
		}
	tuner_close(ctx);
}

static void expect_steered(void *ctx, size_t nbytes)
{
	float t[NA][NP], before[NA][NP];
	table_collnet(t);
	memcpy(before, t, sizeof(t));
	coll_info(ctx, ncclFuncAllReduce, nbytes, t);
	float chain = t[NCCL_ALGO_COLLNET_CHAIN][NCCL_PROTO_SIMPLE];
	cr_expect_geq(chain, 0.0f, "%zu bytes: CollNetChain/Simple made unusable (%g)", nbytes,
		      chain);
	for (int a = 0; a < NA; a++)
		for (int p = 0; p < NP; p++) {
			if (a == NCCL_ALGO_COLLNET_CHAIN && p == NCCL_PROTO_SIMPLE)
				continue;
			if (before[a][p] < 0.0f)
				cr_expect_eq(t[a][p], before[a][p],
					     "%zu bytes: ruled-out entry [%d][%d] now %g", nbytes,
					     a, p, t[a][p]);
			else
				cr_expect_gt(t[a][p], chain,
					     "%zu bytes: [%d][%d] costs %g, not above CollNetChain "
					     "%g",
					     nbytes, a, p, t[a][p], chain);
		}
	int algo, proto;
	pick(t, &algo, &proto);
	cr_expect(algo == NCCL_ALGO_COLLNET_CHAIN && proto == NCCL_PROTO_SIMPLE,
		  "%zu bytes: NCCL would pick [%d][%d]", nbytes, algo, proto);
}

static void expect_kept_off(void *ctx, size_t nbytes)
{
	float t[NA][NP], before[NA][NP];
	table_collnet(t);
	memcpy(before, t, sizeof(t));
	coll_info(ctx, ncclFuncAllReduce, nbytes, t);
	for (int a = 0; a < NA; a++)
		for (int p = 0; p < NP; p++)
			if (is_collnet(a))
				cr_expect_eq(t[a][p], IGN, "%zu bytes: collNet [%d][%d] = %g",
					     nbytes, a, p, t[a][p]);
			else
				cr_expect_eq(t[a][p], before[a][p], "%zu bytes: [%d][%d] changed",
					     nbytes, a, p);
	int algo, proto;
	pick(t, &algo, &proto);
	cr_expect(algo == NCCL_ALGO_RING && proto == NCCL_PROTO_SIMPLE,
		  "%zu bytes: NCCL would pick [%d][%d], not its own Ring/Simple", nbytes, algo,
		  proto);
}

Test(tuner, pts_allreduce_steered_from_min_bytes)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1); /* RCMOE_AR_MIN_BYTES: 65536 by default */
	void *ctx = tuner_open();
	expect_steered(ctx, 64 * KiB);
	expect_steered(ctx, MiB);
	expect_steered(ctx, 256 * MiB);
	expect_steered(ctx, (size_t)1 << 40);
	expect_kept_off(ctx, 64 * KiB - 1);
	expect_kept_off(ctx, 4 * KiB);
	expect_kept_off(ctx, 1);
	expect_kept_off(ctx, 0);
	tuner_close(ctx);
}

Test(tuner, lsq_and_min_bytes_setting)
{
	setenv("RCMOE_AR_BITS", "8", 1);
	setenv("RCMOE_AR_MIN_BYTES", "1M", 1);
	void *ctx = tuner_open();
	expect_steered(ctx, MiB);
	expect_kept_off(ctx, MiB - 1);
	tuner_close(ctx);
}

Test(tuner, min_bytes_zero_steers_every_allreduce)
{
	setenv("RCMOE_AR_CODEC", "pts", 1);
	setenv("RCMOE_AR_DENSITY", "0.05", 1);
	setenv("RCMOE_AR_MIN_BYTES", "0", 1);
	void *ctx = tuner_open();
	for (size_t i = 0; i < NSIZES; i++)
		expect_steered(ctx, sizes[i]);
	tuner_close(ctx);
}

/* collNet not available for this all-reduce (disabled, one node, or an integer type): the tuner
 * must not bring it back, at any size. */
Test(tuner, ignored_collnet_never_revived)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	void *ctx = tuner_open();
	for (size_t i = 0; i < NSIZES; i++)
		expect_untouched(ctx, ncclFuncAllReduce, sizes[i], table_no_collnet);
	tuner_close(ctx);
}

/* Below the threshold, with CollNetChain the only entry NCCL left: it stays (else NCCL fails the
 * collective with "no algorithm/protocol available"). */
static void table_collnet_only(float t[NA][NP])
{
	for (int a = 0; a < NA; a++)
		for (int p = 0; p < NP; p++)
			t[a][p] = IGN;
	t[NCCL_ALGO_COLLNET_CHAIN][NCCL_PROTO_SIMPLE] = 7.0f;
	t[NCCL_ALGO_COLLNET_DIRECT][NCCL_PROTO_SIMPLE] = 9.0f;
}

Test(tuner, small_allreduce_keeps_collnet_when_nothing_else_is_left)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	void *ctx = tuner_open();
	expect_untouched(ctx, ncclFuncAllReduce, 4 * KiB, table_collnet_only);
	float t[NA][NP];
	table_collnet_only(t);
	coll_info(ctx, ncclFuncAllReduce, MiB, t);
	int algo, proto;
	pick(t, &algo, &proto);
	cr_expect(algo == NCCL_ALGO_COLLNET_CHAIN && proto == NCCL_PROTO_SIMPLE);
	tuner_close(ctx);
}

/* An entry at cost 0 comes first in NCCL's scan and would win a tie with CollNetChain. */
Test(tuner, collnet_chain_wins_over_a_zero_cost_entry)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	void *ctx = tuner_open();
	float t[NA][NP];
	table_collnet(t);
	t[NCCL_ALGO_RING][NCCL_PROTO_SIMPLE] = 0.0f;
	coll_info(ctx, ncclFuncAllReduce, MiB, t);
	int algo, proto;
	pick(t, &algo, &proto);
	cr_expect(algo == NCCL_ALGO_COLLNET_CHAIN && proto == NCCL_PROTO_SIMPLE,
		  "NCCL would pick [%d][%d]", algo, proto);
	cr_expect_gt(t[NCCL_ALGO_RING][NCCL_PROTO_SIMPLE], 0.0f);
	tuner_close(ctx);
}

/* Random tables: whatever NCCL ruled out stays ruled out, nothing outside the collNet rows moves
 * (but for a zero-cost tie), and NCCL always has something left to pick. */
Test(tuner, random_tables_keep_the_invariants)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	void *ctx = tuner_open();
	unsigned seed = 12345;
	for (int iter = 0; iter < 20000; iter++) {
		float t[NA][NP], before[NA][NP];
		int usable = 0;
		for (int a = 0; a < NA; a++)
			for (int p = 0; p < NP; p++) {
				int r = rand_r(&seed) % 4;
				t[a][p] = r == 0 ? IGN : (float)(rand_r(&seed) % 1000) / 8.0f;
				usable += t[a][p] >= 0.0f;
			}
		memcpy(before, t, sizeof(t));
		size_t nbytes = (size_t)(rand_r(&seed) % (int)(256 * KiB));
		coll_info(ctx, ncclFuncAllReduce, nbytes, t);
		int left = 0;
		for (int a = 0; a < NA; a++)
			for (int p = 0; p < NP; p++) {
				left += t[a][p] >= 0.0f;
				if (before[a][p] < 0.0f)
					cr_assert_eq(t[a][p], before[a][p],
						     "iter %d: [%d][%d] revived", iter, a, p);
				else if (!is_collnet(a) && before[a][p] > 0.0f)
					cr_assert_eq(t[a][p], before[a][p],
						     "iter %d: [%d][%d] moved", iter, a, p);
			}
		cr_assert(usable == 0 || left > 0, "iter %d: nothing left for NCCL", iter);
		int algo, proto;
		pick(t, &algo, &proto);
		if (nbytes >= 64 * KiB &&
		    before[NCCL_ALGO_COLLNET_CHAIN][NCCL_PROTO_SIMPLE] >= 0.0f)
			cr_assert(algo == NCCL_ALGO_COLLNET_CHAIN && proto == NCCL_PROTO_SIMPLE,
				  "iter %d: %zu bytes, NCCL would pick [%d][%d]", iter, nbytes,
				  algo, proto);
		if (nbytes < 64 * KiB && algo >= 0 && is_collnet(algo))
			for (int a = 0; a < NA; a++)
				for (int p = 0; !is_collnet(a) && p < NP; p++)
					cr_assert(before[a][p] < 0.0f,
						  "iter %d: %zu bytes on collNet with [%d][%d] "
						  "usable",
						  iter, nbytes, a, p);
	}
	tuner_close(ctx);
}

/* ---- bad arguments ---- */

Test(tuner, bad_arguments_do_not_crash)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	void *ctx = tuner_open();
	int nch = 0;
	cr_expect_neq(ncclTunerPlugin_v5.getCollInfo(ctx, ncclFuncAllReduce, MiB, 1, NULL, NA, NP,
						     0, &nch),
		      ncclSuccess, "NULL cost table accepted");
	float t[NA][NP];
	table_collnet(t);
	cr_expect_neq(ncclTunerPlugin_v5.getCollInfo(NULL, ncclFuncAllReduce, MiB, 1, (float **)t,
						     NA, NP, 0, &nch),
		      ncclSuccess, "NULL context accepted");
	/* Tables too small for the CollNetChain row or the Simple column: left alone, one WARN. */
	static const int dims[][2] = { { 3, 3 }, { 4, 2 }, { 0, 0 }, { -1, 3 }, { 7, -5 } };
	int warns = test_log_warn_count();
	for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++) {
		float before[NA][NP];
		table_collnet(t);
		memcpy(before, t, sizeof(t));
		cr_expect_eq(
			ncclTunerPlugin_v5.getCollInfo(ctx, ncclFuncAllReduce, MiB, 1, (float **)t,
						       dims[i][0], dims[i][1], 0, &nch),
			ncclSuccess, "%d x %d table failed the collective", dims[i][0], dims[i][1]);
		cr_expect_eq(memcmp(before, t, sizeof(t)), 0, "%d x %d table changed", dims[i][0],
			     dims[i][1]);
	}
	cr_expect_eq(test_log_warn_count(), warns + 1, "expected one WARN, got %d",
		     test_log_warn_count() - warns);
	cr_expect_eq(nch, 0);
	cr_expect_neq(ncclTunerPlugin_v5.init(NULL, 1, 2, 2, rcmoe_log_get(), NULL, NULL),
		      ncclSuccess);
	cr_expect_eq(ncclTunerPlugin_v5.finalize(NULL), ncclSuccess);
	tuner_close(ctx);
}

/* A wider table than v5's (a later NCCL): rows of numProto floats, CollNetChain/Simple found at
 * [3][2] all the same, nothing written past the end. */
Test(tuner, wider_table_indexed_by_num_proto)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	void *ctx = tuner_open();
	enum { A = 8, P = 4 };
	float t[A * P + 4], before[A * P + 4];
	for (int i = 0; i < A * P + 4; i++)
		t[i] = 10.0f + (float)i;
	memcpy(before, t, sizeof(t));
	int nch = 0;
	cr_assert_eq(ncclTunerPlugin_v5.getCollInfo(ctx, ncclFuncAllReduce, MiB, 1, (float **)t, A,
						    P, 0, &nch),
		     ncclSuccess);
	for (int i = 0; i < A * P + 4; i++)
		if (i == NCCL_ALGO_COLLNET_CHAIN * P + NCCL_PROTO_SIMPLE)
			cr_expect_eq(t[i], 0.0f);
		else
			cr_expect_eq(t[i], before[i], "entry %d changed", i);
	tuner_close(ctx);
}

Test(tuner, contradicting_settings_fail_init)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	setenv("RCMOE_AR_BITS", "8", 1);
	void *ctx = (void *)0x1;
	int warns = test_log_warn_count();
	cr_expect_neq(ncclTunerPlugin_v5.init(&ctx, 1, 2, 2, rcmoe_log_get(), NULL, NULL),
		      ncclSuccess);
	cr_expect_gt(test_log_warn_count(), warns);
	cr_expect_null(ctx);
}

/* ---- threads: one context per communicator, and one context shared ---- */

struct worker {
	void *ctx;
	int bad;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 20000; i++) {
		float t[NA][NP];
		int nch = 0, algo, proto;
		table_collnet(t);
		size_t nbytes = (i % 2) ? MiB : KiB;
		if (ncclTunerPlugin_v5.getCollInfo(w->ctx, ncclFuncAllReduce, nbytes, 1,
						   (float **)t, NA, NP, 0, &nch) != ncclSuccess)
			w->bad++;
		pick(t, &algo, &proto);
		if ((algo == NCCL_ALGO_COLLNET_CHAIN) != (nbytes == MiB))
			w->bad++;
	}
	return NULL;
}

Test(tuner, concurrent_calls)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	void *shared = tuner_open(), *own[4];
	pthread_t th[8];
	struct worker w[8];
	for (int i = 0; i < 8; i++) {
		own[i % 4] = i < 4 ? tuner_open() : own[i % 4];
		w[i] = (struct worker){ .ctx = i % 2 ? shared : own[i % 4] };
		cr_assert_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		cr_expect_eq(w[i].bad, 0, "thread %d: %d wrong answers", i, w[i].bad);
	}
	for (int i = 0; i < 4; i++)
		tuner_close(own[i]);
	tuner_close(shared);
}

/* ---- the collective side agrees: every call of a steered all-reduce is coded ---- */

Test(tuner, every_call_of_a_steered_allreduce_is_coded)
{
	/* CollNetChain calls cover chunkSize bytes per channel of a group, chunkSize from 32 KiB to
	 * 256 KiB (NCCL 2.28.9 enqueue.cc:2037-2040), up to 8 channels. */
	static const uint64_t mins[] = { 0, 4096, 65536, 1 << 20, (uint64_t)1 << 30 };
	static const int dtypes[] = { ncclFloat32, ncclFloat16, ncclBfloat16 };
	for (size_t m = 0; m < sizeof(mins) / sizeof(mins[0]); m++) {
		struct rcmoe_ar_settings s = { .codec = RCMOE_AR_PTS,
					       .density = 0.01,
					       .min_bytes = mins[m] };
		cr_expect(rcmoe_ar_steer(&s, mins[m]));
		cr_expect(mins[m] == 0 || !rcmoe_ar_steer(&s, mins[m] - 1));
		for (size_t d = 0; d < 3; d++) {
			size_t esize = dtypes[d] == ncclFloat32 ? 4 : 2;
			for (size_t chunk = 32 * KiB; chunk <= 256 * KiB; chunk *= 2)
				for (size_t ch = 1; ch <= 8; ch++)
					cr_expect_eq(
						rcmoe_ar_choose(&s, dtypes[d], chunk * ch / esize),
						RCMOE_AR_PTS, "min %llu: a %zu-byte call not coded",
						(unsigned long long)mins[m], chunk * ch);
		}
	}
	/* Short calls (the tail of a registered-buffer all-reduce) are summed exactly, as are
	 * all calls with compression off. */
	struct rcmoe_ar_settings s = { .codec = RCMOE_AR_PTS, .density = 0.01, .min_bytes = 65536 };
	cr_expect_eq(rcmoe_ar_choose(&s, ncclFloat32, 1000), RCMOE_AR_LOSSLESS);
	cr_expect_eq(rcmoe_ar_choose(&s, ncclFloat32, RCMOE_AR_CALL_FLOOR / 4 - 1),
		     RCMOE_AR_LOSSLESS);
	s.min_bytes = 1000;
	cr_expect_eq(rcmoe_ar_choose(&s, ncclFloat32, 250), RCMOE_AR_PTS);
	cr_expect_eq(rcmoe_ar_choose(&s, ncclFloat32, 249), RCMOE_AR_LOSSLESS);
	s.codec = RCMOE_AR_LOSSLESS;
	cr_expect(!rcmoe_ar_steer(&s, (size_t)1 << 30));
	cr_expect_eq(rcmoe_ar_choose(&s, ncclFloat32, 1 << 20), RCMOE_AR_LOSSLESS);
}

/* ---- NCCL_COLLNET_ENABLE at the plugin's first init ---- */

static void net_init_once(void)
{
	void *ctx = NULL;
	ncclNetCommConfig_v11_t cfg = { .trafficClass = NCCL_NET_TRAFFIC_CLASS_UNDEF };
	cr_assert_eq(ncclNetPlugin_v11.init(&ctx, 0x99, &cfg, rcmoe_log_get(), NULL), ncclSuccess);
	cr_expect_eq(ncclNetPlugin_v11.finalize(ctx), ncclSuccess);
}

Test(tuner, net_init_sets_collnet_enable_when_compressing)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	int warns = test_log_warn_count();
	net_init_once();
	const char *v = getenv("NCCL_COLLNET_ENABLE");
	cr_assert_not_null(v, "NCCL_COLLNET_ENABLE not set");
	cr_expect_str_eq(v, "1");
	cr_expect_eq(test_log_warn_count(), warns + 1,
		     "expected one WARN (later communicators only), got %d",
		     test_log_warn_count() - warns);
	net_init_once(); /* a second communicator: no second WARN */
	cr_expect_eq(test_log_warn_count(), warns + 1);
}

Test(tuner, net_init_keeps_a_users_collnet_enable)
{
	setenv("RCMOE_AR_BITS", "4", 1);
	setenv("NCCL_COLLNET_ENABLE", "1", 1);
	int warns = test_log_warn_count();
	net_init_once();
	cr_expect_str_eq(getenv("NCCL_COLLNET_ENABLE"), "1");
	cr_expect_eq(test_log_warn_count(), warns);
}

Test(tuner, net_init_warns_when_collnet_is_turned_off)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	setenv("NCCL_COLLNET_ENABLE", "0", 1);
	int warns = test_log_warn_count();
	net_init_once();
	cr_expect_str_eq(getenv("NCCL_COLLNET_ENABLE"), "0");
	cr_expect_eq(test_log_warn_count(), warns + 1);
}

Test(tuner, net_init_leaves_collnet_alone_without_compression)
{
	int warns = test_log_warn_count();
	net_init_once();
	cr_expect_null(getenv("NCCL_COLLNET_ENABLE"));
	cr_expect_eq(test_log_warn_count(), warns);
}
