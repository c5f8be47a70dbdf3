/* SPDX-License-Identifier: Apache-2.0 */
#include <math.h>
#include <string.h>

#include "rcmoe/codec.h"
#include "codec_math.h"
#include "codec_test_util.h"

uint64_t tu_u64(struct tu_rng *r)
{
	r->s += 0x9e3779b97f4a7c15ull;
	return rcmoe_mix64(r->s);
}

double tu_uniform(struct tu_rng *r)
{
	return (double)(tu_u64(r) >> 11) * 0x1p-53;
}

double tu_gauss(struct tu_rng *r)
{
	double u = tu_uniform(r), v = tu_uniform(r);
	return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

double tu_get(int dtype, const void *buf, size_t i)
{
	const uint8_t *p = buf;
	if (dtype == RCMOE_DT_FP32) {
		float f;
		memcpy(&f, p + 4 * i, 4);
		return f;
	}
	uint16_t h;
	memcpy(&h, p + 2 * i, 2);
	return dtype == RCMOE_DT_BF16 ? rcmoe_bf16_to_f32(h) : rcmoe_f16_to_f32(h);
}

void tu_set(int dtype, void *buf, size_t i, double v)
{
	uint8_t *p = buf;
	uint32_t bits = rcmoe_from_f32(dtype, (float)v);
	if (dtype == RCMOE_DT_FP32) {
		memcpy(p + 4 * i, &bits, 4);
	} else {
		uint16_t h = (uint16_t)bits;
		memcpy(p + 2 * i, &h, 2);
	}
}

double tu_half_ulp(int dtype, double v)
{
	int e;
	if (dtype == RCMOE_DT_FP32 || v == 0 || !isfinite(v))
		return 0;
	frexp(fabs(v), &e); /* |v| in [2^(e-1), 2^e) */
	if (dtype == RCMOE_DT_BF16)
		return ldexp(1.0, e - 1 - 8);
	if (e - 1 < -14)
		e = -13; /* fp16 subnormals: fixed spacing 2^-24 */
	return ldexp(1.0, e - 1 - 11);
}

static double student_t3(struct tu_rng *r)
{
	double g = tu_gauss(r), c = 0;
	for (int k = 0; k < 3; k++) {
		double z = tu_gauss(r);
		c += z * z;
	}
	return g / sqrt(c / 3.0);
}

void tu_fill(int dtype, void *buf, size_t n, enum tu_data kind, struct tu_rng *r)
{
	const size_t row = 512;
	double scale = 1.0;
	for (size_t i = 0; i < n; i++) {
		if (i % row == 0)
			scale = exp(tu_gauss(r)) * (dtype == RCMOE_DT_FP16 ? 1.0 : 0.01);
		double v;
		switch (kind) {
		case TU_HEAVY: v = scale * student_t3(r); break;
		case TU_CONSTANT: v = 0.75; break;
		default: v = scale * tu_gauss(r); break;
		}
		tu_set(dtype, buf, i, v);
	}
	if (kind != TU_SPECIALS || n == 0)
		return;
	/* a zero run, NaN, infinities, subnormals and the largest finite values */
	size_t z0 = (size_t)(tu_u64(r) % n), zl = 300;
	for (size_t i = z0; i < n && i < z0 + zl; i++)
		tu_set(dtype, buf, i, (i & 1) ? 0.0 : -0.0);
	double big = dtype == RCMOE_DT_FP16 ? 65504.0 : dtype == RCMOE_DT_BF16 ? 3.3e38 : 3.4e38;
	double tiny = dtype == RCMOE_DT_FP16 ? 6e-8 : 1e-40;
	double specials[] = { NAN, INFINITY, -INFINITY, tiny, -tiny, big, -big };
	for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
		if (tu_uniform(r) < 0.7)
			tu_set(dtype, buf, (size_t)(tu_u64(r) % n), specials[k]);
	}
}

/* Bounded as scale (1 + rel) + |x| rel with rel = 2^-7 for 16-bit types, which covers the half
 * ulp of |y| <= |x| + scale for bf16 and fp16. */
size_t tu_lsq_out_of_bound(const void *orig, const void *got, size_t n, int dtype, int bits,
			   uint32_t block)
{
	const double levels = (double)((1 << (bits - 1)) - 1);
	const double rel = dtype == RCMOE_DT_FP32 ? 1e-6 : 1.0 / 128;
	size_t bad = 0;
	for (size_t b = 0; b < n; b += block) {
		size_t end = b + block < n ? b + block : n;
		double amax = 0;
		for (size_t i = b; i < end; i++)
			amax = fmax(amax, fabs(tu_get(dtype, orig, i)));
		double scale = amax / levels;
		for (size_t i = b; i < end; i++) {
			double x = tu_get(dtype, orig, i), y = tu_get(dtype, got, i);
			if (!(fabs(y - x) <= scale * (1 + rel) + fabs(x) * rel + 1e-30))
				bad++;
		}
	}
	return bad;
}
