/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Window dedup on the GPU (kernels/wdedup_enc.cu, wdedup_dec.cu) against the CPU reference
 * (kernels/wdedup.c), byte for byte: one all-to-all operation to one peer cut into steps, each
 * step encoded by both encoders against their own sender windows. Every GPU stream must equal
 * the CPU stream (memcmp), both must agree on whether the window took the message and on its
 * duplicates, and the GPU decoder (against its device window) must give the CPU decoder's bytes:
 * the input itself when lossless. Cases: 0/10/50/100% duplicated rows, window overflow, short
 * last blocks, new operations and block sizes (epochs), dictionary rebuilds, and LSQ at 8/4/2
 * bits. Device outputs are poisoned before each run. Skips without a GPU; CUDA is touched only
 * inside the tests (each runs in its own forked process).
 */
#include <criterion/criterion.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/codec.h"
#include "rcmoe/wdedup.h"
#include "rcmoe/wdedup_gpu.h"
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

TestSuite(gpu_wdedup, .init = gpu_init, .timeout = 600);

/* Both ends of one connection twice over: the CPU reference's windows and the GPU's. */
struct glink {
	struct rcmoe_wdedup_tx tx;
	struct rcmoe_wdedup_rx rx;
	struct rcmoe_gpu_wdedup_tx gtx;
	struct rcmoe_gpu_wdedup_rx grx;
	uint8_t *d_src, *d_stream, *d_out, *d_work, *d_dwork;
	struct rcmoe_gpu_wdedup_result *d_res;
	size_t max_bytes, stream_cap, work_cap, dwork_cap;
	uint64_t messages, committed, duplicates, wire;
};

static void glink_init(struct glink *l, uint64_t window, uint32_t min_block, size_t max_bytes)
{
	memset(l, 0, sizeof(*l));
	cr_assert_eq(rcmoe_wdedup_tx_init(&l->tx, window, min_block), RCMOE_OK);
	cr_assert_eq(rcmoe_wdedup_rx_init(&l->rx, window, min_block), RCMOE_OK);
	cr_assert_eq(rcmoe_gpu_wdedup_tx_init(&l->gtx, window, min_block, 0), RCMOE_OK);
	cr_assert_eq(rcmoe_gpu_wdedup_rx_init(&l->grx, window, min_block), RCMOE_OK);
	l->max_bytes = max_bytes;
	/* the largest bound and scratch any configuration of these tests asks for */
	l->stream_cap = 2 * max_bytes + (64 << 10);
	l->work_cap = 4 * max_bytes + (1 << 20);
	l->dwork_cap = 2 * max_bytes + (1 << 20);
	CK(cudaMalloc((void **)&l->d_src, max_bytes + 16));
	CK(cudaMalloc((void **)&l->d_stream, l->stream_cap));
	CK(cudaMalloc((void **)&l->d_out, max_bytes + GUARD));
	CK(cudaMalloc((void **)&l->d_work, l->work_cap));
	CK(cudaMalloc((void **)&l->d_dwork, l->dwork_cap));
	CK(cudaMalloc((void **)&l->d_res, sizeof(*l->d_res)));
	CK(cudaDeviceSynchronize());
}

static void glink_free(struct glink *l)
{
	rcmoe_wdedup_tx_free(&l->tx);
	rcmoe_wdedup_rx_free(&l->rx);
	rcmoe_gpu_wdedup_tx_free(&l->gtx);
	rcmoe_gpu_wdedup_rx_free(&l->grx);
	cudaFree(l->d_src);
	cudaFree(l->d_stream);
	cudaFree(l->d_out);
	cudaFree(l->d_work);
	cudaFree(l->d_dwork);
	cudaFree(l->d_res);
}

/* The GPU encode of one message, both phases for LSQ (reading the literal count on the host
 * in between, as a caller would after an event). */
