/* SPDX-License-Identifier: Apache-2.0 */
/* The codec stream format: header round trip, each kind of malformed, truncated and oversized
 * stream, and a long random-mutation run through every decoder (the fuzz target's invariants). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/codec.h"
#include "codec_math.h"
#include "codec_test_util.h"
#include "fuzz_codec.h"
#include "test_log.h"

TestSuite(stream_format, .init = test_log_init);

struct stream {
	uint8_t *p;
	size_t len, out;
};

static struct stream make_lsq(size_t n, int dtype, int bits, uint32_t block, uint64_t seed)
{
	struct rcmoe_lsq_cfg cfg = { .dtype = dtype, .bits = bits, .block = block, .seed = seed };
	struct tu_rng r = { seed };
	struct stream s;
	void *in = malloc(n * 4 + 1);
	tu_fill(dtype, in, n, TU_SPECIALS, &r);
	s.p = malloc(rcmoe_lsq_bound(n, &cfg));
	cr_assert_eq(rcmoe_lsq_encode(in, n, &cfg, s.p, rcmoe_lsq_bound(n, &cfg), &s.len),
		     RCMOE_OK);
	s.out = n * rcmoe_dtype_size(dtype);
	free(in);
	return s;
}

static struct stream make_pts(size_t n, int dtype, double rho, uint64_t seed)
{
	struct rcmoe_pts_cfg cfg = { .dtype = dtype, .density = rho, .seed = seed, .chunk = 1024 };
	struct tu_rng r = { seed };
	struct stream s;
	void *in = malloc(n * 4 + 1);
	tu_fill(dtype, in, n, TU_HEAVY, &r);
	s.p = malloc(rcmoe_pts_bound(n, &cfg));
	cr_assert_eq(rcmoe_pts_encode(in, n, &cfg, s.p, rcmoe_pts_bound(n, &cfg), &s.len),
		     RCMOE_OK);
	s.out = n * rcmoe_dtype_size(dtype);
	free(in);
	return s;
}

static struct stream make_dedup(size_t bytes, uint32_t bb, uint64_t seed)
{
	struct tu_rng r = { seed };
	struct stream s;
	uint8_t *in = malloc(bytes + 1);
	for (size_t i = 0; i < bytes; i++)
		in[i] = (uint8_t)(tu_u64(&r) % 3); /* low entropy: blocks repeat */
	s.p = malloc(rcmoe_dedup_bound(bytes, bb));
	cr_assert_eq(
		rcmoe_dedup_encode(in, bytes, bb, s.p, rcmoe_dedup_bound(bytes, bb), &s.len, NULL),
		RCMOE_OK);
	s.out = bytes;
	free(in);
	return s;
}

static rcmoe_status_t validate(const struct stream *s)
{
	struct rcmoe_wire_header h;
	return rcmoe_codec_validate(s->p, s->len, s->out, &h);
}

static void put32(uint8_t *p, size_t off, uint32_t v)
{
	memcpy(p + off, &v, 4);
}

static uint32_t get32(const uint8_t *p, size_t off)
{
	uint32_t v;
	memcpy(&v, p + off, 4);
	return v;
}

static void set_payload_len(struct stream *s, uint64_t pl)
{
	memcpy(s->p + 48, &pl, 8);
	rcmoe_fuzz_reseal(s->p);
}

Test(stream_format, header_roundtrip)
{
	struct rcmoe_wire_header h =
				     {
					 .magic = RCMOE_WIRE_MAGIC,
					 .version = RCMOE_WIRE_VERSION,
					 .codec = RCMOE_CODEC_LSQ,
					 .dtype = RCMOE_DT_BF16,
					 .bits = 4,
					 .block = 256,
					 .count = 1234567,
					 .seed = 0x1122334455667788ull,
					 .op_id = 99,
					 .rank = 7,
					 .payload_len = 0,
				     },
				 g;
	uint8_t buf[64];
	rcmoe_wire_write(buf, &h);
	cr_assert_eq(get32(buf, 0), RCMOE_WIRE_MAGIC);
	cr_assert_eq(rcmoe_wire_parse(buf, 64, &g), RCMOE_OK);
	cr_assert(g.magic == h.magic && g.version == h.version && g.codec == h.codec &&
		  g.dtype == h.dtype && g.bits == h.bits && g.flags == h.flags &&
		  g.block == h.block && g.count == h.count && g.seed == h.seed &&
		  g.op_id == h.op_id && g.rank == h.rank && g.payload_len == h.payload_len &&
		  g.aux == h.aux);
	cr_assert_eq(rcmoe_wire_parse(buf, 63, &g), RCMOE_ERR_TRUNCATED);
	cr_assert_eq(rcmoe_wire_parse(NULL, 64, &g), RCMOE_ERR_INVALID);
}

