/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PTS decode-and-accumulate: dst = sum of R payloads in order, fp32, rounded once; the same
 * bits as rcmoe_pts_accumulate (pts.c). Two kernels:
 *
 * 1. pts_offsets_kernel: grid = R CTAs of 1024 threads; each scans one payload's directory
 *    (chunk body sizes follow from the counts) into the byte offset of every chunk body.
 * 2. pts_accum_kernel: grid = one CTA of 512 threads per chunk of C elements, C*4 bytes of
 *    dynamic shared memory for the fp32 accumulators. For each payload in order: add its
 *    contributions to the chunk (each position at most once per payload, so the adds of one
 *    payload never race), then __syncthreads; at the end convert and store the chunk. Small
 *    elements are found from the bitmap words (thread per word, block scan of popcounts for the
 *    sign ranks) or the Elias-Fano bucket bits (thread per word; rank = element index).
 */
#include "gpu_common.cuh"

#define PTS_OFF_NT 1024
#define PTS_ACC_NT 512

struct pts_src {
	const uint8_t *p; /* stream */
	uint32_t tau_bits;
	uint32_t dense;
};

struct pts_acc_args {
	uint8_t *dst;
	uint64_t n, nchunks;
	uint64_t *offs; /* [payload][chunk] */
	uint32_t chunk;
	int npayloads;
	int vec; /* dst 16-byte aligned */
	struct pts_src src[RCMOE_GPU_PTS_MAX_PAYLOADS];
};

template <int DT>
__global__ void __launch_bounds__(PTS_OFF_NT) pts_offsets_kernel(const struct pts_acc_args a)
{
	__shared__ uint32_t s_scan[33];
	constexpr uint32_t ES = DT == RCMOE_DT_FP32_ ? 4 : 2;
	const struct pts_src s = a.src[blockIdx.x];
	if (s.dense)
		return;
	const uint8_t *dir = s.p + RCMOE_WIRE_HEADER_BYTES;
	uint64_t *offs = a.offs + blockIdx.x * a.nchunks, run = 0;
	for (uint64_t c0 = 0; c0 < a.nchunks; c0 += PTS_OFF_NT) {
		uint64_t c = c0 + threadIdx.x;
		uint32_t bytes = 0;
		if (c < a.nchunks) {
			uint32_t e = ((const uint32_t *)dir)[c];
			uint32_t len = (uint32_t)min((uint64_t)a.chunk, a.n - c * a.chunk);
			struct rcmoe_pts_chunk L;
			rcmoe_pts_chunk_layout(e & 0xffffu, e >> 16, len, ES, &L);
			bytes = L.bytes;
		}
		uint32_t tot, ex = block_exclusive_scan(bytes, &tot, s_scan);
		if (c < a.nchunks)
			offs[c] = run + ex;
		run += tot;
	}
}

template <int DT>
__global__ void __launch_bounds__(PTS_ACC_NT) pts_accum_kernel(const struct pts_acc_args a)
{
	extern __shared__ float acc[];
	__shared__ uint32_t s_scan[33];
	constexpr uint32_t ES = DT == RCMOE_DT_FP32_ ? 4 : 2;
	const uint32_t tid = threadIdx.x, C = a.chunk;
	const uint64_t c = blockIdx.x, e0 = c * C;
	const uint32_t len = (uint32_t)min((uint64_t)C, a.n - e0);

	for (uint32_t i = tid; i < len; i += PTS_ACC_NT)
		acc[i] = 0.0f;
	__syncthreads();
	for (int r = 0; r < a.npayloads; r++) {
		const struct pts_src s = a.src[r];
		const uint8_t *pl = s.p + RCMOE_WIRE_HEADER_BYTES;
		if (s.dense) {
			for (uint32_t i = tid; i < len; i += PTS_ACC_NT)
				acc[i] = rcmoe_fadd_acc(acc[i],
							rcmoe_to_f32(DT, ld_elem<DT>(pl, e0 + i)));
			__syncthreads();
			continue;
		}
		const float tau = rcmoe_bitsf(s.tau_bits),
			    ntau = rcmoe_bitsf(s.tau_bits | 0x80000000u);
		const uint32_t e = ((const uint32_t *)pl)[c], m = e & 0xffffu, nl = e >> 16;
		struct rcmoe_pts_chunk L;
		rcmoe_pts_chunk_layout(m, nl, len, ES, &L);
		const uint32_t *body = (const uint32_t *)(pl + 4 * a.nchunks +
							  a.offs[(uint64_t)r * a.nchunks + c]);
		const uint32_t *sign = body + L.idx_words;
		if (m > 0) {
			/* words carrying one bit per small element: the bitmap, or EF's bucket bits
			 */
			const uint32_t *bits = L.ef ? body + L.low_words : body;
			uint32_t nw = L.ef ? L.high_words : L.idx_words, w = 0;
			if (tid < nw)
				w = bits[tid];
			uint32_t tot, j = block_exclusive_scan(__popc(w), &tot, s_scan);
			while (w) {
				uint32_t b = __ffs(w) - 1, p = tid * 32 + b;
				w &= w - 1;
				if (L.ef) {
					uint32_t k = L.k, bit = j * k, sh = bit % 32, low = 0;
					if (k) {
						low = body[bit / 32] >> sh;
						if (sh + k > 32)
							low |= body[bit / 32 + 1] << (32 - sh);
						low &= (1u << k) - 1;
					}
					p = (p - j) << k | low;
				}
				if (p < len)
					acc[p] = rcmoe_fadd_acc(
						acc[p],
						(sign[j / 32] >> (j % 32)) & 1 ? ntau : tau);
				j++;
			}
		}
		const uint16_t *pos = (const uint16_t *)(sign + L.sign_words);
		const uint8_t *val = (const uint8_t *)pos + L.pos_bytes;
		for (uint32_t i = tid; i < nl; i += PTS_ACC_NT) {
			uint32_t p = pos[i];
			if (p < len)
				acc[p] = rcmoe_fadd_acc(acc[p],
							rcmoe_to_f32(DT, ld_elem<DT>(val, i)));
		}
		__syncthreads();
	}

	/* out: 8 elements per thread where the chunk is whole and dst aligned */
	if (a.vec && len % 8 == 0) {
		for (uint32_t i = tid * 8; i < len; i += PTS_ACC_NT * 8) {
			uint32_t v[8];
			for (int k = 0; k < 8; k++)
				v[k] = rcmoe_from_f32(DT, acc[i + k]);
			st8<DT>(a.dst, e0 + i, a.n, true, v);
		}
	} else {
		for (uint32_t i = tid; i < len; i += PTS_ACC_NT)
			st_elem<DT>(a.dst, e0 + i, rcmoe_from_f32(DT, acc[i]));
	}
}

