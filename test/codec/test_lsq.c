/* SPDX-License-Identifier: Apache-2.0 */
/* LSQ, CPU reference: error bound, unbiasedness, special blocks, exact lengths, config checks. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/codec.h"
#include "codec_math.h"
#include "codec_test_util.h"
#include "test_log.h"

TestSuite(lsq, .init = test_log_init);

static const int dtypes[] = { RCMOE_DT_BF16, RCMOE_DT_FP16, RCMOE_DT_FP32 };
static const int bitss[] = { 8, 4, 2 };

struct coded {
	uint8_t *stream;
	size_t len;
	uint8_t *out;
	struct rcmoe_wire_header h;
};

static void roundtrip(const void *in, size_t n, const struct rcmoe_lsq_cfg *cfg, struct coded *c)
{
	size_t esize = rcmoe_dtype_size(cfg->dtype), cap = rcmoe_lsq_bound(n, cfg), outb = 0;
	cr_assert(cap >= RCMOE_WIRE_HEADER_BYTES);
	c->stream = malloc(cap);
	c->out = malloc(n * esize + 1);
	cr_assert_eq(rcmoe_lsq_encode(in, n, cfg, c->stream, cap, &c->len), RCMOE_OK);
	cr_assert_leq(c->len, cap);
	cr_assert_eq(rcmoe_codec_validate(c->stream, c->len, n * esize, &c->h), RCMOE_OK);
	cr_assert_eq(c->len, RCMOE_WIRE_HEADER_BYTES + c->h.payload_len, "exact length");
	cr_assert_eq(rcmoe_codec_decode(c->stream, c->len, c->out, n * esize, &outb), RCMOE_OK);
	cr_assert_eq(outb, n * esize);
}

static void coded_free(struct coded *c)
{
	free(c->stream);
	free(c->out);
}

/* Every element within one scale of its input (plus the final rounding to a 16-bit dtype);
 * raw blocks bit-exact; zero blocks zero. */
static void check_block_errors(const void *in, size_t n, const struct rcmoe_lsq_cfg *cfg,
			       const struct coded *c)
{
	size_t esize = rcmoe_dtype_size(cfg->dtype), B = cfg->block;
	for (size_t b0 = 0; b0 < n; b0 += B) {
		size_t m = n - b0 < B ? n - b0 : B;
		uint32_t amax = 0;
		for (size_t j = 0; j < m; j++) {
			uint32_t a =
				rcmoe_fbits((float)tu_get(cfg->dtype, in, b0 + j)) & 0x7fffffffu;
			amax = a > amax ? a : amax;
		}
		float s = 0, inv = 0;
		int kind = rcmoe_lsq_block_kind(amax, (uint32_t)m, cfg->bits, (uint32_t)esize, &s,
						&inv);
		if (kind == RCMOE_LSQ_RAW) {
			cr_assert(!memcmp((const uint8_t *)in + b0 * esize, c->out + b0 * esize,
					  m * esize),
				  "raw block at %zu not bit-exact", b0);
			continue;
		}
		for (size_t j = 0; j < m; j++) {
			double x = tu_get(cfg->dtype, in, b0 + j),
			       y = tu_get(cfg->dtype, c->out, b0 + j);
			if (kind == RCMOE_LSQ_ZERO) {
				cr_assert_eq(y, 0.0);
				continue;
			}
			double tol = (double)s * (1 + 1e-6) + tu_half_ulp(cfg->dtype, y);
			cr_assert(fabs(y - x) <= tol,
				  "dtype %d bits %d B %u elem %zu: x %g decoded %g scale %g",
				  cfg->dtype, cfg->bits, cfg->block, b0 + j, x, y, (double)s);
		}
	}
}

Test(lsq, roundtrip_within_bound)
{
	static const uint32_t blocks[] = { 32, 128, 1024 };
	static const size_t sizes[] = { 0, 1, 31, 33, 129, 1000, 5003 };
	static const enum tu_data kinds[] = { TU_GAUSS, TU_HEAVY, TU_SPECIALS, TU_CONSTANT };
	struct tu_rng r = { 1 };
	for (int d = 0; d < 3; d++)
		for (int bi = 0; bi < 3; bi++)
			for (int k = 0; k < 3; k++)
				for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
					for (int kd = 0; kd < 4; kd++) {
						size_t n = sizes[s];
						struct rcmoe_lsq_cfg cfg = {
							.dtype = dtypes[d],
							.bits = bitss[bi],
							.block = blocks[k],
							.seed = tu_u64(&r),
							.op_id = s,
							.rank = (uint32_t)kd,
						};
						void *in = malloc(n * 4 + 1);
						tu_fill(cfg.dtype, in, n, kinds[kd], &r);
						struct coded c;
						roundtrip(in, n, &cfg, &c);
						check_block_errors(in, n, &cfg, &c);
						coded_free(&c);
						free(in);
					}
}