Test(stream_format, header_errors)
{
	struct stream s = make_lsq(1000, RCMOE_DT_BF16, 8, 128, 1);
	uint8_t *orig = malloc(s.len);
	memcpy(orig, s.p, s.len);
	struct {
		size_t off;
		uint32_t val;
		int reseal;
		rcmoe_status_t want;
	} cases[] = {
		{ 0, 0x12345678, 1, RCMOE_ERR_MALFORMED }, /* magic */
		{ 12, 64, 0, RCMOE_ERR_MALFORMED },        /* check word no longer matches */
		{ 4, 2 | RCMOE_CODEC_LSQ << 16 | RCMOE_DT_BF16 << 24, 1, RCMOE_ERR_UNSUPPORTED },
		{ 4, 1 | 9 << 16 | RCMOE_DT_BF16 << 24, 1, RCMOE_ERR_MALFORMED },   /* codec */
		{ 4, 1 | RCMOE_CODEC_LSQ << 16 | 8 << 24, 1, RCMOE_ERR_MALFORMED }, /* dtype */
		{ 8, 3, 1, RCMOE_ERR_MALFORMED },                                   /* bits */
		{ 8, 8 | 1 << 8, 1, RCMOE_ERR_MALFORMED },                          /* flags */
		{ 8, 8 | 1 << 16, 1, RCMOE_ERR_MALFORMED },                         /* reserved */
		{ 12, 96, 1, RCMOE_ERR_MALFORMED },      /* block not a power of two */
		{ 12, 2048, 1, RCMOE_ERR_MALFORMED },    /* block too large */
		{ 44, 1, 1, RCMOE_ERR_MALFORMED },       /* aux */
		{ 56, 1, 1, RCMOE_ERR_MALFORMED },       /* reserved */
		{ 20, 1 << 20, 1, RCMOE_ERR_MALFORMED }, /* count > 2^48 */
		{ 52, 1, 1, RCMOE_ERR_TRUNCATED },       /* payload_len > len */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(s.p, orig, s.len);
		put32(s.p, cases[i].off, cases[i].val);
		if (cases[i].reseal)
			rcmoe_fuzz_reseal(s.p);
		cr_assert_eq(validate(&s), cases[i].want, "case %zu: got %d", i, validate(&s));
	}
	memcpy(s.p, orig, s.len);
	cr_assert_eq(validate(&s), RCMOE_OK);
	s.len--; /* truncated payload */
	cr_assert_eq(validate(&s), RCMOE_ERR_TRUNCATED);
	s.len++;
	s.out--; /* destination one byte short */
	cr_assert_eq(validate(&s), RCMOE_ERR_OVERFLOW);
	uint8_t dst[1];
	size_t ob;
	cr_assert_eq(rcmoe_codec_decode(s.p, s.len, dst, 1, &ob), RCMOE_ERR_OVERFLOW);
	free(orig);
	free(s.p);
}

