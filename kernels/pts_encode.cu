/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PTS encoder: two kernels, same bytes as rcmoe_pts_encode (pts.c).
 *
 * 0. rcmoe_gpu_fill (fill.cu: up to 32 blocks of 256 threads, grid-stride) first zeroes the
 *    control words and the look-back states on the same stream.
 * 1. pts_l1_kernel: the L1 norm in the canonical fixed order (codec_math.h,
 *    RCMOE_PTS_L1_CHUNK): grid = one CTA of 256 threads per 8 chunks of 4096 elements, one warp
 *    per chunk, which holds the canonical 256 lanes' sums in registers (see the kernel). The
 *    last CTA to finish (atomic counter) sums the chunk partials the same way and derives tau
 *    and the mode.
 * 2. pts_encode_kernel: grid = one CTA of 512 threads per chunk of C elements (ticket order),
 *    ~7 KB of shared memory. Warp w takes elements 512 i + 32 w + lane (C/512 of them per
 *    thread, loaded first; 16-bit pairs: see select_words_n), so one ballot gives each
 *    32-element word of kept elements; thread w then splits word w into small and large
 *    elements (and the small ones' signs) by reading the few kept elements again; a block scan
 *    of the popcounts ranks the elements; the chunk publishes its body size (decoupled
 *    look-back), builds its index set (bitmap or Elias-Fano) and compacted signs in shared
 *    memory, then writes them, its directory entry and its large elements at the offset the
 *    look-back gave.
 */
#include "gpu_common.cuh"

#define PTS_L1_NT     RCMOE_PTS_L1_LANES
#define PTS_L1_WARPS  (PTS_L1_NT / 32) /* chunks per CTA */
#define PTS_ENC_NT    512
#define PTS_MAX_WORDS (RCMOE_PTS_MAX_CHUNK / 32)
/* Resident CTAs per SM the encode kernel is built for: 4 (32 registers, full occupancy) ran
 * 6% faster than 3 (40 registers) on the H100; overridable with -D for such comparisons. */
#ifndef PTS_ENC_MIN_CTAS
#define PTS_ENC_MIN_CTAS 4
#endif

struct pts_ctl {
	unsigned int done;   /* L1 CTAs finished */
	unsigned int ticket; /* encode tiles taken */
	unsigned int dense;
	unsigned int tau_bits;
};

struct pts_l1_args {
	const uint8_t *src;
	uint64_t n, nl1; /* elements, L1 chunks (at least 1) */
	int vec;         /* src is 8-byte aligned: pairs load as one word (fp32: two) */
	double rho;
	double *partials;
	struct pts_ctl *ctl;
	int dtype;
};

/* Pairwise tree over 256 shared values, as the CPU reference does it. */
static __device__ double tree256(double *v)
{
	for (int s = PTS_L1_NT / 2; s >= 1; s >>= 1) {
		__syncthreads();
		if ((int)threadIdx.x < s)
			v[threadIdx.x] = rcmoe_dadd(v[threadIdx.x], v[threadIdx.x + s]);
	}
	__syncthreads();
	return v[0];
}

/* Two neighbouring elements e, e + 1 (e even) in one load (16-bit types: one word, high half
 * e + 1; fp32: two words) when `full` (aligned, and the chunk is all below n); otherwise one
 * element at a time, 0 past n. */
template <int DT>
static __device__ __forceinline__ uint2 l1_load(const uint8_t *src, uint64_t e, uint64_t n,
						bool full)
{
	if (DT == RCMOE_DT_FP32_) {
		if (full)
			return *(const uint2 *)(src + 4 * e);
		return make_uint2(e < n ? ld_elem<DT>(src, e) : 0u,
				  e + 1 < n ? ld_elem<DT>(src, e + 1) : 0u);
	}
	if (full)
		return make_uint2(*(const uint32_t *)(src + 2 * e), 0u);
	return make_uint2((e < n ? ld_elem<DT>(src, e) : 0u) |
				  (e + 1 < n ? ld_elem<DT>(src, e + 1) << 16 : 0u),
			  0u);
}

/* |element| b (0, 1) of an l1_load as a double. Past n it is +0, which leaves a sum of
 * magnitudes unchanged, as skipping it does; a NaN's payload does not matter (any NaN makes
 * the stream dense). */
template <int DT> static __device__ __forceinline__ double l1_abs(uint2 w, int b)
{
	uint32_t x = DT == RCMOE_DT_FP32_ ? (b ? w.y : w.x) : (b ? w.x >> 16 : w.x & 0xffffu);
	return (double)rcmoe_bitsf(rcmoe_fbits(widen_nan_any<DT>(x)) & 0x7fffffffu);
}

/* One warp per 4096-element chunk, the canonical order kept without shared memory: canonical
 * lane t (codec_math.h) is lane l = (t mod 64) / 2 of the warp, register b = t mod 2,
 * k = t / 64, so each load brings two neighbouring elements (lanes t and t+1). The tree's
 * strides 128 and 64 are then additions inside a lane, 32 down to 2 are shuffles down by
 * 16 .. 1 lanes, and stride 1 adds lane 0's two registers. */
template <int DT>
__global__ void __launch_bounds__(PTS_L1_NT) pts_l1_kernel(const struct pts_l1_args a)
{
	static_assert(RCMOE_PTS_L1_CHUNK == 4096 && RCMOE_PTS_L1_LANES == 256,
		      "the canonical L1 shape this kernel maps onto a warp");
	__shared__ double v[PTS_L1_NT];
	__shared__ int s_last;
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const uint64_t c = (uint64_t)blockIdx.x * PTS_L1_WARPS + warp;
	if (c < a.nl1) {
		const uint64_t base = c * RCMOE_PTS_L1_CHUNK + 2 * lane;
		const bool full = a.vec && (c + 1) * RCMOE_PTS_L1_CHUNK <= a.n;
		double acc[4][2];
		for (int k = 0; k < 4; k++)
			acc[k][0] = acc[k][1] = 0.0;
		/* BATCH loads in flight per step (registers: 16-bit pairs take one, fp32 two) */
		constexpr int BATCH = DT == RCMOE_DT_FP32_ ? 4 : 8;
#pragma unroll
		for (int i0 = 0; i0 < 16; i0 += BATCH) {
			uint2 w[BATCH][4];
#pragma unroll
			for (int i = 0; i < BATCH; i++)
#pragma unroll
				for (int k = 0; k < 4; k++)
					w[i][k] = l1_load<DT>(a.src, base + 256 * (i0 + i) + 64 * k,
							      a.n, full);
#pragma unroll
			for (int i = 0; i < BATCH; i++)
#pragma unroll
				for (int k = 0; k < 4; k++) {
					acc[k][0] = rcmoe_dadd(acc[k][0], l1_abs<DT>(w[i][k], 0));
					acc[k][1] = rcmoe_dadd(acc[k][1], l1_abs<DT>(w[i][k], 1));
				}
		}
		double s0, s1;
		for (int b = 0; b < 2; b++) {
			acc[0][b] = rcmoe_dadd(acc[0][b], acc[2][b]); /* stride 128 */
			acc[1][b] = rcmoe_dadd(acc[1][b], acc[3][b]);
			acc[0][b] = rcmoe_dadd(acc[0][b], acc[1][b]); /* stride 64 */
		}
		s0 = acc[0][0], s1 = acc[0][1];
		for (int o = 16; o >= 1; o >>= 1) { /* strides 32 .. 2 */
			s0 = rcmoe_dadd(s0, __shfl_down_sync(RCMOE_FULL_MASK, s0, o));
			s1 = rcmoe_dadd(s1, __shfl_down_sync(RCMOE_FULL_MASK, s1, o));
		}
		if (lane == 0) {
			a.partials[c] = rcmoe_dadd(s0, s1); /* stride 1 */
			__threadfence();
		}
	}
	__syncthreads();
	if (threadIdx.x == 0)
		s_last = atomicAdd(&a.ctl->done, 1u) == gridDim.x - 1;
	__syncthreads();
	if (!s_last)
		return;
	__threadfence();
	/* lane t sums chunks t, t + 256, ... in order (128 of them per lane at 256 MiB of bf16).
	 * The partials are read from L2 (ld.global.cg: other CTAs wrote them, fenced), 16 loads in
	 * flight before their sums: one dependent load per chunk (a volatile read) made this lone
	 * CTA wait a whole L2 round trip for each. */
	double acc = 0.0;
	uint64_t k = threadIdx.x;
	for (; k + 15 * PTS_L1_NT < a.nl1; k += 16 * PTS_L1_NT) {
		double p16[16];
#pragma unroll
		for (int j = 0; j < 16; j++)
			p16[j] = __ldcg(&a.partials[k + (uint64_t)j * PTS_L1_NT]);
#pragma unroll
		for (int j = 0; j < 16; j++)
			acc = rcmoe_dadd(acc, p16[j]);
	}
	for (; k < a.nl1; k += PTS_L1_NT)
		acc = rcmoe_dadd(acc, __ldcg(&a.partials[k]));
	v[threadIdx.x] = acc;
	double l1 = tree256(v);
	if (threadIdx.x == 0) {
		uint32_t tau;
		a.ctl->dense = (unsigned)rcmoe_pts_tau(l1, a.rho, a.n, DT, &tau);
		a.ctl->tau_bits = tau;
	}
}

struct pts_enc_args {
	const uint8_t *src;
	uint8_t *dst;
	uint64_t n, nchunks;
	uint64_t key;
	unsigned long long *states;
	struct pts_ctl *ctl;
	uint32_t chunk;
	uint32_t hdr[RCMOE_HW_WORDS];
};

/* The selection of one chunk into its kept-bit words, ITERS (chunk / 512) elements per thread,
 * a compile-time count so that loads and loops carry no bounds tests. All loads are issued
 * first (16-bit elements stay packed two to a register); FULL chunks skip the tests against
 * len. Kept means small or large: one ballot per element instead of three; which kept elements
 * are large, and their signs, is read back later for the few kept ones (split_kept). The
 * reference skips the hash for zeros and large elements, but in a warp some lane almost always
 * needs it, so a branch would only add divergence bookkeeping. EXACT (a subnormal tau, rare)
 * adds the explicit test for large elements (codec_math.h). Iteration i's ballot is word
 * 16 i + warp (elements 512 i + 32 warp + [0, 32)), stored by lane 0: one store instruction per
 * ballot, at a constant offset. PAIRS (16-bit elements, full chunk, 4-byte aligned: the common
 * case) loads one word of two neighbouring elements per lane instead, half the load
 * instructions; its two ballots per word hold the even and the odd elements of 64, which
 * unpair_word interleaves back into kept words. The draw is folded and the keep test fused
 * (codec_math.h): 16 instead of 20 instructions per element in the SASS. */
template <int DT, bool FULL, bool EXACT, bool PAIRS, int ITERS>
static __device__ __forceinline__ void select_words_n(const uint8_t *src, uint32_t len,
						      uint32_t lo0, uint32_t hikey, float tau,
						      uint32_t *s_kept)
{
	constexpr uint32_t ES = DT == RCMOE_DT_FP32_ ? 4 : 2, PER = 4 / ES;
	const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5, base = threadIdx.x - lane;
	const uint32_t hfold = rcmoe_rng_fold(hikey);
	const float neg_tau = -tau;
	if constexpr (PAIRS) { /* 16-bit, FULL, 4-byte aligned: see unpair_word */
		uint32_t raw[ITERS / 2];
		const uint32_t y0 = (lo0 + 2 * (base + lane)) * RCMOE_RNG_GOLDEN;
#pragma unroll
		for (uint32_t j = 0; j < ITERS / 2; j++)
			raw[j] = ((const uint32_t *)src)[j * PTS_ENC_NT + base + lane];
#pragma unroll
		for (uint32_t j = 0; j < ITERS / 2; j++) {
			float g0 = widen_nan_any<DT>(raw[j] & 0xffffu);
			float g1 = widen_nan_any<DT>(raw[j] >> 16);
			/* (lo0 + p) * golden for element p = 2 (512 j + base + lane), stepped */
			uint32_t y = y0 + j * (2u * PTS_ENC_NT * RCMOE_RNG_GOLDEN);
			uint32_t r0 = rcmoe_rng_folded(hfold, y);
			uint32_t r1 = rcmoe_rng_folded(hfold, y + RCMOE_RNG_GOLDEN);
			uint32_t b0 = __ballot_sync(RCMOE_FULL_MASK,
						    rcmoe_pts_kept_fused(g0, tau, neg_tau, r0));
			uint32_t b1 = __ballot_sync(RCMOE_FULL_MASK,
						    rcmoe_pts_kept_fused(g1, tau, neg_tau, r1));
			if (lane == 0) {
				s_kept[2 * (j * (PTS_ENC_NT / 32) + warp)] = b0;
				s_kept[2 * (j * (PTS_ENC_NT / 32) + warp) + 1] = b1;
			}
		}
	} else {
		uint32_t raw[(ITERS + PER - 1) / PER];
		const uint32_t y0 = (lo0 + base + lane) * RCMOE_RNG_GOLDEN;
#pragma unroll
		for (uint32_t i = 0; i < ITERS; i++) {
			uint32_t p = i * PTS_ENC_NT + base + lane;
			uint32_t v = FULL || p < len ? ld_elem<DT>(src, p) : 0u;
			if (PER == 1)
				raw[i] = v;
			else if (i % 2 == 0)
				raw[i / PER] = v;
			else
				raw[i / PER] |= v << 16;
		}
		const bool writer = lane == 0;
		uint32_t *kept_words = s_kept + warp;
#pragma unroll
		for (uint32_t i = 0; i < ITERS; i++) {
			uint32_t p = i * PTS_ENC_NT + base + lane;
			uint32_t v = PER == 1 ? raw[i] : (raw[i / PER] >> (16 * (i % 2))) & 0xffffu;
			float g = widen_nan_any<DT>(v); /* no NaN reaches a sparse stream */
			uint32_t r =
				rcmoe_rng_folded(hfold, y0 + i * (PTS_ENC_NT * RCMOE_RNG_GOLDEN));
			bool kept = EXACT ? rcmoe_pts_kept_fused_exact(g, tau, neg_tau, r)
					  : rcmoe_pts_kept_fused(g, tau, neg_tau, r);
			if (!FULL && p >= len)
				kept = false;
			uint32_t b = __ballot_sync(RCMOE_FULL_MASK, kept);
			if (writer)
				kept_words[i * (PTS_ENC_NT / 32)] = b;
		}
	}
}

/* Bits 0..15 of x to the even bits 0, 2, ..., 30. */
static __device__ __forceinline__ uint32_t spread16(uint32_t x)
{
	x = (x | x << 8) & 0x00ff00ffu;
	x = (x | x << 4) & 0x0f0f0f0fu;
	x = (x | x << 2) & 0x33333333u;
	return (x | x << 1) & 0x55555555u;
}

/* Kept word w (elements 32 w + [0, 32)) from the paired selection's ballots: pair word q = w / 2
 * covers elements 64 q + [0, 64), its even elements' ballot at 2 q and odd ones' at 2 q + 1,
 * bit l for element 64 q + 2 l (+ 1). */
static __device__ __forceinline__ uint32_t unpair_word(const uint32_t *s_kept, uint32_t w)
{
	uint32_t q = w / 2, h = 16 * (w & 1);
	return spread16(s_kept[2 * q] >> h & 0xffffu) | spread16(s_kept[2 * q + 1] >> h & 0xffffu)
								<< 1;
}

/* iters = chunk / 512: 2, 4, 8, 16 or 32 (chunks are powers of two in [1024, 16384]). */
template <int DT, bool FULL, bool EXACT, bool PAIRS = false>
static __device__ __forceinline__ void select_words(const uint8_t *src, uint32_t len,
						    uint32_t iters, uint32_t lo0, uint32_t hikey,
						    float tau, uint32_t *s_kept)
{
	static_assert(RCMOE_PTS_MIN_CHUNK / PTS_ENC_NT == 2 &&
			      RCMOE_PTS_MAX_CHUNK / PTS_ENC_NT == 32,
		      "the chunk sizes select_words dispatches on");
	switch (iters) {
	case 2: select_words_n<DT, FULL, EXACT, PAIRS, 2>(src, len, lo0, hikey, tau, s_kept); break;
	case 4: select_words_n<DT, FULL, EXACT, PAIRS, 4>(src, len, lo0, hikey, tau, s_kept); break;
	case 8: select_words_n<DT, FULL, EXACT, PAIRS, 8>(src, len, lo0, hikey, tau, s_kept); break;
	case 16:
		select_words_n<DT, FULL, EXACT, PAIRS, 16>(src, len, lo0, hikey, tau, s_kept);
		break;
	default:
		select_words_n<DT, FULL, EXACT, PAIRS, 32>(src, len, lo0, hikey, tau, s_kept);
		break;
	}
}

/* Split one word of kept bits (elements 32 w + [0, 32) of the chunk) into small and large
 * elements and the small ones' signs, reading each kept element again (few: the kept density
 * is about rho; the chunk was just read, so these come from cache). */
template <int DT>
static __device__ __forceinline__ void split_kept(const uint8_t *src, uint32_t w, uint32_t kept,
						  float tau, uint32_t &small, uint32_t &sign,
						  uint32_t &large)
{
	small = sign = large = 0;
	while (kept) {
		uint32_t b = __ffs(kept) - 1;
		kept &= kept - 1;
		uint32_t bits = rcmoe_fbits(widen_nan_any<DT>(ld_elem<DT>(src, 32 * w + b)));
		if (rcmoe_bitsf(bits & 0x7fffffffu) >= tau) {
			large |= 1u << b;
		} else {
			small |= 1u << b;
			sign |= (bits >> 31) << b;
		}
	}
}

template <int DT>
__global__ void __launch_bounds__(PTS_ENC_NT, PTS_ENC_MIN_CTAS)
	pts_encode_kernel(const struct pts_enc_args a)
{
	constexpr uint32_t ES = DT == RCMOE_DT_FP32_ ? 4 : 2;
	__shared__ uint32_t s_kept[PTS_MAX_WORDS];
	__shared__ uint32_t s_idx[PTS_MAX_WORDS], s_signc[PTS_MAX_WORDS];
	__shared__ uint32_t s_scan[33];
	__shared__ uint32_t s_tile;
	__shared__ uint64_t s_prefix;

	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const uint32_t C = a.chunk, nwords_max = C / 32;
	if (tid == 0)
		s_tile = atomicAdd(&a.ctl->ticket, 1u);
	__syncthreads();
	const uint32_t c = s_tile;
	const uint64_t e0 = (uint64_t)c * C;
	const uint32_t len = e0 < a.n ? (uint32_t)min((uint64_t)C, a.n - e0) : 0u;
	const uint32_t dense = a.ctl->dense, tau_bits = a.ctl->tau_bits;
	const uint64_t dir_bytes = 4 * a.nchunks;
	uint8_t *payload = a.dst + RCMOE_WIRE_HEADER_BYTES;

	if (dense) { /* raw copy at a fixed place; no look-back needed */
		for (uint32_t i = tid; i < len; i += PTS_ENC_NT)
			st_elem<DT>(payload, e0 + i, ld_elem<DT>(a.src, e0 + i));
		if (c == a.nchunks - 1 && tid == 0)
			write_header(a.dst, a.hdr, a.n * ES, RCMOE_PTS_DENSE, 0);
		return;
	}

	/* select: warp w takes elements 512 i + 32 w + lane, so one ballot per predicate gives the
	 * small / sign / large bit words directly */
	const float tau = rcmoe_bitsf(tau_bits);
	const uint32_t hikey = rcmoe_rng_hikey(a.key, (uint32_t)(e0 >> 32)); /* chunk within 2^32 */
	const uint8_t *src = a.src + e0 * ES;
	/* 16-bit elements of full chunks with a normal tau load in aligned pairs (unpair_word) */
	const bool paired =
		ES == 2 && tau_bits >= 0x00800000u && len == C && ((uintptr_t)a.src & 3u) == 0;
	if (tau_bits < 0x00800000u) /* subnormal (or 0): large elements tested explicitly */
		select_words<DT, false, true>(src, len, C / PTS_ENC_NT, (uint32_t)e0, hikey, tau,
					      s_kept);
	else if (len == C && paired)
		select_words<DT, true, false, true>(src, len, C / PTS_ENC_NT, (uint32_t)e0, hikey,
						    tau, s_kept);
	else if (len == C)
		select_words<DT, true, false>(src, len, C / PTS_ENC_NT, (uint32_t)e0, hikey, tau,
					      s_kept);
	else
		select_words<DT, false, false>(src, len, C / PTS_ENC_NT, (uint32_t)e0, hikey, tau,
					       s_kept);
	__syncthreads();

	/* thread w: word w's small and large bits, small signs */
	uint32_t ws = 0, wl = 0, wsg = 0;
	if ((uint32_t)tid < nwords_max)
		split_kept<DT>(src, tid, paired ? unpair_word(s_kept, tid) : s_kept[tid], tau, ws,
			       wsg, wl);

	/* ranks: small count in the low half, large in the high half (each <= 16384) */
	uint32_t tot,
		ex = block_exclusive_scan(__popc(ws) | (uint32_t)__popc(wl) << 16, &tot, s_scan);
	const uint32_t m = tot & 0xffffu, nl = tot >> 16;
	struct rcmoe_pts_chunk L;
	rcmoe_pts_chunk_layout(m, nl, len, ES, &L);
	if (tid == 0) {
		if (len > 0)
			lb_store(&a.states[c], (c == 0 ? RCMOE_LB_INC : RCMOE_LB_AGG) | L.bytes);
		else
			lb_store(&a.states[c], RCMOE_LB_INC); /* n == 0: the lone empty tile */
		if (len > 0)
			*(uint32_t *)(payload + 4 * c) = m | nl << 16;
	}

	/* index set and compacted signs in shared memory */
	if ((uint32_t)tid < nwords_max) {
		s_idx[tid] = L.ef ? 0u : ws;
		s_signc[tid] = 0;
	}
	__syncthreads();
	if ((uint32_t)tid < nwords_max) {
		uint32_t j = ex & 0xffffu, w = ws, sg = wsg;
		while (w) {
			uint32_t b = __ffs(w) - 1, p = tid * 32 + b;
			w &= w - 1;
			if ((sg >> b) & 1)
				atomicOr(&s_signc[j / 32], 1u << (j % 32));
			if (L.ef) {
				uint32_t k = L.k, low = p & ((1u << k) - 1), bit = j * k,
					 sh = bit % 32;
				if (k) {
					atomicOr(&s_idx[bit / 32], low << sh);
					if (sh + k > 32)
						atomicOr(&s_idx[bit / 32 + 1], low >> (32 - sh));
				}
				uint32_t hb = (p >> k) + j;
				atomicOr(&s_idx[L.low_words + hb / 32], 1u << (hb % 32));
			}
			j++;
		}
	}

	if (warp == 0) {
		uint64_t p = c ? lb_exclusive_prefix(a.states, c) : 0;
		if (lane == 0) {
			s_prefix = p;
			if (c && len > 0)
				lb_store(&a.states[c], RCMOE_LB_INC | (p + L.bytes));
			if (c == a.nchunks - 1 || a.nchunks == 0)
				write_header(a.dst, a.hdr, dir_bytes + p + (len ? L.bytes : 0), 0,
					     tau_bits);
		}
	}
	__syncthreads();
	if (len == 0)
		return;

	uint8_t *body = payload + dir_bytes + s_prefix;
	uint32_t *wbody = (uint32_t *)body;
	for (uint32_t t = tid; t < L.idx_words; t += PTS_ENC_NT)
		wbody[t] = s_idx[t];
	for (uint32_t t = tid; t < L.sign_words; t += PTS_ENC_NT)
		wbody[L.idx_words + t] = s_signc[t];
	uint8_t *pos = body + 4 * (L.idx_words + L.sign_words), *val = pos + L.pos_bytes;
	if ((uint32_t)tid < nwords_max) {
		uint32_t e = ex >> 16, w = wl;
		while (w) {
			uint32_t b = __ffs(w) - 1, p = tid * 32 + b;
			w &= w - 1;
			((uint16_t *)pos)[e] = (uint16_t)p;
			st_elem<DT>(val, e, ld_elem<DT>(a.src, e0 + p));
			e++;
		}
	}
	if (tid == 0) {
		if (nl % 2)
			((uint16_t *)pos)[nl] = 0;
		if (ES == 2 && nl % 2)
			((uint16_t *)val)[nl] = 0;
	}
}

static uint32_t cfg_chunk(const struct rcmoe_pts_cfg *cfg)
{
	return cfg->chunk ? cfg->chunk : RCMOE_PTS_DEFAULT_CHUNK;
}

struct pts_work {
	uint64_t nl1, nchunks;
	size_t partials, states, ctl, total;
};

static void pts_work_layout(uint64_t n, uint32_t chunk, struct pts_work *w)
{
	w->nl1 = (n + RCMOE_PTS_L1_CHUNK - 1) / RCMOE_PTS_L1_CHUNK;
	if (w->nl1 == 0)
		w->nl1 = 1;
	w->nchunks = rcmoe_pts_nchunks(n, chunk);
	w->ctl = 0;
	w->states = 256;
	w->partials = w->states + rcmoe_align_up(8 * (w->nchunks ? w->nchunks : 1), 256);
	w->total = w->partials + rcmoe_align_up(8 * w->nl1, 256);
}

extern "C" size_t rcmoe_gpu_pts_work_bytes(size_t n, const struct rcmoe_pts_cfg *cfg)
{
	struct pts_work w;
	if (rcmoe_pts_check_cfg(cfg) != RCMOE_OK)
		return 0;
	pts_work_layout(n, cfg_chunk(cfg), &w);
	return w.total;
}

template <int DT>
static void launch(const struct pts_l1_args *l, const struct pts_enc_args *e, uint64_t grid,
		   cudaStream_t stream)
{
	pts_l1_kernel<DT>
		<<<(unsigned)((l->nl1 + PTS_L1_WARPS - 1) / PTS_L1_WARPS), PTS_L1_NT, 0, stream>>>(
			*l);
	pts_encode_kernel<DT><<<(unsigned)grid, PTS_ENC_NT, 0, stream>>>(*e);
}

extern "C" rcmoe_status_t rcmoe_gpu_pts_encode(const void *d_src, size_t n,
					       const struct rcmoe_pts_cfg *cfg, void *d_dst,
					       size_t cap, void *d_work, size_t work_bytes,
					       cudaStream_t stream)
{
	struct pts_work w;
	struct pts_l1_args l;
	struct pts_enc_args e;
	rcmoe_status_t st = rcmoe_pts_check_cfg(cfg);
	if (st != RCMOE_OK)
		return st;
	st = rcmoe_gpu_encode_args(d_src, n, rcmoe_dtype_size(cfg->dtype), d_dst, d_work,
				   rcmoe_pts_bound(n, cfg), cap);
	if (st != RCMOE_OK)
		return st;
	pts_work_layout(n, cfg_chunk(cfg), &w);
	if (work_bytes < w.total || w.nl1 > 0x7fffffffu)
		return RCMOE_ERR_INVALID;
	uint8_t *work = (uint8_t *)d_work;

	l.src = (const uint8_t *)d_src;
	l.n = n;
	l.nl1 = w.nl1;
	l.vec = ((uintptr_t)d_src % 8) == 0;
	l.rho = cfg->density;
	l.partials = (double *)(work + w.partials);
	l.ctl = (struct pts_ctl *)(work + w.ctl);
	l.dtype = cfg->dtype;

	struct rcmoe_wire_header h = {
		.magic = RCMOE_WIRE_MAGIC,
		.version = RCMOE_WIRE_VERSION,
		.codec = RCMOE_CODEC_PTS,
		.dtype = (uint8_t)cfg->dtype,
		.bits = 0,
		.flags = 0,
		.block = cfg_chunk(cfg),
		.count = n,
		.seed = cfg->seed,
		.op_id = cfg->op_id,
		.rank = cfg->rank,
		.payload_len = 0,
		.aux = 0,
	};
	/* flags and tau are only known on the device: the encode kernel patches them in */
	rcmoe_wire_words(&h, e.hdr);
	e.src = (const uint8_t *)d_src;
	e.dst = (uint8_t *)d_dst;
	e.n = n;
	e.nchunks = w.nchunks;
	e.key = rcmoe_rng_key(cfg->seed, cfg->op_id, cfg->rank);
	e.states = (unsigned long long *)(work + w.states);
	e.ctl = l.ctl;
	e.chunk = cfg_chunk(cfg);
	/* Control words and look-back states zeroed by a kernel, not cudaMemsetAsync: this may run
	 * on NCCL's proxy thread, where the driver's memset path could block on the lock another
	 * thread's synchronous copy holds while it waits for NCCL (fill.cu). */
	if (rcmoe_gpu_fill(d_work, 0, w.partials, stream) != RCMOE_OK)
		return RCMOE_ERR_CUDA;
	uint64_t grid = w.nchunks ? w.nchunks : 1;
	if (cfg->dtype == RCMOE_DT_BF16)
		launch<RCMOE_DT_BF16_>(&l, &e, grid, stream);
	else if (cfg->dtype == RCMOE_DT_FP16)
		launch<RCMOE_DT_FP16_>(&l, &e, grid, stream);
	else
		launch<RCMOE_DT_FP32_>(&l, &e, grid, stream);
	return rcmoe_cuda_launch_status();
}
