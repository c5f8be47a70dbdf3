/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GPU codecs against their CPU references, byte for byte: LSQ encode and decode, PTS encode and
 * ordered accumulation, dedup encode and decode, over random data (Gaussian, heavy-tailed, with
 * NaN/Inf/zero blocks), odd sizes, misaligned element buffers and many seeds. Every device output
 * is poisoned before each run, and decoders are checked not to write past their destination.
 * Each test skips (saying why) when no GPU is visible; CUDA is touched only inside the tests
 * (each runs in its own forked process), never in the runner.
 */
#include <criterion/criterion.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/codec.h"
#include "rcmoe/kernels.h"
#include "codec_internal.h" /* rcmoe_pts_l1, rcmoe_pts_tau: the reference's tau */
#include "codec_test_util.h"
#include "test_log.h"

#define POISON 0xa5
#define GUARD  256

#define CK(call)                                                                                   \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		cr_assert_eq(e_, cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_));            \
	} while (0)

static void gpu_init(void)
{
	int count = 0;
	test_log_init();
	if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
		cr_skip_test("no CUDA device visible (cudaGetDeviceCount: %d devices)", count);
}

TestSuite(gpu, .init = gpu_init, .timeout = 600);

static const int dtypes[] = { RCMOE_DT_BF16, RCMOE_DT_FP16, RCMOE_DT_FP32 };

/* Device scratch reused across the runs of one test. */
struct dev {
	uint8_t *in, *stream, *out, *work;
	size_t in_cap, stream_cap, out_cap, work_cap;
};

static void ensure(uint8_t **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return;
	if (*p)
		CK(cudaFree(*p));
	CK(cudaMalloc((void **)p, need + 64));
	*cap = need;
}

static void dev_free(struct dev *d)
{
	cudaFree(d->in);
	cudaFree(d->stream);
	cudaFree(d->out);
	cudaFree(d->work);
}

static uint64_t header_len(const uint8_t *d_stream)
{
	struct rcmoe_wire_header h;
	uint8_t hb[RCMOE_WIRE_HEADER_BYTES];
	CK(cudaMemcpy(hb, d_stream, sizeof(hb), cudaMemcpyDeviceToHost));
	cr_assert_eq(rcmoe_wire_parse(hb, sizeof(hb) + (1ull << 40), &h), RCMOE_OK,
		     "GPU header does not parse");
	return RCMOE_WIRE_HEADER_BYTES + h.payload_len;
}

/* Compare a device stream of len bytes with the host one. */
static void expect_same_stream(const uint8_t *d_stream, const uint8_t *ref, size_t ref_len,
			       const char *what)
{
	uint64_t len = header_len(d_stream);
	cr_assert_eq(len, ref_len, "%s: GPU stream %lu bytes, CPU %zu", what, (unsigned long)len,
		     ref_len);
	uint8_t *got = malloc(len);
	CK(cudaMemcpy(got, d_stream, len, cudaMemcpyDeviceToHost));
	for (size_t i = 0; i < len; i++)
		if (got[i] != ref[i])
			cr_assert_fail(
				"%s: first difference at byte %zu of %zu (GPU %02x CPU %02x)", what,
				i, len, got[i], ref[i]);
	free(got);
}

/* Decoded device bytes equal ref, and the guard after them still holds the poison. */
static void expect_same_output(const uint8_t *d_out, const uint8_t *ref, size_t bytes,
			       const char *what)
{
	uint8_t *got = malloc(bytes + GUARD);
	CK(cudaMemcpy(got, d_out, bytes + GUARD, cudaMemcpyDeviceToHost));
	for (size_t i = 0; i < bytes; i++)
		if (got[i] != ref[i])
			cr_assert_fail("%s: decode differs at byte %zu of %zu (GPU %02x CPU %02x)",
				       what, i, bytes, got[i], ref[i]);
	for (size_t i = bytes; i < bytes + GUARD; i++)
		cr_assert_eq(got[i], POISON, "%s: wrote past the destination (byte %zu)", what, i);
	free(got);
}

/* ---- LSQ ---- */

/* Device buffers for one case: the input (at an offset of misalign bytes) copied from the host,
 * the stream buffer and the scratch poisoned, so that a byte the kernel did not write cannot
 * match. */
