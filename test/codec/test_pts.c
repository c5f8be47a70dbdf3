/* SPDX-License-Identifier: Apache-2.0 */
/* PTS, CPU reference: density, exact large elements, unbiasedness, index codings, dense and
 * zero inputs, the ordered accumulation, and both builds of the selection loop (baseline and
 * AVX2) against the per-element rule and the known answers. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/codec.h"
#include "codec_internal.h"
#include "codec_math.h"
#include "codec_test_util.h"
#include "test_log.h"

TestSuite(pts, .init = test_log_init);

struct stream {
	uint8_t *p;
	size_t len;
	struct rcmoe_wire_header h;
};

static void encode(const void *in, size_t n, const struct rcmoe_pts_cfg *cfg, struct stream *s)
{
	size_t cap = rcmoe_pts_bound(n, cfg);
	cr_assert(cap > 0);
	s->p = malloc(cap);
	cr_assert_eq(rcmoe_pts_encode(in, n, cfg, s->p, cap, &s->len), RCMOE_OK);
	cr_assert_leq(s->len, cap);
	cr_assert_eq(rcmoe_codec_validate(s->p, s->len, n * rcmoe_dtype_size(cfg->dtype), &s->h),
		     RCMOE_OK);
	cr_assert_eq(s->len, RCMOE_WIRE_HEADER_BYTES + s->h.payload_len);
}

static void decode1(const struct stream *s, int dtype, void *out, size_t n)
{
	const void *p = s->p;
	cr_assert_eq(rcmoe_pts_accumulate(&p, &s->len, 1, dtype, out, n), RCMOE_OK);
}

/* Kept counts from the directory. */
static uint64_t kept(const struct stream *s, uint64_t *large)
{
	uint64_t nc = (s->h.count + s->h.block - 1) / s->h.block, k = 0, l = 0;
	for (uint64_t c = 0; c < nc; c++) {
		uint32_t e;
		memcpy(&e, s->p + 64 + 4 * c, 4);
		k += (e & 0xffff) + (e >> 16);
		l += e >> 16;
	}
	if (large)
		*large = l;
	return k;
}

/* The GPU draws with the hash's first xor-shift folded into the key (rcmoe_rng_folded); it must
 * give rcmoe_rng_lo's value for every key and index. */
Test(pts, folded_draw_equals_rng_lo)
{
	struct tu_rng r = { 307 };
	for (int i = 0; i < 1000000; i++) {
		uint32_t hikey = (uint32_t)tu_u64(&r), lo = (uint32_t)tu_u64(&r);
		if (i < 4) /* the ends of both */
			hikey = i & 1 ? 0xffffffffu : 0u, lo = i & 2 ? 0xffffffffu : 0u;
		cr_assert_eq(rcmoe_rng_folded(rcmoe_rng_fold(hikey), lo * RCMOE_RNG_GOLDEN),
			     rcmoe_rng_lo(hikey, lo), "hikey %08x lo %08x", hikey, lo);
	}
}

/* The GPU selects with one comparison (rcmoe_pts_kept_normal_tau) where tau is normal and with
 * rcmoe_pts_kept_exact otherwise; both must keep exactly what rcmoe_pts_select keeps (small or
 * large). Random elements and taus over the whole fp32 range, draws at the ends of [0, 1), and
 * elements equal to or next to tau; the one-comparison form must fail for some subnormal tau
 * (or the exact form's extra test would be untested). The fused forms (one FMA, the GPU's)
 * must agree with the forms they replace. */
