/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Window dedup, CPU reference (kernels/wdedup.c): one all-to-all operation to one peer cut into
 * steps (messages), rows duplicated at random distances, encoded against the sender's window and
 * decoded against the receiver's, as the plugin does (a stream that is not shorter than the raw
 * bytes goes raw and neither window records it). Round trips are exact; duplicates are found
 * across step boundaries; a duplicate whose first copy left the window is sent again; composed
 * with LSQ a duplicated row decodes to exactly its first copy's values; malformed references are
 * refused with nothing decoded and the window unchanged.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/codec.h"
#include "rcmoe/wdedup.h"
#include "codec_internal.h"
#include "codec_test_util.h"
#include "test_log.h"

TestSuite(wdedup, .init = test_log_init);

/* Both ends of one connection, and what crossed it. */
struct link {
	struct rcmoe_wdedup_tx tx;
	struct rcmoe_wdedup_rx rx;
	uint64_t blocks, duplicates, wire, messages, committed;
};

static void link_init(struct link *l, uint64_t window, uint32_t min_block)
{
	memset(l, 0, sizeof(*l));
	cr_assert_eq(rcmoe_wdedup_tx_init(&l->tx, window, min_block), RCMOE_OK);
	cr_assert_eq(rcmoe_wdedup_rx_init(&l->rx, window, min_block), RCMOE_OK);
}

static void link_free(struct link *l)
{
	rcmoe_wdedup_tx_free(&l->tx);
	rcmoe_wdedup_rx_free(&l->rx);
}

/* One message: encode; a committed stream is decoded into dst, else the raw bytes arrive.
 * Returns the stream (caller frees) when committed, else NULL. */
static uint8_t *link_send(struct link *l, const struct rcmoe_wdedup_cfg *cfg, const uint8_t *src,
			  size_t bytes, uint8_t *dst)
{
	size_t cap = rcmoe_wdedup_bound(bytes, cfg), len = 0, out = 0;
	cr_assert_gt(cap, 0u);
	uint8_t *s = malloc(cap);
	int committed = -1;
	cr_assert_eq(rcmoe_wdedup_encode(&l->tx, cfg, src, bytes, s, cap, &len, &committed),
		     RCMOE_OK);
	cr_assert_eq(committed, len < bytes, "committed %d for a %zu-byte stream of %zu bytes",
		     committed, len, bytes);
	l->messages++;
	if (!committed) {
		memcpy(dst, src, bytes);
		l->wire += bytes;
		free(s);
		return NULL;
	}
	const char *why = "?";
	rcmoe_status_t st = rcmoe_wdedup_decode(&l->rx, s, len, dst, bytes, NULL, 0, &out, &why);
	cr_assert_eq(st, RCMOE_OK, "decode: %s (%s)", rcmoe_status_str(st), why ? why : "-");
	cr_assert_eq(out, bytes);
	cr_assert_eq(l->rx.last_duplicates, l->tx.last_duplicates, "ends disagree on duplicates");
	cr_assert_eq(l->rx.count, l->tx.count, "windows out of step");
	l->blocks += l->tx.last_blocks;
	l->duplicates += l->tx.last_duplicates;
	l->wire += len;
	l->committed++;
	return s;
}

static uint32_t entry(const uint8_t *stream, size_t i)
{
	uint32_t e;
	memcpy(&e, stream + RCMOE_WIRE_HEADER_BYTES + RCMOE_WDEDUP_PREAMBLE_BYTES + 4 * i, 4);
	return e;
}

static uint64_t base_of(const uint8_t *stream)
{
	uint64_t b;
	memcpy(&b, stream + RCMOE_WIRE_HEADER_BYTES + 8, 8);
	return b;
}

static void set_entry(uint8_t *stream, size_t i, uint32_t e)
{
	memcpy(stream + RCMOE_WIRE_HEADER_BYTES + RCMOE_WDEDUP_PREAMBLE_BYTES + 4 * i, &e, 4);
}

static void fill_random(uint8_t *p, size_t n, struct tu_rng *r)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)tu_u64(r);
}

/* Rows of row_bytes: each row after the first is, with probability frac, a copy of an earlier
 * row at a random distance. Returns the number of duplicated rows; src_of[i] is the row copied
 * (i itself when not a copy). */