static void stage_encode(struct dev *d, const void *host, size_t bytes, size_t cap, size_t wb,
			 size_t misalign)
{
	ensure(&d->in, &d->in_cap, bytes + misalign);
	ensure(&d->stream, &d->stream_cap, cap);
	ensure(&d->out, &d->out_cap, bytes + GUARD + misalign);
	ensure(&d->work, &d->work_cap, wb);
	CK(cudaMemcpy(d->in + misalign, host, bytes, cudaMemcpyHostToDevice));
	CK(cudaMemset(d->stream, POISON, cap));
	CK(cudaMemset(d->work, POISON, wb));
}

/* The CPU stream ref decoded on the GPU into a poisoned output must equal the CPU decode dec. */
static void expect_gpu_decode(struct dev *d, const uint8_t *ref, size_t len, const uint8_t *dec,
			      size_t bytes, size_t misalign, const char *what)
{
	struct rcmoe_wire_header h;
	cr_assert_eq(rcmoe_codec_validate(ref, len, bytes, &h), RCMOE_OK);
	size_t dwb = rcmoe_gpu_decode_work_bytes(&h);
	ensure(&d->work, &d->work_cap, dwb);
	CK(cudaMemcpy(d->stream, ref, len, cudaMemcpyHostToDevice));
	CK(cudaMemset(d->out, POISON, bytes + GUARD + misalign));
	CK(cudaMemset(d->work, POISON, dwb));
	cr_assert_eq(rcmoe_gpu_decode(d->stream, &h, d->out + misalign, bytes, d->work, dwb, 0),
		     RCMOE_OK, "%s", what);
	CK(cudaDeviceSynchronize());
	expect_same_output(d->out + misalign, dec, bytes, what);
}

static void lsq_case(struct dev *d, const void *host, size_t n, const struct rcmoe_lsq_cfg *cfg,
		     size_t misalign)
{
	char what[160];
	size_t es = rcmoe_dtype_size(cfg->dtype), cap = rcmoe_lsq_bound(n, cfg), len, ob;
	snprintf(what, sizeof(what), "lsq dtype %d bits %d B %u n %zu seed %lu off %zu", cfg->dtype,
		 cfg->bits, cfg->block, n, (unsigned long)cfg->seed, misalign);
	uint8_t *ref = malloc(cap), *dec = malloc(n * es + 1);
	cr_assert_eq(rcmoe_lsq_encode(host, n, cfg, ref, cap, &len), RCMOE_OK);
	cr_assert_eq(rcmoe_codec_decode(ref, len, dec, n * es, &ob), RCMOE_OK);

	size_t wb = rcmoe_gpu_lsq_work_bytes(n, cfg);
	stage_encode(d, host, n * es, cap, wb, misalign);
	cr_assert_eq(rcmoe_gpu_lsq_encode(d->in + misalign, n, cfg, d->stream, cap, d->work, wb, 0),
		     RCMOE_OK, "%s", what);
	CK(cudaDeviceSynchronize());
	expect_same_stream(d->stream, ref, len, what);
	expect_gpu_decode(d, ref, len, dec, n * es, misalign, what);
	free(ref);
	free(dec);
}

Test(gpu, lsq_bytes_equal_cpu)
{
	static const uint32_t blocks[] = { 32, 64, 128, 256, 512, 1024 };
	static const size_t sizes[] = { 0, 1, 7, 33, 1000, 8191, 8192, 8193, 40000, 262147 };
	static const enum tu_data kinds[] = { TU_GAUSS, TU_HEAVY, TU_SPECIALS, TU_CONSTANT };
	static const int bitss[] = { 8, 4, 2 };
	struct dev d = { 0 };
	struct tu_rng r = { 101 };
	size_t runs = 0;
	void *host = malloc(262147 * 4);
	for (int di = 0; di < 3; di++)
		for (int bi = 0; bi < 3; bi++)
			for (int k = 0; k < 6; k++)
				for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
					size_t n = sizes[s];
					struct rcmoe_lsq_cfg cfg = { .dtype = dtypes[di],
								     .bits = bitss[bi],
								     .block = blocks[k],
								     .seed = tu_u64(&r),
								     .op_id = runs,
								     .rank = (uint32_t)(runs % 7) };
					tu_fill(cfg.dtype, host, n, kinds[runs % 4], &r);
					/* every third run with element buffers off 16-byte
					 * alignment */
					size_t mis =
						runs % 3 == 2 ? rcmoe_dtype_size(cfg.dtype) : 0;
					lsq_case(&d, host, n, &cfg, mis);
					runs++;
				}
	cr_log_info("%zu LSQ configurations byte-identical", runs);
	free(host);
	dev_free(&d);
}