/* Mean of decodes over K seeds converges to x: |mean - x| <= 5 standard errors of the mean
 * (from the exact variance of one stochastic rounding) plus, for 16-bit outputs, the half ulp of
 * the final rounding (a deterministic bias). */
Test(lsq, unbiased_over_seeds)
{
	const size_t n = 256, K = 2000;
	struct tu_rng r = { 7 };
	static const int dts[] = { RCMOE_DT_FP32, RCMOE_DT_BF16 };
	double *sum = malloc(n * sizeof(double));
	for (int d = 0; d < 2; d++)
		for (int bi = 0; bi < 3; bi++) {
			struct rcmoe_lsq_cfg cfg = { .dtype = dts[d],
						     .bits = bitss[bi],
						     .block = 128 };
			void *in = malloc(n * 4);
			tu_fill(cfg.dtype, in, n, TU_GAUSS, &r);
			memset(sum, 0, n * sizeof(double));
			for (size_t k = 0; k < K; k++) {
				struct coded c;
				cfg.seed = 1000 + k;
				roundtrip(in, n, &cfg, &c);
				for (size_t i = 0; i < n; i++)
					sum[i] += tu_get(cfg.dtype, c.out, i);
				coded_free(&c);
			}
			double worst = 0;
			int L = rcmoe_lsq_levels(cfg.bits);
			for (size_t i = 0; i < n; i++) {
				/* variance of one draw: s^2 f (1 - f), f = frac(x / s) */
				double amax = 0;
				for (size_t j = i / 128 * 128; j < i / 128 * 128 + 128; j++)
					amax = fmax(amax, fabs(tu_get(cfg.dtype, in, j)));
				double x = tu_get(cfg.dtype, in, i), mean = sum[i] / K,
				       s = amax / L;
				double f = x / s - floor(x / s);
				double se = s * sqrt(f * (1 - f) / K);
				double tol = 5 * se + tu_half_ulp(cfg.dtype, x) + 1e-6 * s;
				cr_assert(fabs(mean - x) <= tol,
					  "dtype %d bits %d elem %zu: x %.9g mean %.9g se %.3g",
					  cfg.dtype, cfg.bits, i, x, mean, se);
				if (se > 0 && fabs(mean - x) / se > worst)
					worst = fabs(mean - x) / se;
			}
			cr_log_info("dtype %d bits %d: worst |mean-x| = %.2f standard errors",
				    cfg.dtype, cfg.bits, worst);
			free(in);
		}
	free(sum);
}

/* Zero, NaN, Inf, subnormal-only and huge blocks, and a partial last block. */
Test(lsq, special_blocks)
{
	const uint32_t B = 32;
	const size_t n = 6 * B + 5;
	float in[6 * 32 + 5];
	struct tu_rng r = { 3 };
	for (size_t i = 0; i < n; i++)
		in[i] = (float)tu_gauss(&r);
	for (size_t i = 0; i < B; i++)
		in[i] = (i & 1) ? -0.0f : 0.0f; /* block 0: zeros */
	in[B + 5] = NAN;                        /* block 1: NaN */
	in[2 * B + 7] = -INFINITY;              /* block 2: Inf */
	for (size_t i = 3 * B; i < 4 * B; i++)
		in[i] = 1e-40f;  /* block 3: subnormal scale */
	in[4 * B + 1] = 3.0e38f; /* block 4: too close to FLT_MAX */
	struct rcmoe_lsq_cfg cfg = { .dtype = RCMOE_DT_FP32, .bits = 4, .block = B, .seed = 9 };
	struct coded c;
	roundtrip(in, n, &cfg, &c);
	const uint8_t *p = c.stream + RCMOE_WIRE_HEADER_BYTES;
	int expect[7] = { RCMOE_LSQ_ZERO, RCMOE_LSQ_RAW,   RCMOE_LSQ_RAW,  RCMOE_LSQ_RAW,
			  RCMOE_LSQ_RAW,  RCMOE_LSQ_QUANT, RCMOE_LSQ_QUANT };
	for (int b = 0; b < 7; b++)
		cr_assert_eq((p[b / 4] >> (2 * (b % 4))) & 3, expect[b], "block %d kind", b);
	/* kinds 4 bytes, 4 raw blocks, 1 full + 1 partial quantized block; zero block free */
	size_t expect_len = 4 + 4 * B * 4 + (4 + B * 4 / 8) + (4 + 4);
	cr_assert_eq(c.h.payload_len, expect_len);
	for (size_t i = 0; i < B; i++)
		cr_assert_eq(rcmoe_fbits(((float *)(void *)c.out)[i]), 0u,
			     "zero block decodes to +0");
	cr_assert(!memcmp(in + B, c.out + B * 4, 4 * B * 4), "raw blocks bit-exact");
	check_block_errors(in, n, &cfg, &c);
	coded_free(&c);
}