static size_t plant_rows(uint8_t *buf, size_t nrows, size_t row_bytes, double frac,
			 struct tu_rng *r, size_t *src_of)
{
	size_t dups = 0;
	src_of[0] = 0;
	for (size_t i = 1; i < nrows; i++) {
		src_of[i] = i;
		if (frac >= 1.0 || (frac > 0 && tu_uniform(r) < frac)) {
			size_t j = (size_t)(tu_u64(r) % i);
			memcpy(buf + i * row_bytes, buf + j * row_bytes, row_bytes);
			src_of[i] = src_of[j];
			dups++;
		}
	}
	return dups;
}

static struct rcmoe_wdedup_cfg lossless_cfg(uint64_t op, uint32_t bb)
{
	struct rcmoe_wdedup_cfg cfg = { .op = op, .op_id = op, .block_bytes = bb };
	return cfg;
}

/* One operation of nrows rows (2 blocks each) sent in steps of `step` bytes. */
static void fraction_roundtrip(double frac, unsigned seed)
{
	const uint32_t bb = 256;
	const size_t row = 2 * bb, nrows = 1024, bytes = nrows * row, step = 16 << 10;
	uint8_t *op = malloc(bytes), *got = malloc(bytes);
	size_t *src_of = malloc(nrows * sizeof(size_t));
	struct tu_rng r = { seed };
	fill_random(op, bytes, &r);
	size_t dup_rows = plant_rows(op, nrows, row, frac, &r, src_of);
	struct link l;
	link_init(&l, 8 << 20, 64);
	struct rcmoe_wdedup_cfg cfg = lossless_cfg(7, bb);
	memset(got, 0x5a, bytes);
	for (size_t off = 0; off < bytes; off += step) {
		cfg.op_id++;
		free(link_send(&l, &cfg, op + off, step, got + off));
	}
	cr_assert(!memcmp(op, got, bytes), "round trip not exact at %.0f%% duplicates", frac * 100);
	cr_log_info("wdedup %.0f%%: %zu duplicate rows planted, %llu duplicate blocks found, "
		    "%llu of %llu messages deduplicated, wire %.3f of the bytes",
		    frac * 100, dup_rows, (unsigned long long)l.duplicates,
		    (unsigned long long)l.committed, (unsigned long long)l.messages,
		    (double)l.wire / bytes);
	cr_assert_leq(l.duplicates, 2 * dup_rows, "more duplicates found than planted");
	if (frac == 0) {
		cr_assert_eq(l.committed, 0u, "nothing to gain, yet a stream was sent");
		cr_assert_eq(l.wire, bytes);
	} else if (frac >= 0.5) {
		/* every step then gains, so every planted copy is found */
		cr_assert_eq(l.committed, l.messages);
		cr_assert_eq(l.duplicates, 2 * dup_rows);
		cr_assert_lt(l.wire, bytes - 2 * dup_rows * bb + l.messages * 400);
	} else {
		cr_assert_geq(l.duplicates, 2 * dup_rows * 8 / 10, "too few duplicates found");
	}
	link_free(&l);
	free(src_of);
	free(got);
	free(op);
}

Test(wdedup, roundtrip_0_percent)
{
	fraction_roundtrip(0.0, 101);
}

Test(wdedup, roundtrip_10_percent)
{
	fraction_roundtrip(0.1, 102);
}

Test(wdedup, roundtrip_50_percent)
{
	fraction_roundtrip(0.5, 103);
}

Test(wdedup, roundtrip_100_percent)
{
	fraction_roundtrip(1.0, 104);
}

/* Blocks 100..127 of a 128-block step copy its block 0: the step gains and is committed. */
static void step_with_own_copies(uint8_t *m, uint32_t bb, struct tu_rng *r)
{
	fill_random(m, 128 * (size_t)bb, r);
	for (int b = 100; b < 128; b++)
		memcpy(m + (size_t)b * bb, m, bb);
}