/* Many tiles: exercises the look-back chain (128 Mi elements of bf16 would be 256 MiB; 24 Mi
 * elements give 3072 tiles of 8192) with both 16-bit types, large and small blocks (with 8-bit
 * codes a lane holds two halves 4 G elements apart, G = the 4 to 32 lanes of a block), a short
 * last tile and a source off 16-byte alignment (per-element loads). */
Test(gpu, lsq_many_tiles)
{
	static const struct {
		int dtype, bits;
		uint32_t block;
		size_t extra, mis;
	} runs[] = {
		{ RCMOE_DT_BF16, 8, 128, 0, 0 },    { RCMOE_DT_BF16, 4, 128, 0, 0 },
		{ RCMOE_DT_FP16, 2, 1024, 77, 0 },  { RCMOE_DT_FP16, 8, 32, 4099, 2 },
		{ RCMOE_DT_BF16, 4, 256, 8191, 2 },
	};
	const size_t n = 24u << 20;
	struct dev d = { 0 };
	struct tu_rng r = { 102 };
	uint16_t *host = malloc((n + 8192) * 2);
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		struct rcmoe_lsq_cfg cfg = { .dtype = runs[i].dtype,
					     .bits = runs[i].bits,
					     .block = runs[i].block,
					     .seed = 5 + i,
					     .op_id = i };
		tu_fill(cfg.dtype, host, n + runs[i].extra, TU_SPECIALS, &r);
		lsq_case(&d, host, n + runs[i].extra, &cfg, runs[i].mis);
	}
	free(host);
	dev_free(&d);
}

/* rcmoe_gpu_lsq_encode_many: several streams (odd lengths, misaligned sources, different
 * blocks and seeds, NaN/Inf/zero blocks) in one launch, each byte for byte the stream the CPU
 * encoder gives it alone; the bytes between the streams keep their poison. */
Test(gpu, lsq_encode_many_equals_cpu_per_stream)
{
	static const size_t lens[] = { 1, 8191, 8193, 40000, 262147, 7, 65536, 33 };
	struct tu_rng r = { 77 };
	for (int round = 0; round < 12; round++) {
		int dtype = dtypes[round % 3], bits = round % 4 == 3 ? 2 : round % 2 ? 4 : 8;
		int nseg = 1 + round % RCMOE_GPU_LSQ_MAX_SEGS;
		size_t es = rcmoe_dtype_size(dtype), in_off[RCMOE_GPU_LSQ_MAX_SEGS];
		size_t out_off[RCMOE_GPU_LSQ_MAX_SEGS + 1], in_total = 0;
		struct rcmoe_gpu_lsq_seg segs[RCMOE_GPU_LSQ_MAX_SEGS];
		out_off[0] = 0;
		for (int s = 0; s < nseg; s++) {
			segs[s].n = lens[(round + s) % 8];
			segs[s].cfg = (struct rcmoe_lsq_cfg){ .dtype = dtype,
							      .bits = bits,
							      .block = 32u << ((round + s) % 6),
							      .seed = 100 + (uint64_t)round,
							      .op_id = (uint64_t)s,
							      .rank = (uint32_t)(round % 3) };
			in_off[s] = in_total + (s % 2) * es; /* odd segments misaligned */
			in_total = in_off[s] + segs[s].n * es;
			segs[s].cap = rcmoe_lsq_bound(segs[s].n, &segs[s].cfg);
			out_off[s + 1] = (out_off[s] + segs[s].cap + 64 + 15) / 16 * 16;
		}
		uint8_t *host = malloc(in_total), *ref = malloc(out_off[nseg]);
		uint8_t *got = malloc(out_off[nseg]);
		tu_fill(dtype, host, in_total / es, TU_SPECIALS, &r);
		uint8_t *d_in, *d_out, *d_work;
		size_t wb = rcmoe_gpu_lsq_encode_many_work_bytes(segs, nseg);
		cr_assert_gt(wb, 0);
		CK(cudaMalloc((void **)&d_in, in_total));
		CK(cudaMalloc((void **)&d_out, out_off[nseg]));
		CK(cudaMalloc((void **)&d_work, wb));
		CK(cudaMemcpy(d_in, host, in_total, cudaMemcpyHostToDevice));
		CK(cudaMemset(d_out, POISON, out_off[nseg]));
		CK(cudaMemset(d_work, POISON, wb));
		for (int s = 0; s < nseg; s++) {
			segs[s].src = d_in + in_off[s];
			segs[s].dst = d_out + out_off[s];
		}
		cr_assert_eq(rcmoe_gpu_lsq_encode_many(segs, nseg, d_work, wb, 0), RCMOE_OK,
			     "round %d", round);
		CK(cudaDeviceSynchronize());
		CK(cudaMemcpy(got, d_out, out_off[nseg], cudaMemcpyDeviceToHost));
		for (int s = 0; s < nseg; s++) {
			size_t len;
			char what[160];
			snprintf(what, sizeof(what),
				 "encode_many round %d stream %d of %d (dtype %d bits %d B %u n "
				 "%zu)",
				 round, s, nseg, dtype, bits, segs[s].cfg.block, segs[s].n);
			cr_assert_eq(rcmoe_lsq_encode(host + in_off[s], segs[s].n, &segs[s].cfg,
						      ref, segs[s].cap, &len),
				     RCMOE_OK);
			expect_same_stream(d_out + out_off[s], ref, len, what);
			for (size_t i = out_off[s] + len; i < out_off[s + 1]; i++)
				cr_assert_eq(got[i], POISON, "%s: wrote past its stream (byte %zu)",
					     what, i - out_off[s]);
		}
		cudaFree(d_in);
		cudaFree(d_out);
		cudaFree(d_work);
		free(host);
		free(ref);
		free(got);
	}
}