Test(pts, kept_predicates_match_select)
{
	static const uint32_t draws[] = { 0u,          1u,          0x1ffu,     0x200u,
					  0xfffffdffu, 0xfffffe00u, 0xffffffffu };
	struct tu_rng r = { 211 };
	uint64_t checked = 0, normal_form_misses = 0;
	for (int i = 0; i < 200000; i++) {
		uint32_t tb = i % 4 == 0 ? (uint32_t)(tu_u64(&r) % 0x00800000u) + 1u /* subnormal */
					 : (uint32_t)(tu_u64(&r) % 0x7f000000u) + 0x00800000u;
		float tau, g;
		memcpy(&tau, &tb, 4);
		uint32_t gb;
		switch (i % 5) {
		case 0: gb = tb; break;                   /* |g| == tau */
		case 1: gb = tb - 1u; break;              /* just below */
		case 2: gb = tb + 1u; break;              /* just above */
		case 3: gb = (uint32_t)tu_u64(&r); break; /* anything, NaN and Inf included */
		default: gb = (uint32_t)(tu_u64(&r) % (tb + 1u)); break; /* small */
		}
		gb |= (uint32_t)(tu_u64(&r) & 1u) << 31;
		memcpy(&g, &gb, 4);
		for (size_t d = 0; d < sizeof(draws) / sizeof(draws[0]) + 1; d++) {
			uint32_t rv = d < sizeof(draws) / sizeof(draws[0]) ? draws[d]
									   : (uint32_t)tu_u64(&r);
			int want = rcmoe_pts_select(g, tau, rv) != RCMOE_PTS_DROP;
			cr_assert_eq(rcmoe_pts_kept_exact(g, tau, rv), want,
				     "exact: g %a tau %a r %08x", (double)g, (double)tau, rv);
			cr_assert_eq(rcmoe_pts_kept_fused_exact(g, tau, -tau, rv), want,
				     "fused exact: g %a tau %a r %08x", (double)g, (double)tau, rv);
			int normal = rcmoe_pts_kept_normal_tau(g, tau, rv);
			cr_assert_eq(rcmoe_pts_kept_fused(g, tau, -tau, rv), normal,
				     "fused: g %a tau %a r %08x", (double)g, (double)tau, rv);
			if (tb >= 0x00800000u)
				cr_assert_eq(normal, want, "normal tau: g %a tau %a r %08x",
					     (double)g, (double)tau, rv);
			else
				normal_form_misses += normal != want;
			checked++;
		}
	}
	cr_assert_gt(normal_form_misses, 0, "a subnormal tau never needed the exact form");
	cr_log_info("%llu selections, %llu that only the exact form gets right",
		    (unsigned long long)checked, (unsigned long long)normal_form_misses);
}

Test(pts, density_expected_and_realised)
{
	const size_t n = 1 << 20;
	static const double rhos[] = { 0.001, 0.01, 0.1 };
	static const int dts[] = { RCMOE_DT_FP32, RCMOE_DT_BF16, RCMOE_DT_FP16 };
	static const enum tu_data kinds[] = { TU_GAUSS, TU_HEAVY };
	struct tu_rng r = { 21 };
	void *in = malloc(n * 4);
	for (int d = 0; d < 3; d++)
		for (int kd = 0; kd < 2; kd++) {
			tu_fill(dts[d], in, n, kinds[kd], &r);
			for (int i = 0; i < 3; i++) {
				struct rcmoe_pts_cfg cfg = { .dtype = dts[d],
							     .density = rhos[i],
							     .seed = tu_u64(&r) };
				struct stream s;
				encode(in, n, &cfg, &s);
				double tau = rcmoe_bitsf(s.h.aux), expect = 0;
				for (size_t j = 0; j < n; j++) {
					double a = fabs(tu_get(dts[d], in, j));
					expect += a >= tau ? 1.0 : a / tau;
				}
				uint64_t large, k = kept(&s, &large);
				cr_assert_leq(expect, rhos[i] * n * (1 + 1e-7),
					      "expected density above target");
				cr_assert(fabs((double)k - expect) <= 0.1 * expect,
					  "realised %lu vs expected %.1f", (unsigned long)k,
					  expect);
				cr_log_info(
					"dtype %d data %d rho %g: expected %.1f kept %lu large %lu "
					"bytes %zu (%.2f%% of raw)",
					dts[d], kinds[kd], rhos[i], expect, (unsigned long)k,
					(unsigned long)large, s.len,
					100.0 * s.len / (n * rcmoe_dtype_size(dts[d])));
				free(s.p);
			}
		}
	free(in);
}