Test(wdedup, across_step_boundaries)
{
	const uint32_t bb = 256;
	const size_t nb = 128, bytes = nb * bb;
	uint8_t *a = malloc(bytes), *b = malloc(bytes), *got = malloc(bytes);
	struct tu_rng r = { 7 };
	struct link l;
	link_init(&l, 4 << 20, 64);
	struct rcmoe_wdedup_cfg cfg = lossless_cfg(1, bb);
	step_with_own_copies(a, bb, &r);
	uint8_t *s = link_send(&l, &cfg, a, bytes, got);
	cr_assert(s, "first step not deduplicated");
	cr_assert_eq(l.tx.count, 100u);
	free(s);
	step_with_own_copies(b, bb, &r);
	memcpy(b + 10 * bb, a + 5 * bb, bb);
	memcpy(b + 20 * bb, a + 5 * bb, bb);
	memcpy(b + 30 * bb, a + 99 * bb, bb);
	cfg.op_id++;
	s = link_send(&l, &cfg, b, bytes, got);
	cr_assert(s);
	cr_assert(!memcmp(got, b, bytes));
	cr_assert_eq(base_of(s), 100u);
	cr_assert_eq(entry(s, 10), 5u, "not a reference into the previous step");
	cr_assert_eq(entry(s, 20), 5u);
	cr_assert_eq(entry(s, 30), 99u);
	cr_assert_eq(entry(s, 0), 100u, "block 0 is the step's first literal");
	cr_assert_eq(entry(s, 101), 100u);
	free(s);

	/* another operation starts a new epoch: the same copies are literals again */
	cfg.op = 2;
	cfg.op_id++;
	s = link_send(&l, &cfg, b, bytes, got);
	cr_assert(s);
	cr_assert(!memcmp(got, b, bytes));
	cr_assert_eq(base_of(s), 0u);
	cr_assert_eq(entry(s, 10), 10u, "a reference crossed operations");
	cr_assert_eq(l.tx.last_duplicates, 28u + 1, "block 20 still copies block 10");
	free(s);
	link_free(&l);
	free(a);
	free(b);
	free(got);
}

Test(wdedup, window_overflow_sends_the_block_again)
{
	const uint32_t bb = 256;
	const size_t nb = 128, bytes = nb * bb;
	uint8_t *m[4], *got = malloc(bytes);
	struct tu_rng r = { 8 };
	struct link l;
	link_init(&l, 64 << 10, 64); /* 256 blocks */
	struct rcmoe_wdedup_cfg cfg = lossless_cfg(3, bb);
	for (int k = 0; k < 4; k++) {
		m[k] = malloc(bytes);
		step_with_own_copies(m[k], bb, &r);
	}
	/* when step 3 starts (count 300): literal 50 is held for every block of it, literal 40
	 * for none (40 + 256 < 300), literal 45 for block 0 only (45 + 256 >= 300 + i): its
	 * copy at block 9 is a literal again (by then the receiver has numbered 307) */
	memcpy(m[3] + 5 * bb, m[0] + 50 * bb, bb);
	memcpy(m[3] + 7 * bb, m[0] + 40 * bb, bb);
	memcpy(m[3] + 0 * bb, m[0] + 45 * bb, bb);
	memcpy(m[3] + 9 * bb, m[0] + 45 * bb, bb);
	uint8_t *s = NULL;
	for (int k = 0; k < 4; k++) {
		free(s);
		cfg.op_id++;
		s = link_send(&l, &cfg, m[k], bytes, got);
		cr_assert(s);
		cr_assert(!memcmp(got, m[k], bytes), "step %d not exact", k);
	}
	cr_assert_eq(base_of(s), 300u);
	cr_assert_eq(entry(s, 5), 50u, "a block the receiver holds was sent again");
	/* literals before block 7: blocks 1-4 and 6 */
	cr_assert_eq(entry(s, 7), 305u, "a block the receiver no longer holds was referenced");
	cr_assert_eq(entry(s, 0), 45u);
	cr_assert_eq(entry(s, 9), 307u, "a block out of the window was referenced");
	free(s);
	for (int k = 0; k < 4; k++)
		free(m[k]);
	link_free(&l);
	free(got);
}