/* rcmoe_gpu_lsq_decode_many: 1 to 8 CPU streams (odd lengths, every block size, NaN/Inf and
 * zero blocks) decoded in one launch into element-aligned, sometimes misaligned, destinations:
 * each equals the CPU decode, and nothing is written between them. Streams past 256 tiles,
 * empty ones, and mixed types or bit widths are refused. */
Test(gpu, lsq_decode_many_equals_cpu_per_stream)
{
	static const size_t lens[] = { 1, 8191, 8193, 40000, 262147, 7, 65536, 2097152 };
	struct tu_rng r = { 78 };
	for (int round = 0; round < 12; round++) {
		int dtype = dtypes[round % 3], bits = round % 4 == 3 ? 2 : round % 2 ? 4 : 8;
		int nseg = 1 + (round * 5) % RCMOE_GPU_LSQ_MAX_SEGS;
		size_t es = rcmoe_dtype_size(dtype), s_off[RCMOE_GPU_LSQ_MAX_SEGS + 1];
		size_t o_off[RCMOE_GPU_LSQ_MAX_SEGS + 1], in_max = 0;
		struct rcmoe_gpu_lsq_dec d[RCMOE_GPU_LSQ_MAX_SEGS];
		struct rcmoe_lsq_cfg cfg[RCMOE_GPU_LSQ_MAX_SEGS];
		size_t n[RCMOE_GPU_LSQ_MAX_SEGS];
		s_off[0] = o_off[0] = 0;
		for (int s = 0; s < nseg; s++) {
			n[s] = lens[(round + 3 * s) % 8];
			cfg[s] = (struct rcmoe_lsq_cfg){ .dtype = dtype,
							 .bits = bits,
							 .block = 32u << ((round + s) % 6),
							 .seed = 200 + (uint64_t)round,
							 .op_id = (uint64_t)s };
			s_off[s + 1] = (s_off[s] + rcmoe_lsq_bound(n[s], &cfg[s]) + 15) / 16 * 16;
			/* odd streams decode to an element-aligned, not 16-byte aligned, place */
			o_off[s + 1] = (o_off[s] + n[s] * es + GUARD + 15) / 16 * 16 + (s % 2) * es;
			in_max = n[s] > in_max ? n[s] : in_max;
		}
		uint8_t *host = malloc(in_max * es), *streams = malloc(s_off[nseg]);
		uint8_t *want = malloc(o_off[nseg]), *got = malloc(o_off[nseg]);
		memset(want, POISON, o_off[nseg]);
		uint8_t *d_s, *d_o;
		CK(cudaMalloc((void **)&d_s, s_off[nseg]));
		CK(cudaMalloc((void **)&d_o, o_off[nseg]));
		for (int s = 0; s < nseg; s++) {
			size_t len, ob;
			tu_fill(dtype, host, n[s], TU_SPECIALS, &r);
			cr_assert_eq(rcmoe_lsq_encode(host, n[s], &cfg[s], streams + s_off[s],
						      s_off[s + 1] - s_off[s], &len),
				     RCMOE_OK);
			cr_assert_eq(rcmoe_codec_decode(streams + s_off[s], len, want + o_off[s],
							n[s] * es, &ob),
				     RCMOE_OK);
			cr_assert_eq(
				rcmoe_codec_validate(streams + s_off[s], len, n[s] * es, &d[s].hdr),
				RCMOE_OK);
			cr_assert(rcmoe_gpu_lsq_decode_many_fits(&d[s].hdr), "n %zu fits", n[s]);
			d[s].src = d_s + s_off[s];
			d[s].dst = d_o + o_off[s];
			d[s].dst_bytes = n[s] * es;
		}
		CK(cudaMemcpy(d_s, streams, s_off[nseg], cudaMemcpyHostToDevice));
		CK(cudaMemset(d_o, POISON, o_off[nseg]));
		cr_assert_eq(rcmoe_gpu_lsq_decode_many(d, nseg, 0), RCMOE_OK, "round %d", round);
		CK(cudaDeviceSynchronize());
		CK(cudaMemcpy(got, d_o, o_off[nseg], cudaMemcpyDeviceToHost));
		for (size_t i = 0; i < o_off[nseg]; i++)
			if (got[i] != want[i])
				cr_assert_fail(
					"decode_many round %d (dtype %d bits %d, %d streams): "
					"byte %zu is %02x, want %02x",
					round, dtype, bits, nseg, i, got[i], want[i]);
		cudaFree(d_s);
		cudaFree(d_o);
		free(host);
		free(streams);
		free(want);
		free(got);
	}
	/* refusals */
	struct rcmoe_wire_header big = { .codec = RCMOE_CODEC_LSQ,
					 .dtype = RCMOE_DT_BF16,
					 .bits = 8,
					 .block = 32,
					 .count = 256ull * 8192 + 1 };
	cr_assert(!rcmoe_gpu_lsq_decode_many_fits(&big));
	big.count = 256ull * 8192;
	cr_assert(rcmoe_gpu_lsq_decode_many_fits(&big));
	big.count = 0;
	cr_assert(!rcmoe_gpu_lsq_decode_many_fits(&big));
	uint8_t *dd;
	CK(cudaMalloc((void **)&dd, 1 << 16));
	struct rcmoe_gpu_lsq_dec two[2] = {
		{ .src = dd, .hdr = big, .dst = dd + 4096, .dst_bytes = 4096 },
		{ .src = dd, .hdr = big, .dst = dd + 8192, .dst_bytes = 4096 },
	};
	two[0].hdr.count = two[1].hdr.count = 100;
	two[1].hdr.dtype = RCMOE_DT_FP32;
	cr_assert_eq(rcmoe_gpu_lsq_decode_many(two, 2, 0), RCMOE_ERR_INVALID);
	two[1].hdr.dtype = RCMOE_DT_BF16;
	two[1].hdr.bits = 4;
	cr_assert_eq(rcmoe_gpu_lsq_decode_many(two, 2, 0), RCMOE_ERR_INVALID);
	two[1].hdr.bits = 8;
	two[1].dst_bytes = 100;
	cr_assert_eq(rcmoe_gpu_lsq_decode_many(two, 2, 0), RCMOE_ERR_OVERFLOW);
	cr_assert_eq(rcmoe_gpu_lsq_decode_many(two, RCMOE_GPU_LSQ_MAX_SEGS + 1, 0),
		     RCMOE_ERR_INVALID);
	cudaFree(dd);
}

