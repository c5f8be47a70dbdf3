/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collective side's exact sum (plugin/coll/sum.c) against the definition it must keep,
 * rcmoe_ar_add element by element in rank order (sum.h): every datatype, 1 to 6 sources, sizes
 * with and without a short last block, NaN, Inf, signed zeros and subnormals, the result written
 * over the first source; in both builds of its block loop (baseline and AVX2).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"
#include "coll/sum.h"

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Mostly ordinary values of both signs, with specials among them. */
static uint32_t value(int dtype)
{
	uint64_t r = next();
	float f = (float)((int64_t)(r % 2000001) - 1000000) * 1e-3f;
	switch ((r >> 32) % 64) {
	case 0: f = __builtin_nanf(""); break;
	case 1: f = __builtin_inff(); break;
	case 2: f = -__builtin_inff(); break;
	case 3: f = -0.0f; break;
	case 4: f = 1e-41f; break; /* subnormal in fp32, zero in the 16-bit types */
	case 5: f = 65504.0f; break;
	default: break;
	}
	return rcmoe_from_f32(dtype, f);
}

static size_t run_cases(void)
{
	static const int dts[] = { RCMOE_DT_FP32, RCMOE_DT_BF16, RCMOE_DT_FP16 };
	static const size_t sizes[] = { 1, 1023, 1024, 1025, 4096, 5000, 70001 };
	size_t checked = 0;
	for (int d = 0; d < 3; d++)
		for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++)
			for (int nsrc = 1; nsrc <= 6; nsrc++) {
				int dt = dts[d];
				uint32_t es = rcmoe_dt_size(dt);
				size_t n = sizes[z];
				uint8_t *src[6], *want = malloc(n * es);
				cr_assert_not_null(want);
				for (int s = 0; s < nsrc; s++) {
					src[s] = malloc(n * es);
					cr_assert_not_null(src[s]);
					for (size_t i = 0; i < n; i++)
						rcmoe_st_elem(src[s], es, i, value(dt));
				}
				for (size_t i = 0; i < n; i++) {
					uint32_t a = rcmoe_ld_elem(src[0], es, i);
					for (int s = 1; s < nsrc; s++)
						a = rcmoe_ar_add(dt, a,
								 rcmoe_ld_elem(src[s], es, i));
					rcmoe_st_elem(want, es, i, a);
				}
				/* in place: the result over the first source */
				cr_assert_eq(rcmoe_coll_sum(dt, (const void *const *)src, nsrc,
							    src[0], n),
					     RCMOE_OK);
				for (size_t i = 0; i < n; i++)
					cr_assert_eq(
						rcmoe_ld_elem(src[0], es, i),
						rcmoe_ld_elem(want, es, i),
						"dtype %d, %d sources, %zu elements: element %zu "
						"is 0x%x, not 0x%x",
						dt, nsrc, n, i, rcmoe_ld_elem(src[0], es, i),
						rcmoe_ld_elem(want, es, i));
				checked += n;
				for (int s = 0; s < nsrc; s++)
					free(src[s]);
				free(want);
			}
	return checked;
}

Test(coll_sum, portable_build_matches_definition)
{
	cr_assert(rcmoe_cpu_set_isa(RCMOE_CPU_ISA_PORTABLE));
	cr_assert_gt(run_cases(), 1000000u);
}

Test(coll_sum, avx2_build_matches_definition)
{
	if (!rcmoe_cpu_set_isa(RCMOE_CPU_ISA_AVX2))
		cr_skip_test("this CPU (or a non-x86-64 build) has no AVX2: the portable build "
			     "is the one that runs here");
	cr_assert_gt(run_cases(), 1000000u);
}

Test(coll_sum, avx512_build_matches_definition)
{
	if (!rcmoe_cpu_set_isa(RCMOE_CPU_ISA_AVX512))
		cr_skip_test("this CPU (or a non-x86-64 build) has no AVX-512 (F, BW, VL, DQ): "
			     "a narrower build is the one that runs here");
	cr_assert_gt(run_cases(), 1000000u);
}

Test(coll_sum, refuses_other_types_and_no_source)
{
	uint32_t a[4] = { 0 }, out[4];
	const void *src[1] = { a };
	cr_assert_eq(rcmoe_coll_sum(RCMOE_DT_FP32, src, 0, out, 4), RCMOE_ERR_INVALID);
	cr_assert_eq(rcmoe_coll_sum(99, src, 1, out, 4), RCMOE_ERR_INVALID);
	cr_assert_eq(rcmoe_coll_sum(RCMOE_DT_FP32, src, 1, NULL, 4), RCMOE_ERR_INVALID);
}