static struct rcmoe_gpu_wdedup_result gpu_encode(struct glink *l,
						 const struct rcmoe_wdedup_cfg *cfg,
						 const uint8_t *src, size_t bytes, size_t cap)
{
	struct rcmoe_gpu_wdedup_result res;
	size_t wb = rcmoe_gpu_wdedup_work_bytes(bytes, cfg);
	cr_assert_gt(wb, 0u);
	cr_assert_leq(wb, l->work_cap, "scratch %zu > %zu", wb, l->work_cap);
	if (bytes)
		CK(cudaMemcpy(l->d_src, src, bytes, cudaMemcpyHostToDevice));
	CK(cudaMemset(l->d_stream, POISON, cap));
	CK(cudaMemset(l->d_work, POISON, wb));
	CK(cudaMemset(l->d_res, POISON, sizeof(res)));
	cr_assert_eq(rcmoe_gpu_wdedup_encode(&l->gtx, cfg, l->d_src, bytes, l->d_stream, cap,
					     l->d_work, wb, l->d_res, 0),
		     RCMOE_OK);
	if (cfg->lsq.bits) {
		CK(cudaMemcpy(&res, l->d_res, sizeof(res), cudaMemcpyDeviceToHost));
		cr_assert_eq(res.len, 0u, "the first phase reported a length");
		cr_assert_eq(rcmoe_gpu_wdedup_finish_lsq(&l->gtx, cfg, l->d_src, bytes,
							 res.lit_raw_bytes, l->d_stream, cap,
							 l->d_work, wb, l->d_res, 0),
			     RCMOE_OK);
	}
	CK(cudaDeviceSynchronize());
	CK(cudaMemcpy(&res, l->d_res, sizeof(res), cudaMemcpyDeviceToHost));
	return res;
}

/* One message through both pairs of windows. The streams must be equal byte for byte; a
 * committed one is decoded by both decoders, which must agree (and give src back when lossless);
 * otherwise the raw bytes "arrive". got: what arrived. */
static void glink_send(struct glink *l, const struct rcmoe_wdedup_cfg *cfg, const uint8_t *src,
		       size_t bytes, uint8_t *got, const char *what)
{
	size_t cap = rcmoe_wdedup_bound(bytes, cfg), len = 0, out = 0;
	cr_assert_gt(cap, 0u, "%s: no bound", what);
	cr_assert_leq(bytes, l->max_bytes);
	cr_assert_leq(cap, l->stream_cap);
	uint8_t *ref = malloc(cap), *gs = malloc(cap);
	int committed = -1;
	cr_assert_eq(rcmoe_wdedup_encode(&l->tx, cfg, src, bytes, ref, cap, &len, &committed),
		     RCMOE_OK);
	struct rcmoe_gpu_wdedup_result res = gpu_encode(l, cfg, src, bytes, cap);
	l->messages++;
	cr_assert_eq(res.len, len, "%s, message %llu: GPU stream %llu bytes, CPU %zu", what,
		     (unsigned long long)l->messages, (unsigned long long)res.len, len);
	cr_assert_eq(res.committed, (uint64_t)committed, "%s: committed GPU %llu CPU %d", what,
		     (unsigned long long)res.committed, committed);
	CK(cudaMemcpy(gs, l->d_stream, len, cudaMemcpyDeviceToHost));
	for (size_t i = 0; i < len; i++)
		if (gs[i] != ref[i])
			cr_assert_fail("%s, message %llu: first difference at byte %zu of %zu "
				       "(GPU %02x CPU %02x)",
				       what, (unsigned long long)l->messages, i, len, gs[i],
				       ref[i]);
	cr_assert_eq(res.blocks, l->tx.last_blocks, "%s: blocks", what);
	cr_assert_eq(res.duplicates, l->tx.last_duplicates, "%s: duplicates", what);
	cr_assert_eq(res.saved_bytes, l->tx.last_saved_bytes, "%s: saved bytes", what);
	if (!committed) {
		memcpy(got, src, bytes);
		l->wire += bytes;
		free(ref);
		free(gs);
		return;
	}
	/* the CPU decoder, then the GPU one from the GPU's stream (the same bytes) */
	uint8_t *cpu_out = malloc(bytes ? bytes : 1), *gpu_out = malloc(bytes + GUARD);
	const char *why = "?";
	rcmoe_status_t st =
		rcmoe_wdedup_decode(&l->rx, ref, len, cpu_out, bytes, NULL, 0, &out, &why);
	cr_assert_eq(st, RCMOE_OK, "%s: CPU decode: %s (%s)", what, rcmoe_status_str(st),
		     why ? why : "-");
	CK(cudaMemset(l->d_out, POISON, bytes + GUARD));
	size_t dwb = 0;
	struct rcmoe_wire_header h;
	cr_assert_eq(rcmoe_wire_parse(gs, len, &h), RCMOE_OK);
	dwb = rcmoe_gpu_wdedup_decode_work_bytes(&h);
	cr_assert_leq(dwb, l->dwork_cap);
	why = "?";
	st = rcmoe_gpu_wdedup_decode(&l->grx, gs, len, l->d_stream, l->d_out, bytes, l->d_dwork,
				     dwb, &out, &why, 0);
	cr_assert_eq(st, RCMOE_OK, "%s: GPU decode: %s (%s)", what, rcmoe_status_str(st),
		     why ? why : "-");
	cr_assert_eq(out, bytes);
	CK(cudaDeviceSynchronize());
	CK(cudaMemcpy(gpu_out, l->d_out, bytes + GUARD, cudaMemcpyDeviceToHost));
	cr_assert(!memcmp(gpu_out, cpu_out, bytes), "%s: GPU decode differs from the CPU's", what);
	for (size_t i = bytes; i < bytes + GUARD; i++)
		cr_assert_eq(gpu_out[i], POISON, "%s: GPU decode wrote past the destination", what);
	if (!cfg->lsq.bits)
		cr_assert(!memcmp(cpu_out, src, bytes), "%s: lossless round trip not exact", what);
	cr_assert_eq(l->grx.meta.count, l->rx.count, "%s: receive windows out of step", what);
	cr_assert_eq(l->grx.meta.epoch, l->rx.epoch, "%s: receive epochs differ", what);
	memcpy(got, cpu_out, bytes);
	l->committed++;
	l->duplicates += res.duplicates;
	l->wire += len;
	free(cpu_out);
	free(gpu_out);
	free(ref);
	free(gs);
}