/* Streams of two dtypes, or more than RCMOE_GPU_LSQ_MAX_SEGS, are refused before any launch. */
Test(gpu, lsq_encode_many_refuses_mixed_streams)
{
	struct rcmoe_gpu_lsq_seg segs[RCMOE_GPU_LSQ_MAX_SEGS + 1];
	uint8_t *d;
	CK(cudaMalloc((void **)&d, 1 << 20));
	for (int s = 0; s <= RCMOE_GPU_LSQ_MAX_SEGS; s++)
		segs[s] = (struct rcmoe_gpu_lsq_seg){
			.src = d,
			.n = 100,
			.cfg = { .dtype = RCMOE_DT_BF16, .bits = 8, .block = 64 },
			.dst = d + 65536 * (s + 1),
			.cap = 65536,
		};
	cr_assert_eq(rcmoe_gpu_lsq_encode_many_work_bytes(segs, RCMOE_GPU_LSQ_MAX_SEGS + 1), 0);
	cr_assert_eq(rcmoe_gpu_lsq_encode_many(segs, RCMOE_GPU_LSQ_MAX_SEGS + 1, d, 4096, 0),
		     RCMOE_ERR_INVALID);
	segs[1].cfg.dtype = RCMOE_DT_FP32;
	cr_assert_eq(rcmoe_gpu_lsq_encode_many(segs, 2, d, 4096, 0), RCMOE_ERR_INVALID);
	segs[1].cfg.dtype = RCMOE_DT_BF16;
	segs[1].cfg.bits = 4;
	cr_assert_eq(rcmoe_gpu_lsq_encode_many(segs, 2, d, 4096, 0), RCMOE_ERR_INVALID);
	segs[1].cfg.bits = 8;
	cr_assert_eq(rcmoe_gpu_lsq_encode_many(segs, 2, d, 4096, 0), RCMOE_OK);
	CK(cudaDeviceSynchronize());
	cudaFree(d);
}