static void lsq_composed(int bits)
{
	const int dtype = RCMOE_DT_BF16;
	const uint32_t block = 128, bb = block * 2;
	const size_t row = 4 * bb, nrows = 512, bytes = nrows * row, step = 32 << 10;
	uint8_t *op = malloc(bytes), *got = malloc(bytes);
	size_t *src_of = malloc(nrows * sizeof(size_t));
	struct tu_rng r = { (uint64_t)bits };
	tu_fill(dtype, op, bytes / 2, TU_GAUSS, &r);
	size_t dup_rows = plant_rows(op, nrows, row, 0.3, &r, src_of);
	struct link l;
	link_init(&l, 8 << 20, 64);
	struct rcmoe_wdedup_cfg cfg = { .op = 9, .block_bytes = bb };
	cfg.lsq = (struct rcmoe_lsq_cfg){ .dtype = dtype, .bits = bits, .block = block, .seed = 5 };
	for (size_t off = 0; off < bytes; off += step) {
		cfg.op_id++;
		cfg.lsq.op_id = cfg.op_id;
		uint8_t *s = link_send(&l, &cfg, op + off, step, got + off);
		cr_assert(s, "an LSQ step went raw");
		free(s);
	}
	cr_assert_eq(l.duplicates, 4 * dup_rows);
	size_t bad = tu_lsq_out_of_bound(op, got, bytes / 2, dtype, bits, block);
	cr_assert_eq(bad, 0u, "%zu elements outside the LSQ bound", bad);
	cr_assert_neq(memcmp(op, got, bytes), 0, "arrived exact: not quantized");
	for (size_t i = 0; i < nrows; i++)
		cr_assert(!memcmp(got + i * row, got + src_of[i] * row, row),
			  "row %zu decodes unlike its first copy, row %zu (%d bits)", i, src_of[i],
			  bits);
	cr_log_info("wdedup+LSQ %d bits: %zu of %zu rows duplicate, ratio %.2f", bits, dup_rows,
		    nrows, (double)bytes / l.wire);
	link_free(&l);
	free(src_of);
	free(got);
	free(op);
}

Test(wdedup, lsq_8_bits)
{
	lsq_composed(8);
}

Test(wdedup, lsq_4_bits)
{
	lsq_composed(4);
}

Test(wdedup, lsq_2_bits)
{
	lsq_composed(2);
}

/* Decoding a corrupted stream: refused, nothing written, the window unchanged. */
static void expect_refused(struct link *l, const uint8_t *s, size_t len, size_t bytes,
			   const char *why_part)
{
	uint8_t *dst = malloc(bytes), *before = malloc(l->rx.window_bytes);
	memset(dst, 0xa5, bytes);
	uint64_t count = l->rx.count, epoch = l->rx.epoch;
	memcpy(before, l->rx.ring, l->rx.window_bytes);
	const char *why = NULL;
	size_t out = 0;
	rcmoe_status_t st = rcmoe_wdedup_decode(&l->rx, s, len, dst, bytes, NULL, 0, &out, &why);
	cr_assert_eq(st, RCMOE_ERR_MALFORMED, "accepted (%s): %s", why_part, rcmoe_status_str(st));
	cr_assert(why && strstr(why, why_part), "refused for \"%s\", not %s", why ? why : "-",
		  why_part);
	for (size_t i = 0; i < bytes; i++)
		cr_assert_eq(dst[i], 0xa5, "byte %zu written by a refused decode", i);
	cr_assert_eq(l->rx.count, count);
	cr_assert_eq(l->rx.epoch, epoch);
	cr_assert(!memcmp(before, l->rx.ring, l->rx.window_bytes), "window changed");
	free(before);
	free(dst);
}

/* Encode with the link's sender and with a twin sender that sees the same history. */
static void send_twice(struct link *l, struct rcmoe_wdedup_tx *twin,
		       const struct rcmoe_wdedup_cfg *cfg, const uint8_t *m, size_t bytes,
		       uint8_t *got)
{
	size_t cap = rcmoe_wdedup_bound(bytes, cfg), len;
	uint8_t *s = malloc(cap);
	int committed;
	cr_assert_eq(rcmoe_wdedup_encode(twin, cfg, m, bytes, s, cap, &len, &committed), RCMOE_OK);
	free(s);
	free(link_send(l, cfg, m, bytes, got));
	cr_assert_eq(twin->count, l->tx.count);
}