/* Large elements come back bit-exact, small kept ones as +-tau, dropped ones as 0. */
Test(pts, large_exact_small_tau)
{
	const size_t n = 50000;
	static const int dts[] = { RCMOE_DT_FP32, RCMOE_DT_BF16, RCMOE_DT_FP16 };
	struct tu_rng r = { 22 };
	for (int d = 0; d < 3; d++) {
		void *in = malloc(n * 4), *out = malloc(n * 4);
		tu_fill(dts[d], in, n, TU_HEAVY, &r);
		struct rcmoe_pts_cfg cfg = {
			.dtype = dts[d], .density = 0.05, .seed = 5, .chunk = 4096
		};
		struct stream s;
		encode(in, n, &cfg, &s);
		decode1(&s, dts[d], out, n);
		double tau = rcmoe_bitsf(s.h.aux);
		size_t nlarge = 0;
		size_t es = rcmoe_dtype_size(dts[d]);
		for (size_t j = 0; j < n; j++) {
			double x = tu_get(dts[d], in, j), y = tu_get(dts[d], out, j);
			if (fabs(x) >= tau) {
				cr_assert(!memcmp((uint8_t *)in + j * es, (uint8_t *)out + j * es,
						  es),
					  "large element %zu not exact", j);
				nlarge++;
			} else {
				cr_assert(y == 0 || y == tau || y == -tau, "elem %zu: %g", j, y);
				if (y != 0)
					cr_assert((y > 0) == (x > 0), "sign of %zu", j);
			}
		}
		cr_assert_gt(nlarge, 0u, "heavy tails should give large elements");
		free(s.p);
		free(in);
		free(out);
	}
}

/* Mean over K seeds of the decode converges to g: |mean - g| <= 5 standard errors of the mean
 * (from the exact variance of one draw). */
Test(pts, unbiased_over_seeds)
{
	const size_t n = 2048, K = 3000;
	struct tu_rng r = { 23 };
	float *in = malloc(n * 4), *out = malloc(n * 4);
	double *sum = calloc(n, sizeof(double)), tau = 0;
	tu_fill(RCMOE_DT_FP32, in, n, TU_HEAVY, &r);
	for (size_t k = 0; k < K; k++) {
		struct rcmoe_pts_cfg cfg = {
			.dtype = RCMOE_DT_FP32, .density = 0.2, .seed = k, .chunk = 1024
		};
		struct stream s;
		encode(in, n, &cfg, &s);
		decode1(&s, RCMOE_DT_FP32, out, n);
		tau = rcmoe_bitsf(s.h.aux); /* the same for every seed */
		for (size_t i = 0; i < n; i++)
			sum[i] += out[i];
		free(s.p);
	}
	double worst = 0;
	for (size_t i = 0; i < n; i++) {
		/* one draw: sign(g) tau with probability |g|/tau (or g exactly): variance
		 * |g| tau - g^2 */
		double g = in[i], a = fabs(g), mean = sum[i] / K;
		double var = a >= tau ? 0 : a * tau - g * g, se = sqrt(var / K);
		cr_assert(fabs(mean - g) <= 5 * se + 1e-6 * tau,
			  "elem %zu: g %.9g mean %.9g se %.3g", i, g, mean, se);
		if (se > 0 && fabs(mean - g) / se > worst)
			worst = fabs(mean - g) / se;
	}
	cr_log_info("worst |mean-g| = %.2f standard errors", worst);
	free(in);
	free(out);
	free(sum);
}