Test(lsq, exact_sizes_and_ratio)
{
	const size_t n = 128 * 1000;
	uint16_t *in = malloc(n * 2);
	struct tu_rng r = { 5 };
	tu_fill(RCMOE_DT_BF16, in, n, TU_GAUSS, &r);
	for (int bi = 0; bi < 3; bi++) {
		struct rcmoe_lsq_cfg cfg = { .dtype = RCMOE_DT_BF16,
					     .bits = bitss[bi],
					     .block = 128 };
		struct coded c;
		roundtrip(in, n, &cfg, &c);
		size_t expect = 1000 / 16 * 4 + 4 + 1000 * (4 + 128 * bitss[bi] / 8);
		cr_assert_eq(c.h.payload_len, expect, "bits %d", bitss[bi]);
		cr_log_info("bf16 %d-bit B=128: ratio %.3f", bitss[bi], (double)(n * 2) / c.len);
		coded_free(&c);
	}
	free(in);
}

Test(lsq, deterministic_and_seeded)
{
	const size_t n = 4096;
	float *in = malloc(n * 4);
	struct tu_rng r = { 11 };
	tu_fill(RCMOE_DT_FP32, in, n, TU_GAUSS, &r);
	struct rcmoe_lsq_cfg cfg = {
		.dtype = RCMOE_DT_FP32, .bits = 4, .block = 256, .seed = 42, .op_id = 7, .rank = 3
	};
	struct coded a, b, c;
	roundtrip(in, n, &cfg, &a);
	roundtrip(in, n, &cfg, &b);
	cr_assert_eq(a.len, b.len);
	cr_assert(!memcmp(a.stream, b.stream, a.len), "same inputs, same bytes");
	cr_assert_eq(a.h.seed, 42u);
	cr_assert_eq(a.h.op_id, 7u);
	cr_assert_eq(a.h.rank, 3u);
	cfg.rank = 4;
	roundtrip(in, n, &cfg, &c);
	cr_assert(memcmp(a.stream + 64, c.stream + 64, a.len - 64) != 0, "rank changes draws");
	coded_free(&a);
	coded_free(&b);
	coded_free(&c);
	free(in);
}

Test(lsq, config_and_capacity)
{
	float in[64] = { 1 };
	uint8_t out[1024];
	size_t len;
	struct rcmoe_lsq_cfg ok = { .dtype = RCMOE_DT_FP32, .bits = 8, .block = 32 };
	struct rcmoe_lsq_cfg bad[] = {
		{ .dtype = 8, .bits = 8, .block = 32 },
		{ .dtype = RCMOE_DT_FP32, .bits = 3, .block = 32 },
		{ .dtype = RCMOE_DT_FP32, .bits = 8, .block = 48 },
		{ .dtype = RCMOE_DT_FP32, .bits = 8, .block = 16 },
		{ .dtype = RCMOE_DT_FP32, .bits = 8, .block = 2048 },
	};
	cr_assert_eq(rcmoe_lsq_check_cfg(&ok), RCMOE_OK);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(rcmoe_lsq_check_cfg(&bad[i]), RCMOE_ERR_INVALID);
		cr_assert_eq(rcmoe_lsq_bound(64, &bad[i]), 0u);
		cr_assert_eq(rcmoe_lsq_encode(in, 64, &bad[i], out, sizeof(out), &len),
			     RCMOE_ERR_INVALID);
	}
	size_t bound = rcmoe_lsq_bound(64, &ok);
	cr_assert_eq(bound, 64u + 4 + 256);
	cr_assert_eq(rcmoe_lsq_encode(in, 64, &ok, out, bound - 1, &len), RCMOE_ERR_OVERFLOW);
	cr_assert_eq(rcmoe_lsq_encode(in, 64, &ok, out, bound, &len), RCMOE_OK);
	cr_assert_eq(rcmoe_lsq_encode(NULL, 64, &ok, out, bound, &len), RCMOE_ERR_INVALID);
}