Test(wdedup, malformed_references_refused)
{
	const uint32_t bb = 256;
	const size_t nb = 128, bytes = nb * bb;
	uint8_t *m = malloc(bytes), *got = malloc(bytes);
	struct tu_rng r = { 9 };
	struct link l;
	struct rcmoe_wdedup_tx twin;
	link_init(&l, 64 << 10, 64); /* 256 blocks */
	cr_assert_eq(rcmoe_wdedup_tx_init(&twin, 64 << 10, 64), RCMOE_OK);
	struct rcmoe_wdedup_cfg cfg = lossless_cfg(4, bb);
	/* step 0 ends with a 156-byte block: literals 0..99, then the tail as literal 100 */
	step_with_own_copies(m, bb, &r);
	cfg.op_id++;
	send_twice(&l, &twin, &cfg, m, bytes - 100, got);
	cr_assert_eq(l.rx.count, 101u);
	for (int k = 1; k < 3; k++) { /* to 301 literals: literal 40 leaves the window */
		step_with_own_copies(m, bb, &r);
		cfg.op_id++;
		send_twice(&l, &twin, &cfg, m, bytes, got);
	}
	cr_assert_eq(l.rx.count, 301u);

	/* the next step, a valid stream from the twin (the link's sender never sent it) */
	step_with_own_copies(m, bb, &r);
	size_t cap = rcmoe_wdedup_bound(bytes, &cfg), len;
	uint8_t *s = malloc(cap), *bad = malloc(cap);
	int committed;
	cfg.op_id++;
	cr_assert_eq(rcmoe_wdedup_encode(&twin, &cfg, m, bytes, s, cap, &len, &committed),
		     RCMOE_OK);
	cr_assert(committed);
	cr_assert_eq(entry(s, 0), 301u);

	/* forward: block 0 names literal 302 before 301 exists */
	memcpy(bad, s, len);
	set_entry(bad, 0, 302);
	expect_refused(&l, bad, len, bytes, "forward");
	/* out of the window: literal 40 is gone (40 + 256 < 302) */
	memcpy(bad, s, len);
	set_entry(bad, 1, 40);
	expect_refused(&l, bad, len, bytes, "out of the window");
	/* wrong length: literal 100 is step 0's 156-byte tail; block 1 is 256 bytes */
	memcpy(bad, s, len);
	set_entry(bad, 1, 100);
	expect_refused(&l, bad, len, bytes, "another length");
	/* out of step: the base does not match the window's count */
	memcpy(bad, s, len);
	uint64_t wrong_base = 300;
	memcpy(bad + RCMOE_WIRE_HEADER_BYTES + 8, &wrong_base, 8);
	expect_refused(&l, bad, len, bytes, "out of step");

	/* and the intact stream still decodes, exactly */
	size_t out = 0;
	cr_assert_eq(rcmoe_wdedup_decode(&l.rx, s, len, got, bytes, NULL, 0, &out, NULL), RCMOE_OK);
	cr_assert(!memcmp(got, m, bytes));
	/* the generic entry points refuse what needs a window */
	cr_assert_eq(rcmoe_codec_validate(s, len, bytes, NULL), RCMOE_ERR_UNSUPPORTED);
	cr_assert_eq(rcmoe_codec_decode(s, len, got, bytes, &out), RCMOE_ERR_UNSUPPORTED);
	cr_assert_eq(rcmoe_codec_validate(s, len, bytes - 1, NULL), RCMOE_ERR_OVERFLOW);
	free(s);
	free(bad);
	free(m);
	free(got);
	rcmoe_wdedup_tx_free(&twin);
	link_free(&l);
}