Test(stream_format, lsq_structure)
{
	struct stream s = make_lsq(40 * 32 + 7, RCMOE_DT_FP32, 4, 32, 2);
	uint8_t *pl = s.p + 64;
	cr_assert_eq(validate(&s), RCMOE_OK);
	/* a kind of 3 */
	pl[0] |= 3;
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	free(s.p);

	/* all-quantized Gaussian blocks: corrupt a scale, the table padding, the length */
	float in[100];
	struct tu_rng r = { 3 };
	for (int i = 0; i < 100; i++)
		in[i] = (float)tu_gauss(&r);
	struct rcmoe_lsq_cfg cfg = { .dtype = RCMOE_DT_FP32, .bits = 8, .block = 32 };
	s.p = malloc(rcmoe_lsq_bound(100, &cfg) + 8);
	cr_assert_eq(rcmoe_lsq_encode(in, 100, &cfg, s.p, rcmoe_lsq_bound(100, &cfg), &s.len),
		     RCMOE_OK);
	s.out = 400;
	pl = s.p + 64;
	cr_assert_eq(validate(&s), RCMOE_OK);
	uint32_t scale = get32(pl, 4);
	uint32_t bad_scales[] = { 0, 0x00000001, 0x7f800000, 0x7fc00000, scale | 0x80000000u };
	for (size_t i = 0; i < 5; i++) {
		put32(pl, 4, bad_scales[i]);
		cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED, "scale %08x", bad_scales[i]);
	}
	put32(pl, 4, scale);
	pl[1] |= 0x40; /* kind of block 7 (past the 4 blocks): padding */
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	pl[1] &= (uint8_t)~0x40;
	/* a zero block where the data says quantized: lengths no longer add up */
	pl[0] &= (uint8_t)~3;
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	pl[0] |= 1;
	uint64_t plen;
	memcpy(&plen, s.p + 48, 8);
	set_payload_len(&s, plen - 4);
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	s.len += 8;
	set_payload_len(&s, plen + 4);
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	set_payload_len(&s, plen);
	cr_assert_eq(validate(&s), RCMOE_OK, "trailing bytes after the stream are ignored");
	free(s.p);
}

Test(stream_format, pts_structure)
{
	/* a stream whose chunk 0 has small elements and at least two large ones */
	struct stream s;
	uint32_t e0 = 0;
	for (uint64_t seed = 4;; seed++) {
		s = make_pts(3000, RCMOE_DT_FP32, 0.3, seed);
		e0 = get32(s.p + 64, 0);
		if ((e0 >> 16) >= 2 && (e0 & 0xffff) > 0)
			break;
		free(s.p);
	}
	uint8_t *orig = malloc(s.len), *pl = s.p + 64;
	memcpy(orig, s.p, s.len);
	cr_assert_eq(validate(&s), RCMOE_OK);
	/* counts above the chunk length */
	put32(pl, 0, 1024 | 1u << 16);
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	/* one more small element than coded */
	put32(pl, 0, e0 + 1);
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	memcpy(s.p, orig, s.len);
	/* tau of 0 with small elements */
	put32(s.p, 44, 0);
	rcmoe_fuzz_reseal(s.p);
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	memcpy(s.p, orig, s.len);
	/* large positions out of order: swap the first two of chunk 0 */
	struct rcmoe_pts_chunk L;
	rcmoe_pts_chunk_layout(e0 & 0xffff, e0 >> 16, 1024, 4, &L);
	uint8_t *lpos = pl + 4 * 3 + 4 * (L.idx_words + L.sign_words);
	uint16_t a, b;
	memcpy(&a, lpos, 2);
	memcpy(&b, lpos + 2, 2);
	memcpy(lpos, &b, 2);
	memcpy(lpos + 2, &a, 2);
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	memcpy(s.p, orig, s.len);
	/* a large position that is also a small one */
	if (!L.ef && (e0 & 0xffff) > 0) {
		uint32_t w = get32(pl, 12), bit = 0;
		while (!((w >> bit) & 1))
			bit++;
		uint16_t p = (uint16_t)bit;
		memcpy(lpos, &p, 2);
		cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
		memcpy(s.p, orig, s.len);
	}
	/* sign padding */
	uint8_t *sign = pl + 12 + 4 * L.idx_words;
	if ((e0 & 0xffff) % 32) {
		sign[4 * L.sign_words - 1] |= 0x80;
		cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
		memcpy(s.p, orig, s.len);
	}
	/* dense flag with a sparse payload */
	s.p[9] = RCMOE_PTS_DENSE;
	put32(s.p, 44, 0);
	rcmoe_fuzz_reseal(s.p);
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	free(orig);
	free(s.p);
}