static void fill_random(uint8_t *p, size_t n, struct tu_rng *r)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)tu_u64(r);
}

/* Rows after the first are, with probability frac, copies of an earlier row at a random
 * distance. Returns the number of copies. */
static size_t plant_rows(uint8_t *buf, size_t nrows, size_t row_bytes, double frac,
			 struct tu_rng *r)
{
	size_t dups = 0;
	for (size_t i = 1; i < nrows; i++) {
		if (frac >= 1.0 || (frac > 0 && tu_uniform(r) < frac)) {
			size_t j = (size_t)(tu_u64(r) % i);
			memcpy(buf + i * row_bytes, buf + j * row_bytes, row_bytes);
			dups++;
		}
	}
	return dups;
}

/* One operation of nrows rows (2 blocks each) sent in steps, lossless; window as given. */
static void fraction_case(double frac, unsigned seed, uint64_t window, size_t step)
{
	const uint32_t bb = 256;
	const size_t row = 2 * bb, nrows = 1024, bytes = nrows * row;
	uint8_t *op = malloc(bytes), *got = malloc(bytes);
	struct tu_rng r = { seed };
	fill_random(op, bytes, &r);
	size_t dups = plant_rows(op, nrows, row, frac, &r);
	struct glink l;
	glink_init(&l, window, 64, step);
	struct rcmoe_wdedup_cfg cfg = { .op = 7, .op_id = 7, .block_bytes = bb };
	char what[96];
	snprintf(what, sizeof(what), "%.0f%% duplicates, window %llu", frac * 100,
		 (unsigned long long)window);
	for (size_t off = 0; off < bytes; off += step) {
		cfg.op_id++;
		glink_send(&l, &cfg, op + off, step, got + off, what);
	}
	cr_assert(!memcmp(op, got, bytes), "%s: the operation did not arrive exact", what);
	cr_log_info("gpu wdedup %s: %zu rows planted, %llu duplicate blocks, %llu of %llu "
		    "messages deduplicated, wire %.3f",
		    what, dups, (unsigned long long)l.duplicates, (unsigned long long)l.committed,
		    (unsigned long long)l.messages, (double)l.wire / bytes);
	if (frac >= 0.5)
		cr_assert_gt(l.duplicates, 0u, "%s: nothing found", what);
	glink_free(&l);
	free(got);
	free(op);
}