/* The RNG is a pure function of its four inputs and uniform enough for rounding. */
Test(lsq, rng_properties)
{
	cr_assert_eq(rcmoe_rng_u32(1, 2, 3, 4), rcmoe_rng_u32(1, 2, 3, 4));
	cr_assert_neq(rcmoe_rng_u32(1, 2, 3, 4), rcmoe_rng_u32(1, 2, 3, 5));
	cr_assert_neq(rcmoe_rng_u32(1, 2, 3, 4), rcmoe_rng_u32(2, 2, 3, 4));
	cr_assert_neq(rcmoe_rng_u32(1, 2, 3, 4), rcmoe_rng_u32(1, 3, 3, 4));
	cr_assert_neq(rcmoe_rng_u32(1, 2, 3, 4), rcmoe_rng_u32(1, 2, 4, 4));
	cr_assert_neq(rcmoe_rng_u32(1, 2, 3, 4), rcmoe_rng_u32(1, 2, 3, 4 + (1ull << 32)));
	/* mean of u over 2^16 draws within 5 standard errors of 1/2; bucket counts balanced */
	const int N = 1 << 16;
	double s = 0;
	int buckets[16] = { 0 };
	for (int i = 0; i < N; i++) {
		uint32_t v = rcmoe_rng_u32(99, 1, 0, (uint64_t)i);
		s += rcmoe_rng_unit(v);
		buckets[v >> 28]++;
	}
	cr_assert(fabs(s / N - 0.5) < 5 * sqrt(1.0 / 12 / N));
	for (int b = 0; b < 16; b++)
		cr_assert(abs(buckets[b] - N / 16) < 6 * 62, "bucket %d: %d", b, buckets[b]);
}

/* The inverse scale never lets |x * inv| pass L (the codes rely on it: they are not clamped),
 * and it stays the nearest float below or at L / amax: within 2 ulp of the division. Every
 * magnitude pattern of 2^20 spread over the normal range, plus each power of two's neighbours. */
Test(lsq, inverse_scale_never_overshoots)
{
	static const int bitss[] = { 8, 4, 2 };
	int stepped = 0;
	for (int bi = 0; bi < 3; bi++) {
		float l = (float)rcmoe_lsq_levels(bitss[bi]);
		for (uint32_t i = 0; i < (1u << 20) + 2 * 254; i++) {
			uint32_t a = i < (1u << 20) ? 0x00800000u + i * 0x7e7u
						    : ((i - (1u << 20)) / 2 + 1) << 23;
			if (i >= (1u << 20) && (i & 1))
				a -= 1; /* just below the power of two */
			if (a >= 0x7f000000u)
				continue;
			float s = 0, inv = 0;
			int kind = rcmoe_lsq_block_kind(a, 128, bitss[bi], 2, &s, &inv);
			if (kind != RCMOE_LSQ_QUANT)
				continue;
			float amax;
			memcpy(&amax, &a, 4);
			cr_assert(amax * inv <= l, "bits %d amax %a inv %a: %a > L", bitss[bi],
				  (double)amax, (double)inv, (double)(amax * inv));
			uint32_t ib, db;
			float d = l / amax;
			memcpy(&ib, &inv, 4);
			memcpy(&db, &d, 4);
			cr_assert(ib <= db && db - ib <= 2, "bits %d amax %a: inv %a, L / amax %a",
				  bitss[bi], (double)amax, (double)inv, (double)d);
			stepped += ib != db;
		}
	}
	/* the step is needed for some inputs, or this test would not see the clamp's loss */
	cr_assert(stepped > 0);
}

/* 16-bit conversions round to nearest even like the hardware does. */
Test(lsq, half_conversions)
{
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = rcmoe_f16_to_f32((uint16_t)h);
		if (f == f)
			cr_assert_eq(rcmoe_f32_to_f16(f), h, "fp16 %04x", h);
		float g = rcmoe_bf16_to_f32((uint16_t)h);
		if (g == g)
			cr_assert_eq(rcmoe_f32_to_bf16(g), h, "bf16 %04x", h);
	}
	/* ties go to even, overflow to inf, underflow to zero */
	cr_assert_eq(rcmoe_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
	cr_assert_eq(rcmoe_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
	cr_assert_eq(rcmoe_f32_to_f16(65519.0f), 0x7bff);
	cr_assert_eq(rcmoe_f32_to_f16(65520.0f), 0x7c00);
	cr_assert_eq(rcmoe_f32_to_f16(0x1p-25f), 0x0000);
	cr_assert_eq(rcmoe_f32_to_f16(0x1.0001p-25f), 0x0001);
	cr_assert_eq(rcmoe_f32_to_f16(3 * 0x1p-25f), 0x0002);
	cr_assert_eq(rcmoe_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
	cr_assert_eq(rcmoe_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
	cr_assert_eq(rcmoe_f32_to_bf16(0x1.fffffep127f), 0x7f80);
}