extern "C" size_t rcmoe_gpu_pts_accumulate_work_bytes(const struct rcmoe_wire_header *hdrs,
						      int npayloads)
{
	uint64_t most = 0;
	for (int r = 0; r < npayloads; r++) {
		uint64_t nc = rcmoe_pts_nchunks(hdrs[r].count, hdrs[r].block);
		most = nc > most ? nc : most;
	}
	return (size_t)rcmoe_align_up(8 * most * (uint64_t)(npayloads > 0 ? npayloads : 1) + 8,
				      256);
}

template <int DT> static rcmoe_status_t launch(const struct pts_acc_args *a, cudaStream_t stream)
{
	size_t smem = (size_t)a->chunk * sizeof(float);
	if (cudaFuncSetAttribute(pts_accum_kernel<DT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
				 (int)smem) != cudaSuccess)
		return RCMOE_ERR_CUDA;
	pts_offsets_kernel<DT><<<a->npayloads, PTS_OFF_NT, 0, stream>>>(*a);
	pts_accum_kernel<DT><<<(unsigned)a->nchunks, PTS_ACC_NT, smem, stream>>>(*a);
	return rcmoe_cuda_launch_status();
}

extern "C" rcmoe_status_t rcmoe_gpu_pts_accumulate(const void *const *d_payloads,
						   const struct rcmoe_wire_header *hdrs,
						   int npayloads, int dtype, void *d_dst, size_t n,
						   void *d_work, size_t work_bytes,
						   cudaStream_t stream)
{
	struct pts_acc_args a;
	size_t esize = rcmoe_dtype_size(dtype);
	if (esize == 0 || npayloads < 1 || npayloads > RCMOE_GPU_PTS_MAX_PAYLOADS || !d_payloads ||
	    !hdrs || (!d_dst && n) || ((uintptr_t)d_dst % esize) || ((uintptr_t)d_work % 16))
		return RCMOE_ERR_INVALID;
	a.chunk = 0;
	for (int r = 0; r < npayloads; r++) {
		const struct rcmoe_wire_header *h = &hdrs[r];
		if (h->codec != RCMOE_CODEC_PTS || h->dtype != dtype || h->count != n ||
		    !d_payloads[r] || ((uintptr_t)d_payloads[r] % 16))
			return RCMOE_ERR_INVALID;
		a.src[r].p = (const uint8_t *)d_payloads[r];
		a.src[r].tau_bits = h->aux;
		a.src[r].dense = (h->flags & RCMOE_PTS_DENSE) != 0;
		if (!a.src[r].dense) {
			if (a.chunk && a.chunk != h->block)
				return RCMOE_ERR_INVALID;
			a.chunk = h->block;
		}
	}
	if (a.chunk == 0)
		a.chunk = RCMOE_PTS_DEFAULT_CHUNK; /* all dense: any chunking works */
	if (work_bytes < rcmoe_gpu_pts_accumulate_work_bytes(hdrs, npayloads) || !d_work)
		return RCMOE_ERR_INVALID;
	if (n == 0)
		return RCMOE_OK;
	a.dst = (uint8_t *)d_dst;
	a.n = n;
	a.nchunks = rcmoe_pts_nchunks(n, a.chunk);
	a.offs = (uint64_t *)d_work;
	a.npayloads = npayloads;
	a.vec = ((uintptr_t)d_dst % 16) == 0;
	if (dtype == RCMOE_DT_BF16)
		return launch<RCMOE_DT_BF16_>(&a, stream);
	if (dtype == RCMOE_DT_FP16)
		return launch<RCMOE_DT_FP16_>(&a, stream);
	return launch<RCMOE_DT_FP32_>(&a, stream);
}