/* Low density picks Elias-Fano, high density the bitmap; both decode alike. */
Test(pts, index_codings)
{
	const size_t n = 16384;
	float *in = malloc(n * 4), *out = malloc(n * 4);
	struct tu_rng r = { 24 };
	for (size_t j = 0; j < n; j++) /* one magnitude: every element kept with probability rho */
		in[j] = (tu_u64(&r) & 1) ? 0.5f : -0.5f;
	double rhos[] = { 0.002, 0.5 };
	size_t ef_len = 0;
	for (int i = 0; i < 2; i++) {
		struct rcmoe_pts_cfg cfg = { .dtype = RCMOE_DT_FP32,
					     .density = rhos[i],
					     .seed = 1 };
		struct stream s;
		encode(in, n, &cfg, &s);
		uint32_t e;
		memcpy(&e, s.p + 64, 4);
		struct rcmoe_pts_chunk L;
		rcmoe_pts_chunk_layout(e & 0xffff, e >> 16, n, 4, &L);
		cr_assert_eq(L.ef, i == 0 ? 1u : 0u, "rho %g coding", rhos[i]);
		decode1(&s, RCMOE_DT_FP32, out, n);
		uint64_t nz = 0;
		for (size_t j = 0; j < n; j++)
			nz += out[j] != 0;
		cr_assert_eq(nz, kept(&s, NULL));
		if (i == 0)
			ef_len = s.h.payload_len;
		free(s.p);
	}
	/* about 2 + log2(1/rho) bits per kept element plus a sign bit: well under a bitmap */
	cr_assert_lt(ef_len, n / 8 / 2);
	free(in);
	free(out);
}

Test(pts, zero_nan_inf_inputs)
{
	const size_t n = 5000;
	static const int dts[] = { RCMOE_DT_FP32, RCMOE_DT_BF16, RCMOE_DT_FP16 };
	for (int d = 0; d < 3; d++) {
		size_t es = rcmoe_dtype_size(dts[d]);
		uint8_t *in = calloc(n, 4), *out = malloc(n * 4);
		struct rcmoe_pts_cfg cfg = { .dtype = dts[d], .density = 0.01, .chunk = 1024 };
		struct stream s;
		encode(in, n, &cfg, &s); /* all zero: nothing kept */
		cr_assert_eq(s.h.flags, 0);
		cr_assert_eq(kept(&s, NULL), 0u);
		cr_assert_eq(s.h.payload_len, 4u * 5);
		memset(out, 0x55, n * es);
		decode1(&s, dts[d], out, n);
		for (size_t j = 0; j < n * es; j++)
			cr_assert_eq(out[j], 0);
		free(s.p);

		struct tu_rng r = { 25 };
		tu_fill(dts[d], in, n, TU_GAUSS, &r);
		tu_set(dts[d], in, 77, NAN);
		tu_set(dts[d], in, 78, INFINITY);
		encode(in, n, &cfg, &s); /* non-finite: dense, exact */
		cr_assert_eq(s.h.flags, RCMOE_PTS_DENSE);
		decode1(&s, dts[d], out, n);
		for (size_t j = 0; j < n; j++)
			if (j != 77)
				cr_assert(!memcmp(in + j * es, out + j * es, es), "elem %zu", j);
		cr_assert(isnan(tu_get(dts[d], out, 77)));
		free(s.p);
		free(in);
		free(out);
	}
}

/* The sum of R payloads, in order, in fp32, rounded once; identical on every call. The payloads
 * have different chunk sizes (the sum walks them window by window) and one is dense (an Inf in
 * its input); n is not a multiple of any chunk. */