Test(gpu_wdedup, bytes_equal_cpu_0_percent)
{
	fraction_case(0.0, 201, 8 << 20, 16 << 10);
}

Test(gpu_wdedup, bytes_equal_cpu_10_percent)
{
	fraction_case(0.1, 202, 8 << 20, 16 << 10);
}

Test(gpu_wdedup, bytes_equal_cpu_50_percent)
{
	fraction_case(0.5, 203, 8 << 20, 16 << 10);
}

Test(gpu_wdedup, bytes_equal_cpu_100_percent)
{
	fraction_case(1.0, 204, 8 << 20, 64 << 10);
}

/* A 64 KiB window (256 blocks) under a 512 KiB operation: most first copies have left the window
 * when their duplicate comes, which is then sent again (and becomes the new first copy). */
Test(gpu_wdedup, window_overflow)
{
	fraction_case(0.5, 205, 64 << 10, 16 << 10);
	fraction_case(1.0, 206, 64 << 10, 32 << 10);
}

/* Steps of random lengths (short last blocks), two operations interleaved and a block size
 * change: every switch starts an epoch on both sides, and a step that does not gain is sent raw
 * without touching either window. */
Test(gpu_wdedup, epochs_and_short_blocks)
{
	const size_t max = 96 << 10;
	uint8_t *msg = malloc(max), *prev = malloc(max), *got = malloc(max);
	size_t prev_bytes = 0;
	struct tu_rng r = { 207 };
	struct glink l;
	glink_init(&l, 1 << 20, 64, max);
	for (int k = 0; k < 60; k++) {
		uint32_t bb = k % 7 == 6 ? 128 : 256;
		size_t bytes = (size_t)(tu_u64(&r) % (max / 4)) * 4;
		struct rcmoe_wdedup_cfg cfg = { .op = 1 + (k / 5) % 3,
						.op_id = 100 + k,
						.block_bytes = bb };
		fill_random(msg, bytes, &r);
		/* copies of this message's own first block, and of the previous message's */
		size_t nfull = bytes / bb;
		for (size_t b = 1; b < nfull; b++) {
			double u = tu_uniform(&r);
			if (u < 0.3)
				memcpy(msg + b * bb, msg + (tu_u64(&r) % b) * bb, bb);
			else if (u < 0.5 && prev_bytes >= 256)
				memcpy(msg + b * bb, prev + (tu_u64(&r) % (prev_bytes / 256)) * 256,
				       bb);
		}
		glink_send(&l, &cfg, msg, bytes, got, "epochs");
		cr_assert(!memcmp(msg, got, bytes), "message %d did not arrive exact", k);
		memcpy(prev, msg, bytes);
		prev_bytes = bytes;
	}
	cr_assert_gt(l.committed, 0u);
	glink_free(&l);
	free(got);
	free(prev);
	free(msg);
}

/* Small blocks and many messages: the dictionary fills past half and is rebuilt from the ring
 * (CPU and GPU on their own schedules, with the same answers). */
Test(gpu_wdedup, dictionary_rebuilds)
{
	const uint32_t bb = 16;
	const size_t step = 16 << 10, nmsg = 48, bytes = step * nmsg;
	uint8_t *op = malloc(bytes), *got = malloc(bytes);
	struct tu_rng r = { 208 };
	fill_random(op, bytes, &r);
	plant_rows(op, bytes / 64, 64, 0.3, &r);
	struct glink l;
	glink_init(&l, 64 << 10, 16, step);
	struct rcmoe_wdedup_cfg cfg = { .op = 3, .op_id = 3, .block_bytes = bb };
	for (size_t off = 0; off < bytes; off += step) {
		cfg.op_id++;
		glink_send(&l, &cfg, op + off, step, got + off, "rebuilds");
	}
	cr_assert(!memcmp(op, got, bytes), "the operation did not arrive exact");
	cr_assert_gt(l.duplicates, 0u);
	glink_free(&l);
	free(got);
	free(op);
}