Test(wdedup, config_checks)
{
	struct rcmoe_wdedup_tx tx;
	struct rcmoe_wdedup_rx rx;
	cr_assert_eq(rcmoe_wdedup_tx_init(&tx, 1024, 64), RCMOE_ERR_INVALID, "window too small");
	cr_assert_eq(rcmoe_wdedup_rx_init(&rx, 1 << 20, 18), RCMOE_ERR_INVALID);
	struct rcmoe_wdedup_cfg cfg = lossless_cfg(1, 18);
	cr_assert_eq(rcmoe_wdedup_bound(4096, &cfg), 0u);
	cfg = (struct rcmoe_wdedup_cfg){ .block_bytes = 256 };
	cfg.lsq = (struct rcmoe_lsq_cfg){ .dtype = RCMOE_DT_FP32, .bits = 8, .block = 128 };
	cr_assert_eq(rcmoe_wdedup_bound(4096, &cfg), 0u, "LSQ block must be the dedup block");
	cfg.lsq.dtype = RCMOE_DT_BF16;
	cr_assert_gt(rcmoe_wdedup_bound(4096, &cfg), 4096u);
	cr_assert_eq(rcmoe_wdedup_bound(4095, &cfg), 0u, "not whole elements");
	/* a block smaller than the window was made for is refused, not read past its tables */
	cr_assert_eq(rcmoe_wdedup_tx_init(&tx, 1 << 20, 256), RCMOE_OK);
	uint8_t in[4096] = { 0 }, out[8192];
	size_t len;
	int committed;
	cfg = lossless_cfg(1, 64);
	cr_assert_eq(
		rcmoe_wdedup_encode(&tx, &cfg, in, sizeof(in), out, sizeof(out), &len, &committed),
		RCMOE_ERR_INVALID);
	cfg.block_bytes = 256;
	cr_assert_eq(rcmoe_wdedup_encode(&tx, &cfg, in, sizeof(in), out, 100, &len, &committed),
		     RCMOE_ERR_OVERFLOW);
	cr_assert_eq(
		rcmoe_wdedup_encode(&tx, &cfg, in, sizeof(in), out, sizeof(out), &len, &committed),
		RCMOE_OK);
	cr_assert(committed, "16 identical blocks should gain");
	cr_assert_eq(tx.last_duplicates, 15u);
	cr_assert_eq(rcmoe_wdedup_rx_init(&rx, 1 << 20, 512), RCMOE_OK);
	const char *why = NULL;
	cr_assert_eq(rcmoe_wdedup_validate(&rx, out, len, sizeof(in), NULL, &why),
		     RCMOE_ERR_MALFORMED);
	cr_assert(why && strstr(why, "block size"));
	rcmoe_wdedup_rx_free(&rx);
	rcmoe_wdedup_tx_free(&tx);
}

/* The sender's block hash, whose word loop is built for the baseline and for AVX2, against its
 * definition word by word (every block size a multiple of 4 up to 4 KiB, odd offsets): the GPU
 * encoder hashes the same way, and the two must agree for their streams to (docs/stream-format.md:
 * a hash collision decides which candidate is compared). */
static void block_hash_matches_definition(void)
{
	static uint8_t buf[8192 + 64];
	struct tu_rng r = { 99 };
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)tu_u64(&r);
	for (uint32_t bb = 4; bb <= 4096; bb += 4)
		for (size_t off = 0; off < 64; off += 13) {
			const uint8_t *p = buf + off;
			uint64_t sum = 0;
			for (uint64_t i = 0; i < (bb + 7) / 8; i++) {
				uint64_t w = rcmoe_ld32(p + 8 * i);
				if (8 * i + 4 < bb)
					w |= (uint64_t)rcmoe_ld32(p + 8 * i + 4) << 32;
				sum += rcmoe_dedup_word_hash(w, i);
			}
			uint64_t want = rcmoe_dedup_final_hash(sum, bb);
			cr_assert_eq(rcmoe_wdedup_block_hash(p, bb), want,
				     "block of %u bytes at offset %zu", bb, off);
		}
}

Test(wdedup, block_hash_portable_build)
{
	cr_assert(rcmoe_cpu_set_isa(RCMOE_CPU_ISA_PORTABLE));
	block_hash_matches_definition();
}

Test(wdedup, block_hash_avx2_build)
{
	if (!rcmoe_cpu_set_isa(RCMOE_CPU_ISA_AVX2))
		cr_skip_test("this CPU (or a non-x86-64 build) has no AVX2: the portable build "
			     "is the one that runs here");
	block_hash_matches_definition();
}

Test(wdedup, block_hash_avx512_build)
{
	if (!rcmoe_cpu_set_isa(RCMOE_CPU_ISA_AVX512))
		cr_skip_test("this CPU (or a non-x86-64 build) has no AVX-512 (F, BW, VL, DQ): "
			     "a narrower build is the one that runs here");
	block_hash_matches_definition();
}