/* ---- PTS ---- */

static void pts_case(struct dev *d, const void *host, size_t n, const struct rcmoe_pts_cfg *cfg,
		     size_t misalign)
{
	char what[160];
	size_t es = rcmoe_dtype_size(cfg->dtype), cap = rcmoe_pts_bound(n, cfg), len, ob;
	snprintf(what, sizeof(what), "pts dtype %d rho %g chunk %u n %zu seed %lu off %zu",
		 cfg->dtype, cfg->density, cfg->chunk, n, (unsigned long)cfg->seed, misalign);
	uint8_t *ref = malloc(cap), *dec = malloc(n * es + 1);
	cr_assert_eq(rcmoe_pts_encode(host, n, cfg, ref, cap, &len), RCMOE_OK);
	cr_assert_eq(rcmoe_codec_decode(ref, len, dec, n * es, &ob), RCMOE_OK);

	size_t wb = rcmoe_gpu_pts_work_bytes(n, cfg);
	stage_encode(d, host, n * es, cap, wb, misalign);
	cr_assert_eq(rcmoe_gpu_pts_encode(d->in + misalign, n, cfg, d->stream, cap, d->work, wb, 0),
		     RCMOE_OK, "%s", what);
	CK(cudaDeviceSynchronize());
	expect_same_stream(d->stream, ref, len, what);
	expect_gpu_decode(d, ref, len, dec, n * es, misalign, what);
	free(ref);
	free(dec);
}

Test(gpu, pts_bytes_equal_cpu)
{
	static const double rhos[] = { 0.001, 0.01, 0.1, 0.5, 1.0 };
	static const uint32_t chunks[] = { 1024, 4096, 16384 };
	static const size_t sizes[] = { 0, 1, 100, 1025, 16384, 50001, 300007 };
	static const enum tu_data kinds[] = { TU_GAUSS, TU_HEAVY, TU_CONSTANT, TU_SPECIALS };
	struct dev d = { 0 };
	struct tu_rng r = { 103 };
	size_t runs = 0;
	void *host = malloc(300007 * 4);
	for (int di = 0; di < 3; di++)
		for (int ri = 0; ri < 5; ri++)
			for (int ci = 0; ci < 3; ci++)
				for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
					size_t n = sizes[s];
					struct rcmoe_pts_cfg cfg = { .dtype = dtypes[di],
								     .density = rhos[ri],
								     .seed = tu_u64(&r),
								     .op_id = runs,
								     .rank = (uint32_t)(runs % 5),
								     .chunk = chunks[ci] };
					/* SPECIALS (NaN: the dense form) in one run of eight */
					enum tu_data kind = kinds[runs % 8 == 7 ? 3 : runs % 3];
					tu_fill(cfg.dtype, host, n, kind, &r);
					if (runs % 11 == 5)
						memset(host, 0, n * 4); /* all zero: nothing kept */
					size_t mis =
						runs % 3 == 1 ? rcmoe_dtype_size(cfg.dtype) : 0;
					pts_case(&d, host, n, &cfg, mis);
					runs++;
				}
	cr_log_info("%zu PTS configurations byte-identical", runs);
	free(host);
	dev_free(&d);
}

/* A subnormal tau: elements are small multiples of the least subnormal (bits = k), so tau is
 * subnormal too and about 100 elements per run equal it; in fp32, fl(u * tau) then rounds up to
 * tau for 2-4 of them per run (counted on the CPU), which only the selection's exact form
 * (codec_math.h) keeps as the reference does. bf16 runs the exact form on a finer grid (its
 * subnormals are multiples of 2^-133); fp16 rounds tau up to a normal fp32 value. */