Test(pts, ordered_accumulation)
{
	const size_t n = 30000, R = 4;
	static const uint32_t chunks[] = { 1024, 16384, 2048, 4096 };
	static const int dts[] = { RCMOE_DT_FP32, RCMOE_DT_BF16 };
	struct tu_rng r = { 26 };
	for (int d = 0; d < 2; d++) {
		int dt = dts[d];
		size_t es = rcmoe_dtype_size(dt);
		struct stream s[4];
		const void *ps[4];
		size_t lens[4];
		float *ref = calloc(n, sizeof(float));
		uint8_t *one = malloc(n * 4), *in = malloc(n * 4);
		for (size_t k = 0; k < R; k++) {
			tu_fill(dt, in, n, TU_HEAVY, &r);
			if (k == 2)
				rcmoe_st_elem(in, (uint32_t)es, 777, rcmoe_from_f32(dt, INFINITY));
			struct rcmoe_pts_cfg cfg = { .dtype = dt,
						     .density = 0.05,
						     .seed = 3,
						     .rank = (uint32_t)k,
						     .chunk = chunks[k] };
			encode(in, n, &cfg, &s[k]);
			cr_assert_eq(!!(s[k].h.flags & RCMOE_PTS_FLAG_DENSE), k == 2,
				     "payload %zu: dense only with the Inf", k);
			ps[k] = s[k].p;
			lens[k] = s[k].len;
			/* a payload decoded alone is its exact contribution, also for 16-bit
			 * types (tau is representable there); sum those in order in fp32 */
			decode1(&s[k], dt, one, n);
			for (size_t j = 0; j < n; j++)
				ref[j] = ref[j] + (float)tu_get(dt, one, j);
		}
		uint8_t *a = malloc(n * es), *b = malloc(n * es);
		cr_assert_eq(rcmoe_pts_accumulate(ps, lens, (int)R, dt, a, n), RCMOE_OK);
		cr_assert_eq(rcmoe_pts_accumulate(ps, lens, (int)R, dt, b, n), RCMOE_OK);
		cr_assert(!memcmp(a, b, n * es), "same payloads, same bits");
		for (size_t j = 0; j < n; j++) {
			uint32_t want = rcmoe_from_f32(dt, ref[j]), got;
			got = es == 4 ? ((uint32_t *)(void *)a)[j] : ((uint16_t *)(void *)a)[j];
			cr_assert_eq(got, want, "dtype %d elem %zu", dt, j);
		}
		/* wrong n or dtype is refused before anything is written */
		cr_assert_eq(rcmoe_pts_accumulate(ps, lens, (int)R, dt, a, n - 1),
			     RCMOE_ERR_OVERFLOW);
		cr_assert_eq(rcmoe_pts_accumulate(ps, lens, (int)R, dt, a, n + 1),
			     RCMOE_ERR_INVALID);
		int other = dt == RCMOE_DT_FP32 ? RCMOE_DT_BF16 : RCMOE_DT_FP32;
		cr_assert_neq(rcmoe_pts_accumulate(ps, lens, (int)R, other, a, n), RCMOE_OK);
		for (size_t k = 0; k < R; k++)
			free(s[k].p);
		free(ref);
		free(one);
		free(in);
		free(a);
		free(b);
	}
}

Test(pts, config_checks)
{
	struct rcmoe_pts_cfg bad[] = {
		{ .dtype = 8, .density = 0.1 },
		{ .dtype = RCMOE_DT_FP32, .density = 0 },
		{ .dtype = RCMOE_DT_FP32, .density = 1.5 },
		{ .dtype = RCMOE_DT_FP32, .density = NAN },
		{ .dtype = RCMOE_DT_FP32, .density = 0.1, .chunk = 3000 },
		{ .dtype = RCMOE_DT_FP32, .density = 0.1, .chunk = 512 },
		{ .dtype = RCMOE_DT_FP32, .density = 0.1, .chunk = 32768 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(rcmoe_pts_check_cfg(&bad[i]), RCMOE_ERR_INVALID);
		cr_assert_eq(rcmoe_pts_bound(100, &bad[i]), 0u);
	}
	struct rcmoe_pts_cfg ok = { .dtype = RCMOE_DT_FP32, .density = 1.0 };
	float in[100] = { 1 };
	uint8_t out[4096];
	size_t len, bound = rcmoe_pts_bound(100, &ok);
	cr_assert_eq(rcmoe_pts_encode(in, 100, &ok, out, bound - 1, &len), RCMOE_ERR_OVERFLOW);
	cr_assert_eq(rcmoe_pts_encode(in, 100, &ok, out, bound, &len), RCMOE_OK);
}

/* FNV-1a, 64-bit: a fingerprint of a whole stream. */
static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Known answers: the streams of fixed inputs, pinned by their length and fingerprint. The GPU
 * encoder is checked against this reference byte for byte, but only on a GPU machine; this keeps
 * a change of the reference's bytes (a refactor meant to be only faster, say) from passing CI
 * unnoticed. The values are those of the reference as of 2026-12-07, which matched the one
 * before that day's faster selection loop on 600 random cases (all datatypes, densities 0.001
 * to 1, chunk sizes, zeros, NaN, subnormal tau). A deliberate change of the format updates them
 * together with docs/stream-format.md. */