Test(stream_format, dedup_structure)
{
	/* blocks: A B A C, plus a 4-byte tail */
	uint8_t in[4 * 16 + 4];
	for (int i = 0; i < 68; i++)
		in[i] = (uint8_t)(i % 16 + 16 * ((i / 16) % 2) + (i >= 48 ? 100 : 0));
	struct stream s;
	s.p = malloc(rcmoe_dedup_bound(68, 16));
	cr_assert_eq(rcmoe_dedup_encode(in, 68, 16, s.p, rcmoe_dedup_bound(68, 16), &s.len, NULL),
		     RCMOE_OK);
	s.out = 68;
	uint8_t *pl = s.p + 64;
	cr_assert_eq(get32(pl, 8), 0u, "block 2 refers to literal 0");
	cr_assert_eq(validate(&s), RCMOE_OK);
	put32(pl, 8, 3); /* reference to a literal not yet seen */
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	put32(pl, 8, 0);
	put32(pl, 16, 0); /* the short tail block as a reference */
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	put32(pl, 16, 3);
	pl[20] = 1; /* table padding */
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	pl[20] = 0;
	put32(pl, 8, 2); /* block 2 claims to be a new literal: lengths no longer add up */
	put32(pl, 12, 3);
	put32(pl, 16, 4);
	cr_assert_eq(validate(&s), RCMOE_ERR_MALFORMED);
	free(s.p);
}

/* Random mutations of valid streams of every codec: bit flips, byte stores, truncation,
 * extension, splices; half of them with the header check word re-sealed so the payload checks
 * are reached. Invariants (in rcmoe_fuzz_one): no out-of-bounds access (ASan), every stream that
 * validates decodes. */
Test(stream_format, random_mutations, .timeout = 300)
{
	struct tu_rng r = { 77 };
	struct stream seeds[9];
	seeds[0] = make_lsq(700, RCMOE_DT_BF16, 8, 32, 1);
	seeds[1] = make_lsq(300, RCMOE_DT_FP16, 2, 64, 2);
	seeds[2] = make_lsq(257, RCMOE_DT_FP32, 4, 128, 3);
	seeds[3] = make_pts(2500, RCMOE_DT_FP32, 0.02, 4);
	seeds[4] = make_pts(3000, RCMOE_DT_BF16, 0.4, 5);
	seeds[5] = make_pts(1100, RCMOE_DT_FP16, 0.1, 6);
	seeds[6] = make_dedup(1000, 16, 7);
	seeds[7] = make_dedup(333 * 4, 20, 8);
	seeds[8] = make_pts(1500, RCMOE_DT_FP32, 1.0, 9);
	size_t iters = 200000, ok = 0;
	uint8_t *buf = malloc(1 << 16);
	for (size_t it = 0; it < iters; it++) {
		const struct stream *s = &seeds[tu_u64(&r) % 9];
		size_t len = s->len;
		memcpy(buf + 1, s->p, len);
		int nmut = 1 + (int)(tu_u64(&r) % 4);
		for (int k = 0; k < nmut; k++) {
			size_t pos = (size_t)(tu_u64(&r) % (len ? len : 1));
			switch (tu_u64(&r) % 6) {
			case 0: buf[1 + pos] ^= (uint8_t)(1u << (tu_u64(&r) % 8)); break;
			case 1: buf[1 + pos] = (uint8_t)tu_u64(&r); break;
			case 2: /* interesting values at word boundaries */
				put32(buf + 1, (pos & ~(size_t)3) + 4 <= len ? pos & ~(size_t)3 : 0,
				      (uint32_t[]){ 0, 1, 0xffffffffu, 0x7fffffffu, 0x80000000u,
						    0xffff, 0x10000 }[tu_u64(&r) % 7]);
				break;
			case 3: len = pos; break;
			case 4:
				if (len + 16 < (1 << 16) - 1) {
					memset(buf + 1 + len, (int)(tu_u64(&r) & 0xff), 16);
					len += 16;
				}
				break;
			default: { /* copy a range onto another */
				size_t from = (size_t)(tu_u64(&r) % (len ? len : 1));
				size_t n = (size_t)(tu_u64(&r) % 64);
				if (from + n <= len && pos + n <= len)
					memmove(buf + 1 + pos, buf + 1 + from, n);
				break;
			}
			}
		}
		buf[0] = (uint8_t)(tu_u64(&r) & 1);
		ok += rcmoe_fuzz_one(buf, len + 1) == RCMOE_OK;
	}
	/* unmutated seeds must pass */
	for (int i = 0; i < 9; i++) {
		buf[0] = 0;
		memcpy(buf + 1, seeds[i].p, seeds[i].len);
		cr_assert_eq(rcmoe_fuzz_one(buf, seeds[i].len + 1), RCMOE_OK, "seed %d", i);
		free(seeds[i].p);
	}
	cr_log_info("%zu of %zu mutated streams still valid", ok, iters);
	free(buf);
}