Test(gpu, pts_subnormal_tau_bytes_equal_cpu)
{
	static const int dts[] = { RCMOE_DT_BF16, RCMOE_DT_FP32 };
	struct dev d = { 0 };
	struct tu_rng r = { 105 };
	const size_t n = 100003;
	uint8_t *host = malloc(n * 4);
	for (int di = 0; di < 2; di++)
		for (int rep = 0; rep < 3; rep++) {
			size_t es = rcmoe_dtype_size(dts[di]);
			for (size_t i = 0; i < n; i++) {
				uint64_t v = tu_u64(&r);
				uint32_t k = v % 16 == 0 ? (uint32_t)(v >> 8) % 64
							 : 1 + (uint32_t)(v >> 8) % 4;
				uint32_t bits = k | (uint32_t)((v >> 40) & 1) << (8 * es - 1);
				memcpy(host + i * es, &bits, es);
			}
			struct rcmoe_pts_cfg cfg = { .dtype = dts[di],
						     .density = rep == 0 ? 0.25 : 0.1,
						     .seed = tu_u64(&r),
						     .op_id = (uint64_t)rep,
						     .rank = 1,
						     .chunk = rep == 2 ? 16384 : 4096 };
			uint32_t tau_bits;
			cr_assert_eq(rcmoe_pts_tau(rcmoe_pts_l1(host, n, cfg.dtype), cfg.density, n,
						   cfg.dtype, &tau_bits),
				     0);
			cr_assert(tau_bits > 0 && tau_bits < 0x00800000u, "tau %08x not subnormal",
				  tau_bits);
			pts_case(&d, host, n, &cfg, 0);
		}
	free(host);
	dev_free(&d);
}

/* R payloads (one of them dense) summed in order: the GPU gives the CPU's bits. */
Test(gpu, pts_accumulate_equals_cpu)
{
	static const size_t sizes[] = { 1, 5000, 65536, 1000003 };
	static const int Rs[] = { 1, 3, 8 };
	struct tu_rng r = { 104 };
	for (int di = 0; di < 3; di++)
		for (size_t s = 0; s < 4; s++)
			for (int ri = 0; ri < 3; ri++) {
				int dt = dtypes[di], R = Rs[ri];
				size_t n = sizes[s], es = rcmoe_dtype_size(dt);
				uint8_t *host = malloc(n * 4);
				const void *ps[8];
				size_t lens[8];
				struct rcmoe_wire_header hs[8];
				void *dps[8];
				for (int k = 0; k < R; k++) {
					struct rcmoe_pts_cfg cfg = { .dtype = dt,
								     .density = 0.02 * (k + 1),
								     .seed = tu_u64(&r),
								     .rank = (uint32_t)k,
								     .chunk = 4096 };
					tu_fill(dt, host, n, k % 2 ? TU_HEAVY : TU_GAUSS, &r);
					if (k == 2)
						tu_set(dt, host, n / 2, INFINITY); /* dense */
					size_t cap = rcmoe_pts_bound(n, &cfg);
					uint8_t *p = malloc(cap);
					cr_assert_eq(
						rcmoe_pts_encode(host, n, &cfg, p, cap, &lens[k]),
						RCMOE_OK);
					ps[k] = p;
					cr_assert_eq(
						rcmoe_codec_validate(p, lens[k], n * es, &hs[k]),
						RCMOE_OK);
					CK(cudaMalloc(&dps[k], lens[k]));
					CK(cudaMemcpy(dps[k], p, lens[k], cudaMemcpyHostToDevice));
				}
				uint8_t *ref = malloc(n * es), *d_out, *d_work;
				cr_assert_eq(rcmoe_pts_accumulate(ps, lens, R, dt, ref, n),
					     RCMOE_OK);
				size_t wb = rcmoe_gpu_pts_accumulate_work_bytes(hs, R);
				CK(cudaMalloc((void **)&d_out, n * es + GUARD));
				CK(cudaMalloc((void **)&d_work, wb));
				CK(cudaMemset(d_out, POISON, n * es + GUARD));
				CK(cudaMemset(d_work, POISON, wb));
				cr_assert_eq(rcmoe_gpu_pts_accumulate((const void *const *)dps, hs,
								      R, dt, d_out, n, d_work, wb,
								      0),
					     RCMOE_OK);
				CK(cudaDeviceSynchronize());
				char what[64];
				snprintf(what, sizeof(what), "accumulate dtype %d n %zu R %d", dt,
					 n, R);
				expect_same_output(d_out, ref, n * es, what);
				for (int k = 0; k < R; k++) {
					free((void *)ps[k]);
					CK(cudaFree(dps[k]));
				}
				CK(cudaFree(d_out));
				CK(cudaFree(d_work));
				free(ref);
				free(host);
			}
}