static void known_answers(void)
{
	static const struct {
		int dtype;
		double density;
		uint32_t chunk;
		size_t n;
		size_t len;
		uint64_t fnv;
	} cases[] = {
#include "pts_known_answers.inc"
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t n = cases[c].n, es = rcmoe_dtype_size(cases[c].dtype);
		uint8_t *in = malloc(n * es);
		cr_assert_not_null(in);
		uint64_t x = 0x9e3779b97f4a7c15ull + c;
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			float f = (float)((int64_t)(x % 2000001) - 1000000) * 1e-6f;
			if (i % 101 == 0)
				f *= 64.0f; /* some large elements */
			uint32_t u = rcmoe_from_f32(cases[c].dtype, f);
			if (es == 4)
				memcpy(in + 4 * i, &u, 4);
			else
				memcpy(in + 2 * i, &(uint16_t){ (uint16_t)u }, 2);
		}
		struct rcmoe_pts_cfg cfg = { .dtype = cases[c].dtype,
					     .density = cases[c].density,
					     .seed = 7,
					     .op_id = 1000 + c,
					     .rank = (uint32_t)c % 4,
					     .chunk = cases[c].chunk };
		struct stream s;
		encode(in, n, &cfg, &s);
		if (getenv("RCMOE_PRINT_KNOWN_ANSWERS"))
			printf("\t\t{ %d, %g, %u, %zu, %zu, 0x%016llxull },\n", cases[c].dtype,
			       cases[c].density, cases[c].chunk, n, s.len,
			       (unsigned long long)fnv1a(s.p, s.len));
		cr_expect_eq(s.len, cases[c].len, "case %zu: %zu bytes, %zu known", c, s.len,
			     cases[c].len);
		cr_expect_eq(fnv1a(s.p, s.len), cases[c].fnv,
			     "case %zu: the stream's bytes changed", c);
		free(s.p);
		free(in);
	}
}

Test(pts, known_answers_portable_build)
{
	cr_assert(rcmoe_cpu_set_isa(RCMOE_CPU_ISA_PORTABLE));
	known_answers();
}

Test(pts, known_answers_avx2_build)
{
	if (!rcmoe_cpu_set_isa(RCMOE_CPU_ISA_AVX2))
		cr_skip_test("this CPU (or a non-x86-64 build) has no AVX2: the portable build "
			     "is the one that runs here");
	known_answers();
}

Test(pts, known_answers_avx512_build)
{
	if (!rcmoe_cpu_set_isa(RCMOE_CPU_ISA_AVX512))
		cr_skip_test("this CPU (or a non-x86-64 build) has no AVX-512 (F, BW, VL, DQ): "
			     "a narrower build is the one that runs here");
	known_answers();
}

/* Every element of a stream, decoded, against the reference rule rcmoe_pts_select with the draw
 * rcmoe_rng_at(key, index): large ones bit-exact, small ones sign(g) * tau, dropped ones zero.
 * Random sizes (tails shorter than a chunk and than the selection loop's step), every datatype
 * and chunk size, special values (zeros, NaN, Inf, subnormals) and a tiny input whose tau is
 * subnormal. Returns the number of elements checked (those of sparse streams). */