/* Composed with LSQ: the literals LSQ-coded by the GPU LSQ encoder give the CPU's inner stream,
 * and the GPU decoder (inner LSQ decode, then copies) the CPU decoder's values, duplicates
 * included. */
static void lsq_case(int dtype, int bits, double frac, unsigned seed)
{
	const uint32_t block = 128, esize = (uint32_t)rcmoe_dtype_size(dtype), bb = block * esize;
	const size_t row = 2 * bb, nrows = 512, bytes = nrows * row, step = 32 * row;
	uint8_t *op = malloc(bytes), *got = malloc(bytes);
	struct tu_rng r = { seed };
	tu_fill(dtype, op, bytes / esize, TU_GAUSS, &r);
	plant_rows(op, nrows, row, frac, &r);
	struct glink l;
	glink_init(&l, 2 << 20, bb, step);
	struct rcmoe_wdedup_cfg cfg = { .op = 9, .op_id = 9, .block_bytes = bb };
	cfg.lsq = (struct rcmoe_lsq_cfg){
		.dtype = dtype, .bits = bits, .block = block, .seed = 5, .rank = 1
	};
	char what[64];
	snprintf(what, sizeof(what), "lsq dtype %d bits %d %.0f%%", dtype, bits, frac * 100);
	for (size_t off = 0; off < bytes; off += step) {
		cfg.op_id++;
		cfg.lsq.op_id = cfg.op_id;
		glink_send(&l, &cfg, op + off, step, got + off, what);
	}
	cr_assert_gt(l.committed, 0u, "%s: nothing committed", what);
	glink_free(&l);
	free(got);
	free(op);
}

Test(gpu_wdedup, lsq_bytes_equal_cpu)
{
	static const int dtypes[] = { RCMOE_DT_BF16, RCMOE_DT_FP16, RCMOE_DT_FP32 };
	static const int bits[] = { 8, 4, 2 };
	unsigned seed = 300;
	for (int d = 0; d < 3; d++)
		for (int b = 0; b < 3; b++) {
			lsq_case(dtypes[d], bits[b], 0.25, seed++);
			lsq_case(dtypes[d], bits[b], 1.0, seed++);
		}
}

/* Bad arguments are refused before anything is enqueued. */
Test(gpu_wdedup, refuses_bad_arguments)
{
	struct glink l;
	glink_init(&l, 1 << 20, 64, 4096);
	struct rcmoe_wdedup_cfg cfg = { .op = 1, .op_id = 1, .block_bytes = 256 };
	size_t cap = rcmoe_wdedup_bound(4096, &cfg), wb = rcmoe_gpu_wdedup_work_bytes(4096, &cfg);
	cr_assert_eq(rcmoe_gpu_wdedup_encode(&l.gtx, &cfg, l.d_src + 1, 4096, l.d_stream, cap,
					     l.d_work, wb, l.d_res, 0),
		     RCMOE_ERR_INVALID, "misaligned source");
	cr_assert_eq(rcmoe_gpu_wdedup_encode(&l.gtx, &cfg, l.d_src, 4096, l.d_stream, cap - 1,
					     l.d_work, wb, l.d_res, 0),
		     RCMOE_ERR_OVERFLOW, "short stream buffer");
	cr_assert_eq(rcmoe_gpu_wdedup_encode(&l.gtx, &cfg, l.d_src, 4096, l.d_stream, cap, l.d_work,
					     wb - 1, l.d_res, 0),
		     RCMOE_ERR_INVALID, "short scratch");
	cfg.block_bytes = 32; /* below the window's smallest block */
	cr_assert_eq(rcmoe_gpu_wdedup_encode(&l.gtx, &cfg, l.d_src, 4096, l.d_stream, cap, l.d_work,
					     l.work_cap, l.d_res, 0),
		     RCMOE_ERR_INVALID, "block below min_block");
	glink_free(&l);
}