/* ---- dedup ---- */

Test(gpu, dedup_bytes_equal_cpu)
{
	static const uint32_t bbs[] = { 16, 36, 256, 4100, 14336 };
	static const size_t nrows[] = { 0, 1, 3, 100, 2000 };
	struct dev d = { 0 };
	struct tu_rng r = { 105 };
	for (int bi = 0; bi < 5; bi++)
		for (int ni = 0; ni < 5; ni++)
			for (int tail = 0; tail < 2; tail++) {
				uint32_t bb = bbs[bi];
				size_t bytes = nrows[ni] * bb + (tail ? 12 : 0), len;
				if (bytes > (64u << 20))
					continue;
				uint8_t *host = malloc(bytes + 1);
				for (size_t i = 0; i < bytes; i++)
					host[i] = (uint8_t)tu_u64(&r);
				for (size_t i = 1; i < nrows[ni]; i++) /* about 30% duplicates */
					if (tu_uniform(&r) < 0.3)
						memcpy(host + i * bb, host + (tu_u64(&r) % i) * bb,
						       bb);
				if (nrows[ni] > 2 && tail) /* a tail equal to a block's start */
					memcpy(host + nrows[ni] * bb, host, 12);
				size_t cap = rcmoe_dedup_bound(bytes, bb);
				uint8_t *ref = malloc(cap);
				struct rcmoe_dedup_stats st;
				cr_assert_eq(
					rcmoe_dedup_encode(host, bytes, bb, ref, cap, &len, &st),
					RCMOE_OK);
				size_t wb = rcmoe_gpu_dedup_work_bytes(bytes, bb);
				stage_encode(&d, host, bytes, cap, wb, 0);
				cr_assert_eq(rcmoe_gpu_dedup_encode(d.in, bytes, bb, d.stream, cap,
								    d.work, wb, 0),
					     RCMOE_OK);
				CK(cudaDeviceSynchronize());
				char what[96];
				snprintf(what, sizeof(what), "dedup bb %u bytes %zu dups %lu", bb,
					 bytes, (unsigned long)st.duplicates);
				expect_same_stream(d.stream, ref, len, what);
				expect_gpu_decode(&d, ref, len, host, bytes, 0, what);
				free(ref);
				free(host);
			}
	dev_free(&d);
}

/* Misuse is refused before anything is enqueued. */
Test(gpu, launcher_argument_checks)
{
	struct rcmoe_lsq_cfg cfg = { .dtype = RCMOE_DT_BF16, .bits = 8, .block = 128 };
	uint8_t *d;
	CK(cudaMalloc((void **)&d, 1 << 20));
	size_t wb = rcmoe_gpu_lsq_work_bytes(1000, &cfg), cap = rcmoe_lsq_bound(1000, &cfg);
	cr_assert_eq(rcmoe_gpu_lsq_encode(d + 1, 1000, &cfg, d + 8192, cap, d + 4096, wb, 0),
		     RCMOE_ERR_INVALID, "misaligned source");
	cr_assert_eq(rcmoe_gpu_lsq_encode(d, 1000, &cfg, d + 8192 + 4, cap, d + 4096, wb, 0),
		     RCMOE_ERR_INVALID, "misaligned stream");
	cr_assert_eq(rcmoe_gpu_lsq_encode(d, 1000, &cfg, d + 8192, cap - 1, d + 4096, wb, 0),
		     RCMOE_ERR_OVERFLOW);
	cr_assert_eq(rcmoe_gpu_lsq_encode(d, 1000, &cfg, d + 8192, cap, d + 4096, wb - 1, 0),
		     RCMOE_ERR_INVALID, "short work");
	cfg.block = 100;
	cr_assert_eq(rcmoe_gpu_lsq_encode(d, 1000, &cfg, d + 8192, cap, d + 4096, wb, 0),
		     RCMOE_ERR_INVALID);
	CK(cudaGetLastError());
	CK(cudaFree(d));
}
