/* SPDX-License-Identifier: Apache-2.0 */
/* Dedup, CPU reference: planted duplicates found, near-duplicates and tails never matched,
 * lossless round trip, header statistics. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/codec.h"
#include "codec_test_util.h"
#include "test_log.h"

TestSuite(dedup, .init = test_log_init);

static void fill_random(uint8_t *p, size_t n, struct tu_rng *r)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)tu_u64(r);
}

static uint32_t entry(const uint8_t *stream, size_t i)
{
	uint32_t e;
	memcpy(&e, stream + RCMOE_WIRE_HEADER_BYTES + 4 * i, 4);
	return e;
}

/* encode, validate, decode, compare; returns the stream */
static uint8_t *roundtrip(const uint8_t *in, size_t bytes, uint32_t bb, size_t *len,
			  struct rcmoe_dedup_stats *st)
{
	size_t cap = rcmoe_dedup_bound(bytes, bb), outb;
	uint8_t *s = malloc(cap), *out = malloc(bytes + 1);
	struct rcmoe_wire_header h;
	struct rcmoe_dedup_stats hs;
	cr_assert_eq(rcmoe_dedup_encode(in, bytes, bb, s, cap, len, st), RCMOE_OK);
	cr_assert_eq(rcmoe_codec_validate(s, *len, bytes, &h), RCMOE_OK);
	cr_assert_eq(*len, RCMOE_WIRE_HEADER_BYTES + h.payload_len);
	rcmoe_dedup_header_stats(&h, &hs);
	cr_assert_eq(hs.blocks, st->blocks);
	cr_assert_eq(hs.duplicates, st->duplicates);
	cr_assert_eq(rcmoe_codec_decode(s, *len, out, bytes, &outb), RCMOE_OK);
	cr_assert_eq(outb, bytes);
	cr_assert(!memcmp(in, out, bytes), "lossless");
	free(out);
	return s;
}

Test(dedup, planted_duplicates)
{
	const uint32_t bb = 256;
	const size_t nb = 64, bytes = nb * bb;
	uint8_t *in = malloc(bytes);
	struct tu_rng r = { 31 };
	fill_random(in, bytes, &r);
	memcpy(in + 10 * bb, in + 3 * bb, bb);
	memcpy(in + 20 * bb, in + 3 * bb, bb);
	memcpy(in + 30 * bb, in + 7 * bb, bb);
	memcpy(in + 40 * bb, in + 5 * bb, bb);
	in[40 * bb + 100] ^= 1; /* a near duplicate: one bit differs */
	memcpy(in + 50 * bb, in + 6 * bb, bb);
	in[50 * bb + bb - 1] ^= 0x80; /* differs in the last byte */
	size_t len;
	struct rcmoe_dedup_stats st;
	uint8_t *s = roundtrip(in, bytes, bb, &len, &st);
	cr_assert_eq(st.blocks, nb);
	cr_assert_eq(st.duplicates, 3u);
	cr_assert_eq(entry(s, 10), entry(s, 3));
	cr_assert_eq(entry(s, 20), entry(s, 3));
	cr_assert_eq(entry(s, 30), entry(s, 7));
	cr_assert_eq(len, 64 + nb * 4 + (nb - 3) * bb);
	free(s);
	free(in);
}

Test(dedup, no_false_matches_and_tails)
{
	struct tu_rng r = { 32 };
	/* random data: nothing matches */
	size_t bytes = 1000 * 64 + 20, len;
	uint8_t *in = malloc(bytes);
	fill_random(in, bytes, &r);
	struct rcmoe_dedup_stats st;
	uint8_t *s = roundtrip(in, bytes, 64, &len, &st);
	cr_assert_eq(st.blocks, 1001u);
	cr_assert_eq(st.duplicates, 0u);
	free(s);
	/* a short tail equal to the start of block 0 is still sent */
	memcpy(in + 1000 * 64, in, 20);
	s = roundtrip(in, bytes, 64, &len, &st);
	cr_assert_eq(st.duplicates, 0u);
	free(s);
	/* identical blocks: all but the first are references, including with a 4-byte word tail
	 * (block size not a multiple of 8) */
	memset(in, 0xab, bytes);
	s = roundtrip(in, 100 * 36, 36, &len, &st);
	cr_assert_eq(st.duplicates, 99u);
	cr_assert_eq(len, 64 + 400 + 36);
	free(s);
	free(in);
}

Test(dedup, rows_like_moe_dispatch)
{
	/* 512 token rows of 7168 bf16 (14 KiB), a third of them routed twice to this peer */
	const uint32_t bb = 7168 * 2;
	const size_t nrows = 512, bytes = nrows * bb;
	uint8_t *in = malloc(bytes);
	struct tu_rng r = { 33 };
	size_t planted = 0;
	tu_fill(RCMOE_DT_BF16, in, bytes / 2, TU_GAUSS, &r);
	for (size_t i = 1; i < nrows; i++) {
		if (tu_uniform(&r) < 1.0 / 3) {
			size_t j = (size_t)(tu_u64(&r) % i);
			memcpy(in + i * bb, in + j * bb, bb);
			planted++;
		}
	}
	size_t len;
	struct rcmoe_dedup_stats st;
	uint8_t *s = roundtrip(in, bytes, bb, &len, &st);
	/* a copy of a copy is still one duplicate; rows are otherwise all distinct */
	cr_assert_eq(st.duplicates, planted);
	cr_log_info("dedup: %zu of %zu rows duplicate, ratio %.3f", planted, nrows,
		    (double)bytes / len);
	free(s);
	free(in);
}

Test(dedup, config_checks)
{
	uint8_t in[64] = { 0 }, out[512];
	size_t len;
	cr_assert_eq(rcmoe_dedup_bound(64, 18), 0u);
	cr_assert_eq(rcmoe_dedup_bound(64, 8), 0u);
	cr_assert_eq(rcmoe_dedup_encode(in, 64, 18, out, sizeof(out), &len, NULL),
		     RCMOE_ERR_INVALID);
	size_t b = rcmoe_dedup_bound(64, 16);
	cr_assert_eq(rcmoe_dedup_encode(in, 64, 16, out, b - 1, &len, NULL), RCMOE_ERR_OVERFLOW);
	cr_assert_eq(rcmoe_dedup_encode(in, 64, 16, out, b, &len, NULL), RCMOE_OK);
	cr_assert_eq(len, 64u + 16 + 16);
	cr_assert_eq(rcmoe_dedup_encode(in, 0, 16, out, b, &len, NULL), RCMOE_OK);
	cr_assert_eq(len, 64u);
}