static size_t selection_follows_rule(void)
{
	static const int dts[] = { RCMOE_DT_FP32, RCMOE_DT_BF16, RCMOE_DT_FP16 };
	static const uint32_t chunks[] = { 1024, 4096, 16384 };
	static const double dens[] = { 0.001, 0.01, 0.1 };
	struct tu_rng r = { 77 };
	size_t checked = 0;
	for (int c = 0; c < 36; c++) {
		int dt = dts[c % 3];
		size_t es = rcmoe_dtype_size(dt);
		size_t n = 1 + (size_t)(tu_u64(&r) % 70000);
		uint8_t *in = malloc(n * 4), *out = malloc(n * 4);
		cr_assert(in && out);
		tu_fill(dt, in, n, c % 4 == 0 ? TU_SPECIALS : c % 4 == 1 ? TU_HEAVY : TU_GAUSS, &r);
		if (c % 9 == 8) /* tiny values: a subnormal tau (fp32 only reaches it) */
			for (size_t i = 0; i < n; i++)
				rcmoe_st_elem(
					in, (uint32_t)es, i,
					rcmoe_from_f32(dt, (float)(tu_get(dt, in, i) * 1e-40)));
		struct rcmoe_pts_cfg cfg = { .dtype = dt,
					     .density = dens[(c / 3) % 3],
					     .seed = 11,
					     .op_id = (uint64_t)c << 33 |
						      (uint64_t)c, /* high bits */
					     .rank = (uint32_t)c % 5,
					     .chunk = chunks[(c / 9) % 3] };
		struct stream s;
		encode(in, n, &cfg, &s);
		decode1(&s, dt, out, n);
		if (!(s.h.flags & RCMOE_PTS_FLAG_DENSE)) { /* dense: nothing selected */
			float tau = rcmoe_bitsf(s.h.aux);
			uint64_t key = rcmoe_rng_key(cfg.seed, cfg.op_id, cfg.rank);
			for (size_t i = 0; i < n; i++) {
				uint32_t raw = rcmoe_ld_elem(in, (uint32_t)es, i);
				float g = rcmoe_to_f32(dt, raw);
				int sel = rcmoe_pts_select(g, tau, rcmoe_rng_at(key, i));
				uint32_t want = sel == RCMOE_PTS_LARGE ? raw
						: sel == RCMOE_PTS_SMALL
							? rcmoe_from_f32(dt, g < 0 ? -tau : tau)
							: 0;
				uint32_t got = rcmoe_ld_elem(out, (uint32_t)es, i);
				cr_assert_eq(got, want,
					     "case %d (dtype %d, n %zu, chunk %u): element %zu "
					     "(0x%x, selection %d) decoded as 0x%x, not 0x%x",
					     c, dt, n, cfg.chunk, i, raw, sel, got, want);
			}
			checked += n;
		}
		free(s.p);
		free(in);
		free(out);
	}
	return checked;
}

Test(pts, portable_build_follows_rule)
{
	cr_assert(rcmoe_cpu_set_isa(RCMOE_CPU_ISA_PORTABLE));
	cr_assert_gt(selection_follows_rule(), 100000u, "too few sparse streams checked");
}

Test(pts, avx2_build_follows_rule)
{
	if (!rcmoe_cpu_set_isa(RCMOE_CPU_ISA_AVX2))
		cr_skip_test("this CPU (or a non-x86-64 build) has no AVX2: the portable build "
			     "is the one that runs here");
	cr_assert_gt(selection_follows_rule(), 100000u, "too few sparse streams checked");
}

Test(pts, avx512_build_follows_rule)
{
	if (!rcmoe_cpu_set_isa(RCMOE_CPU_ISA_AVX512))
		cr_skip_test("this CPU (or a non-x86-64 build) has no AVX-512 (F, BW, VL, DQ): "
			     "a narrower build is the one that runs here");
	cr_assert_gt(selection_follows_rule(), 100000u, "too few sparse streams checked");
}
