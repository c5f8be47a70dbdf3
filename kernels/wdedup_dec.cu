/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Window dedup decoder on the GPU (rcmoe/wdedup_gpu.h): what rcmoe_wdedup_decode (wdedup.c)
 * does, with the window's blocks in device memory. Decoding is copying: every block is a
 * literal of the stream or a copy of an earlier literal (this message's, or the window's), so
 * once the host has validated the stream against the window's bookkeeping it keeps on the host,
 * two kernels finish it:
 * 0. LSQ-composed streams: rcmoe_gpu_decode decodes the inner LSQ stream into the scratch (the
 *    literals' decoded values: what references copy, so a duplicate decodes to its first copy).
 * 1. wd_decode_kernel (warp per block, 256 threads): entry e >= base copies literal e - base of
 *    the message, an earlier one the window's slot e mod w. It reads the ring as it was before
 *    this message.
 * 2. wd_record_kernel (warp per literal): the ring takes the message's literals that are within
 *    its last w. Stream order puts it after kernel 1, so no reference reads a slot it rewrote.
 * The host then advances the bookkeeping (epoch, numbering, slot lengths) as the CPU decoder
 * does.
 */
#include <stdlib.h>
#include <string.h>

#include "wdedup_gpu.cuh"
#include "gpu_internal.h"

struct wd_dec_args {
	const uint8_t *table, *lits;
	uint8_t *dst, *ring;
	uint64_t bytes, nblocks, base, nlit, w;
	uint32_t bb;
};

__global__ void __launch_bounds__(WD_NT) wd_decode_kernel(const struct wd_dec_args a)
{
	const uint64_t i = (uint64_t)blockIdx.x * WD_WARPS + (threadIdx.x >> 5);
	if (i >= a.nblocks)
		return;
	uint64_t e = ((const uint32_t *)a.table)[i];
	uint64_t sz = min((uint64_t)a.bb, a.bytes - i * a.bb);
	const uint8_t *from =
		e >= a.base ? a.lits + (e - a.base) * a.bb : a.ring + (e % a.w) * a.bb;
	dedup_warp_copy(a.dst + i * a.bb, from, sz);
}

__global__ void __launch_bounds__(WD_NT) wd_record_kernel(const struct wd_dec_args a)
{
	const uint64_t j = (uint64_t)blockIdx.x * WD_WARPS + (threadIdx.x >> 5);
	const uint64_t end = a.base + a.nlit, e = a.base + j;
	if (j >= a.nlit || e + a.w < end)
		return;
	uint64_t tail = a.bytes % a.bb, sz = j == a.nlit - 1 && tail ? tail : a.bb;
	dedup_warp_copy(a.ring + (e % a.w) * a.bb, a.lits + j * a.bb, sz);
}

extern "C" rcmoe_status_t rcmoe_gpu_wdedup_rx_init(struct rcmoe_gpu_wdedup_rx *rx,
						   uint64_t window_bytes, uint32_t min_block)
{
	if (!rx)
		return RCMOE_ERR_INVALID;
	memset(rx, 0, sizeof(*rx));
	RCMOE_CHECK(rcmoe_wdedup_rx_init(&rx->meta, window_bytes, min_block));
	/* the CPU decoder allocates these at its first message; rcmoe_wdedup_validate reads the
	 * slot lengths, the ring stays NULL on the host */
	rx->meta.slot_len = (uint32_t *)calloc(window_bytes / min_block, sizeof(uint32_t));
	if (!rx->meta.slot_len)
		return RCMOE_ERR_NOMEM;
	if (cudaMalloc((void **)&rx->d_ring, window_bytes) != cudaSuccess) {
		rx->d_ring = NULL;
		rcmoe_gpu_wdedup_rx_free(rx);
		return RCMOE_ERR_NOMEM;
	}
	return RCMOE_OK;
}

extern "C" void rcmoe_gpu_wdedup_rx_free(struct rcmoe_gpu_wdedup_rx *rx)
{
	if (!rx)
		return;
	if (rx->d_ring)
		cudaFree(rx->d_ring);
	rx->d_ring = NULL;
	rcmoe_wdedup_rx_free(&rx->meta);
}

/* The inner LSQ stream's largest header for this window-dedup header: every block a literal. */
static struct rcmoe_wire_header wd_inner_bound(const struct rcmoe_wire_header *hdr)
{
	struct rcmoe_wire_header ih;
	uint32_t esize = (uint32_t)rcmoe_dtype_size(hdr->dtype);
	memset(&ih, 0, sizeof(ih));
	ih.codec = RCMOE_CODEC_LSQ;
	ih.dtype = hdr->dtype;
	ih.bits = hdr->bits;
	ih.block = hdr->block / esize;
	ih.count = hdr->count / esize;
	return ih;
}

extern "C" size_t rcmoe_gpu_wdedup_decode_work_bytes(const struct rcmoe_wire_header *hdr)
{
	if (!hdr || hdr->bits == 0 || rcmoe_dtype_size(hdr->dtype) == 0)
		return 0;
	struct rcmoe_wire_header ih = wd_inner_bound(hdr);
	/* the decoded literals (at most the whole message), then the LSQ decoder's scratch, which
	 * only grows with the element count */
	return rcmoe_align_up(hdr->count ? hdr->count : 1, 256) +
	       rcmoe_align_up(rcmoe_gpu_decode_work_bytes(&ih), 256);
}

/* The bookkeeping rcmoe_wdedup_decode keeps after a message, without its ring. */
static void wd_rx_advance(struct rcmoe_wdedup_rx *rx, const struct rcmoe_wire_header *h,
			  uint64_t epoch, uint64_t base, uint64_t nlit)
{
	uint32_t bb = h->block;
	uint64_t w = rx->window_bytes / bb, nb = (h->count + bb - 1) / bb, end = base + nlit;
	if (epoch != rx->epoch) {
		rx->epoch = epoch;
		rx->bb = bb;
		rx->w = w;
		rx->count = 0;
	}
	for (uint64_t j = 0; j < nlit; j++) {
		uint64_t e = base + j;
		if (e + w < end)
			continue;
		rx->slot_len[e % w] =
			(uint32_t)(j == nlit - 1 && h->count % bb ? h->count % bb : bb);
	}
	rx->count = end;
	rx->last_blocks = nb;
	rx->last_duplicates = nb - nlit;
	rx->last_saved_bytes = (nb - nlit) * bb;
}

extern "C" rcmoe_status_t rcmoe_gpu_wdedup_decode(struct rcmoe_gpu_wdedup_rx *rx, const void *h_src,
						  size_t len, const void *d_src, void *d_dst,
						  size_t dst_bytes, void *d_work, size_t work_bytes,
						  size_t *out_bytes, const char **why,
						  cudaStream_t stream)
{
	struct rcmoe_wire_header h;
	if (!rx || !rx->d_ring || !h_src || !d_src || !out_bytes || ((uintptr_t)d_src % 16))
		return RCMOE_ERR_INVALID;
	rcmoe_status_t st = rcmoe_wdedup_validate(&rx->meta, h_src, len, dst_bytes, &h, why);
	if (st != RCMOE_OK)
		return st;
	if (h.count && !d_dst)
		return RCMOE_ERR_INVALID;
	const uint8_t *hp = (const uint8_t *)h_src + RCMOE_WIRE_HEADER_BYTES;
	uint64_t epoch, base;
	uint32_t nlit;
	memcpy(&epoch, hp, 8);
	memcpy(&base, hp + 8, 8);
	memcpy(&nlit, hp + 16, 4);

	struct wd_dec_args a;
	a.bb = h.block;
	a.bytes = h.count;
	a.nblocks = (h.count + h.block - 1) / h.block;
	a.base = base;
	a.nlit = nlit;
	a.w = rx->meta.window_bytes / h.block;
	a.table = (const uint8_t *)d_src + RCMOE_WIRE_HEADER_BYTES + RCMOE_WDEDUP_PREAMBLE_BYTES;
	a.lits = a.table + wd_table_bytes(a.nblocks);
	a.dst = (uint8_t *)d_dst;
	a.ring = rx->d_ring;
	if (h.bits) {
		/* the inner stream was validated with the outer one: its header parses */
		size_t need = rcmoe_gpu_wdedup_decode_work_bytes(&h), lits_room;
		struct rcmoe_wire_header ih;
		const uint8_t *inner = hp + RCMOE_WDEDUP_PREAMBLE_BYTES + wd_table_bytes(a.nblocks);
		if (!d_work || ((uintptr_t)d_work % 16) || work_bytes < need)
			return RCMOE_ERR_INVALID;
		if (rcmoe_wire_parse(inner, len - (size_t)(inner - (const uint8_t *)h_src), &ih) !=
		    RCMOE_OK)
			return RCMOE_ERR_MALFORMED;
		lits_room = rcmoe_align_up(h.count ? h.count : 1, 256);
		st = rcmoe_gpu_decode(a.lits, &ih, d_work, lits_room, (uint8_t *)d_work + lits_room,
				      work_bytes - lits_room, stream);
		if (st != RCMOE_OK)
			return st;
		a.lits = (const uint8_t *)d_work;
	}
	if (a.nblocks) {
		wd_decode_kernel<<<wd_grid(a.nblocks, WD_WARPS), WD_NT, 0, stream>>>(a);
		wd_record_kernel<<<wd_grid(a.nlit, WD_WARPS), WD_NT, 0, stream>>>(a);
		if (rcmoe_cuda_launch_status() != RCMOE_OK)
			return RCMOE_ERR_CUDA;
	}
	wd_rx_advance(&rx->meta, &h, epoch, base, nlit);
	*out_bytes = h.count;
	return RCMOE_OK;
}
