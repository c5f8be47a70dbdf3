/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LSQ encoder, single pass: each tile loads its elements once into registers, reduces block
 * maxima (lane groups, two 16-bit steps per shuffle), lets one lane per block decide its kind
 * and scale, publishes its compacted size, computes the codes while its predecessors finish,
 * learns its output offset by look-back and writes scales, codes, raw blocks and its part of the
 * kind table. The last tile writes the header. Same bytes as rcmoe_lsq_encode (lsq.c).
 *
 * Launch configuration: see lsq_tile.cuh (256 threads per 8192-element tile, grid = tiles,
 * 2.3 KB of static shared memory). First rcmoe_gpu_fill (fill.cu: up to 32 blocks of 256
 * threads, grid-stride) zeroes the tile states and the ticket on the same stream.
 *
 * rcmoe_gpu_lsq_encode_many encodes up to RCMOE_GPU_LSQ_MAX_SEGS streams (the shards of a
 * collNet call) with one fill and one launch instead of two per stream: the launches, not the
 * bytes, bound a 256 KiB call on NCCL's proxy thread. Each stream is encoded exactly as alone.
 */
#include "lsq_tile.cuh"

/* Resident CTAs per SM the 16-bit kernels are built for: 5 (48 registers) ran faster on the
 * H100 than 4 (56-62 registers; 8 / 4 bits: 0.72 / 0.84 of copy against 0.69 / 0.77) and, in an
 * earlier form of this kernel, than 6 (40, with values recomputed); overridable with -D. */
#ifndef LSQ_ENC_MIN_CTAS
#define LSQ_ENC_MIN_CTAS 5
#endif

/* How many tiles ahead of its own (in launch order) a CTA prefetches into L2. A CTA's own loads
 * wait behind its ticket and hold registers while in flight, and its later phases issue none,
 * so 5 CTAs per SM kept DRAM under half busy; prefetching ahead keeps reads in flight without
 * registers and turns the loads into L2 hits. On the H100 (bf16, 8 bits, 256 MiB) 128 tiles
 * (2 MiB of 16-bit data) ran at 0.81 of copy, 256 at 0.81, 512 at 0.80, none at 0.72. */
#ifndef LSQ_ENC_PREFETCH_AHEAD
#define LSQ_ENC_PREFETCH_AHEAD 128
#endif

struct lsq_enc_args {
	const uint8_t *src;
	uint8_t *dst;
	struct lsq_geom g;
	uint64_t key;
	unsigned long long *states;
	unsigned int *ticket;
	int vec; /* src is 16-byte aligned */
	uint32_t hdr[RCMOE_HW_WORDS];
};

/* Where a lane's 8 elements of a step lie. A block of B <= 256 elements is a group of G = B/8
 * lanes (for larger blocks, G = 32: the step's 256 elements). Lanes hold 8 consecutive elements,
 * except with 8-bit codes: there lane gi of a group holds elements [4 gi, 4 gi + 4) and
 * [4 G + 4 gi, 4 G + 4 gi + 4) of the group's 8 G, whose codes are the group's words gi and
 * G + gi. Each store instruction then covers contiguous words, which the plugin's mapped host
 * staging needs (a PCIe write carries contiguous bytes only: words stored every other place
 * were 25x slower); loading two halves costs less than exchanging the codes afterwards.
 * first: tile offset of elements 0..3 in step 0 (step st adds 256 st); gap: from element 0 to
 * element 4 (4 G or 4). */
template <int BITS>
static __device__ __forceinline__ void lane_layout(int warp, int lane, uint32_t G, uint32_t &first,
						   uint32_t &gap)
{
	uint32_t off = lsq_off(warp, 0, lane);
	if (BITS == 8) {
		first = off - 4 * (lane & (G - 1));
		gap = 4 * G;
	} else {
		first = off;
		gap = 4;
	}
}

/* 4 consecutive elements at p (16-bit: 2 words, fp32: 4); per element with bounds otherwise,
 * 0 past element n (e: p's element index). */
template <int DT>
static __device__ __forceinline__ void ld4(const uint8_t *p, bool vec, uint64_t e, uint64_t n,
					   uint32_t *w)
{
	if (DT == RCMOE_DT_FP32_) {
		if (vec) {
			uint4 v = *(const uint4 *)p;
			w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
		} else {
			for (int k = 0; k < 4; k++)
				w[k] = e + k < n ? ((const uint32_t *)p)[k] : 0u;
		}
	} else if (vec) {
		uint2 v = *(const uint2 *)p;
		w[0] = v.x, w[1] = v.y;
	} else {
		for (int k = 0; k < 2; k++) {
			uint32_t lo = e + 2 * k < n ? ((const uint16_t *)p)[2 * k] : 0u;
			uint32_t hi = e + 2 * k + 1 < n ? ((const uint16_t *)p)[2 * k + 1] : 0u;
			w[k] = lo | hi << 16;
		}
	}
}

/* Codes of two elements from one draw, as rcmoe_lsq_code (codec_math.h) computes them. */
template <int DT>
static __device__ __forceinline__ void code_pair(uint32_t x0, uint32_t x1, float inv, uint32_t r,
						 float lb, uint32_t &c0, uint32_t &c1)
{
	const float f0 = widen_nan_any<DT>(x0), f1 = widen_nan_any<DT>(x1); /* all finite here */
	uint32_t t0 = rcmoe_fbits(rcmoe_fadd(rcmoe_fmul(f0, inv), lb));
	uint32_t t1 = rcmoe_fbits(rcmoe_fadd(rcmoe_fmul(f1, inv), lb));
	c0 = (t0 - RCMOE_LSQ_T0_BITS + (r & 0x7fffu)) >> RCMOE_LSQ_FRAC;
	c1 = (t1 - RCMOE_LSQ_T0_BITS + ((r >> 16) & 0x7fffu)) >> RCMOE_LSQ_FRAC;
}

/* The lane's 8 codes into 64 (b=8), 32 (b=4) or 16 (b=2) bits. */
template <int BITS> static __device__ __forceinline__ void pack8(const uint32_t c[8], uint32_t w[2])
{
	if (BITS == 8) {
		w[0] = __byte_perm(__byte_perm(c[0], c[1], 0x0040), __byte_perm(c[2], c[3], 0x0040),
				   0x5410);
		w[1] = __byte_perm(__byte_perm(c[4], c[5], 0x0040), __byte_perm(c[6], c[7], 0x0040),
				   0x5410);
	} else {
		w[0] = c[0];
		for (int k = 1; k < 8; k++)
			w[0] += c[k]
				<< (BITS * k); /* disjoint fields: + is |, and folds into LEA */
		w[1] = 0;
	}
}

/* A block's kind travels between lanes as one word: its inverse scale's bits when quantized
 * (a positive normal float), 0 when all zero, all ones when raw. */
#define LSQ_WORD_ZERO 0u
#define LSQ_WORD_RAW  0xffffffffu

static __device__ __forceinline__ bool lsq_word_quantized(uint32_t w)
{
	return w != LSQ_WORD_ZERO && w != LSQ_WORD_RAW;
}

/* One tile of one stream; cta: the CTA's index among those of its stream (launch order). */
template <int DT, int BITS>
static __device__ __forceinline__ void lsq_encode_tile(const struct lsq_enc_args &a, uint32_t cta)
{
	__shared__ uint32_t s_tile;
	__shared__ uint8_t s_kind[256];
	__shared__ uint32_t s_off[256];
	__shared__ uint32_t s_scan[33];
	__shared__ uint64_t s_prefix;

	constexpr bool WIDE = DT == RCMOE_DT_FP32_;
	constexpr int NW = WIDE ? 8 : 4; /* words a lane holds per step */
	constexpr uint32_t ES = WIDE ? 4u : 2u;
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int L = (1 << (BITS - 1)) - 1;
	const float lb = (float)L + 256.0f;
	const uint32_t log2b = a.g.log2b, B = 1u << log2b, G = B >= 256 ? 32u : B / 8u;
	const uint64_t n = a.g.n;

	if (threadIdx.x == 0) {
		/* the tile launched LSQ_ENC_PREFETCH_AHEAD after this one (tickets follow launch
		 * order closely) goes into L2 now, so it is there when that CTA loads it */
		uint64_t pe0 = ((uint64_t)cta + LSQ_ENC_PREFETCH_AHEAD) * LSQ_TILE;
		if (a.vec && pe0 + LSQ_TILE <= n)
			l2_prefetch(a.src + pe0 * ES, LSQ_TILE * ES);
		s_tile = atomicAdd(a.ticket, 1u);
	}
	s_kind[threadIdx.x] = 0;
	s_off[threadIdx.x] = 0;
	__syncthreads();
	const uint32_t tile = s_tile;
	const uint64_t te0 = (uint64_t)tile * LSQ_TILE;
	const bool full = te0 + LSQ_TILE <= n; /* no element of the tile past n */
	uint32_t first, gap;
	lane_layout<BITS>(warp, lane, G, first, gap);

	/* load: step st's halves at first + 256 st and first + gap + 256 st */
	uint32_t raw[LSQ_STEPS][NW];
	{
		const uint8_t *p0 = a.src + (te0 + first) * ES, *p1 = p0 + gap * ES;
		const bool vec = a.vec && full;
#pragma unroll
		for (int st = 0; st < LSQ_STEPS; st++) {
			uint64_t e = te0 + first + 256 * st;
			ld4<DT>(p0 + 256 * ES * st, vec, e, n, &raw[st][0]);
			ld4<DT>(p1 + 256 * ES * st, vec, e + gap, n, &raw[st][NW / 2]);
		}
	}

	/* max |x| of each step's group, as the magnitude's bits. 16-bit magnitudes order like their
	 * fp32 values (NaN above Inf): two steps travel as one word of 16-bit maxima. The group
	 * reductions are unrolled over the 5 possible rounds, each skipped (uniformly) past G. */
	uint32_t amax[LSQ_STEPS];
	if (WIDE) {
#pragma unroll
		for (int st = 0; st < LSQ_STEPS; st++) {
			uint32_t m = 0;
			for (int k = 0; k < 8; k++)
				m = max(m, raw[st][k] & 0x7fffffffu);
#pragma unroll
			for (uint32_t o = 1; o < 32; o <<= 1)
				if (o < G)
					m = max(m, __shfl_xor_sync(RCMOE_FULL_MASK, m, o));
			amax[st] = m;
		}
	} else {
		uint32_t m2[LSQ_STEPS], pair[2];
#pragma unroll
		for (int st = 0; st < LSQ_STEPS; st++)
			m2[st] = __vmaxu2(
				__vmaxu2(raw[st][0] & 0x7fff7fffu, raw[st][1] & 0x7fff7fffu),
				__vmaxu2(raw[st][2] & 0x7fff7fffu, raw[st][3] & 0x7fff7fffu));
#pragma unroll
		for (int h = 0; h < 2; h++) {
			uint32_t x = __byte_perm(m2[2 * h], m2[2 * h + 1], 0x5410);
			uint32_t y = __byte_perm(m2[2 * h], m2[2 * h + 1], 0x7632);
			pair[h] = __vmaxu2(x, y);
		}
#pragma unroll
		for (uint32_t o = 1; o < 32; o <<= 1)
			if (o < G) {
				pair[0] = __vmaxu2(pair[0],
						   __shfl_xor_sync(RCMOE_FULL_MASK, pair[0], o));
				pair[1] = __vmaxu2(pair[1],
						   __shfl_xor_sync(RCMOE_FULL_MASK, pair[1], o));
			}
#pragma unroll
		for (int st = 0; st < LSQ_STEPS; st++)
			amax[st] = (pair[st / 2] >> (16 * (st % 2))) & 0xffffu;
	}
	if (B >= 512) {
		amax[0] = amax[1] = max(amax[0], amax[1]);
		amax[2] = amax[3] = max(amax[2], amax[3]);
	}
	if (B >= 1024)
		amax[0] = amax[1] = amax[2] = amax[3] = max(amax[0], amax[2]);

	/* kinds, scales and sizes: lane j of the warp decides the warp's block j (1024 / B of
	 * them), once, instead of every lane for every step */
	const uint32_t nbw = 1024u >> log2b, bj = (uint32_t)warp * nbw + lane;
	float scale = 0.0f;
	uint32_t kword;
	{
		uint32_t jst = ((uint32_t)lane << log2b) >> 8 & 3,
			 src = ((uint32_t)lane << log2b) >> 3 & 31;
		uint32_t v01 =
			__shfl_sync(RCMOE_FULL_MASK, WIDE ? amax[0] : amax[0] | amax[1] << 16, src);
		uint32_t v23 =
			__shfl_sync(RCMOE_FULL_MASK, WIDE ? amax[2] : amax[2] | amax[3] << 16, src);
		uint32_t am;
		if (WIDE) {
			uint32_t v1 = __shfl_sync(RCMOE_FULL_MASK, amax[1], src);
			uint32_t v3 = __shfl_sync(RCMOE_FULL_MASK, amax[3], src);
			am = jst == 0 ? v01 : jst == 1 ? v1 : jst == 2 ? v23 : v3;
		} else {
			am = (jst < 2 ? v01 : v23) >> (16 * (jst & 1)) & 0xffffu;
			am = rcmoe_fbits(rcmoe_to_f32(DT, am));
		}
		uint64_t b0 = te0 + ((uint64_t)bj << log2b);
		uint32_t m =
			(uint32_t)lane < nbw && b0 < n ? (uint32_t)min((uint64_t)B, n - b0) : 0u;
		float inv = 0.0f;
		int kind = m ? rcmoe_lsq_block_kind(am, m, BITS, ES, &scale, &inv) : RCMOE_LSQ_ZERO;
		kword = kind == RCMOE_LSQ_QUANT ? rcmoe_fbits(inv)
			: kind == RCMOE_LSQ_RAW ? LSQ_WORD_RAW
						: LSQ_WORD_ZERO;
		if (m) {
			s_kind[bj] = (uint8_t)kind;
			s_off[bj] = rcmoe_lsq_block_bytes(kind, m, BITS, ES);
		}
	}
	uint32_t kw[LSQ_STEPS]; /* the kind word of this lane's block in each step */
#pragma unroll
	for (int st = 0; st < LSQ_STEPS; st++)
		kw[st] = __shfl_sync(RCMOE_FULL_MASK, kword, (st * 256 + lane * 8) >> log2b);
	__syncthreads();

	/* offsets of the blocks in the tile, and the tile's size, published at once */
	uint32_t total, mine = s_off[threadIdx.x];
	uint32_t ex = block_exclusive_scan(mine, &total, s_scan);
	s_off[threadIdx.x] = ex;
	if (threadIdx.x == 0)
		lb_store(&a.states[tile], (tile == 0 ? RCMOE_LB_INC : RCMOE_LB_AGG) | total);

	/* this tile's bytes of the kind table (the last tile also writes the table's padding) */
	{
		uint64_t kb0 = (uint64_t)tile * (a.g.tb / 4);
		uint64_t nb = tile == a.g.ntiles - 1 ? a.g.kinds_bytes - min(kb0, a.g.kinds_bytes)
						     : a.g.tb / 4;
		uint32_t t = threadIdx.x;
		if (t < nb) {
			uint32_t v = 0;
			for (uint32_t k = 0; k < 4; k++)
				if (4 * t + k < a.g.tb)
					v |= (uint32_t)s_kind[4 * t + k] << (2 * k);
			a.dst[RCMOE_WIRE_HEADER_BYTES + kb0 + t] = (uint8_t)v;
		}
	}

	/* codes, while the predecessors publish. Two elements per draw, index (te0 + e) / 2; a
	 * tile's 4096 draw indexes never cross a multiple of 2^32, so the high half of the RNG
	 * key is computed once, and the draws' multiplied indexes (rcmoe_rng_lo) step by
	 * constants from two per-lane bases. */
	uint32_t code[LSQ_STEPS][2];
	{
		const uint32_t hikey = rcmoe_rng_hikey(a.key, (uint32_t)((te0 >> 1) >> 32));
		const uint32_t m0 = ((uint32_t)(te0 >> 1) + first / 2) * RCMOE_RNG_GOLDEN,
			       m1 = m0 + gap / 2 * RCMOE_RNG_GOLDEN;
#pragma unroll
		for (int st = 0; st < LSQ_STEPS; st++) {
			code[st][0] = code[st][1] = 0;
			if (!lsq_word_quantized(kw[st]))
				continue;
			const float inv = rcmoe_bitsf(kw[st]);
			uint32_t c[8];
#pragma unroll
			for (int p = 0; p < 4; p++) { /* pairs 0, 1: first half; 2, 3: second */
				uint32_t mi =
					(p < 2 ? m0 : m1) + (128u * st + p % 2) * RCMOE_RNG_GOLDEN;
				uint32_t r = rcmoe_hash32(mi ^ hikey);
				uint32_t x0 = WIDE ? raw[st][2 * p] : raw[st][p] & 0xffffu;
				uint32_t x1 = WIDE ? raw[st][2 * p + 1] : raw[st][p] >> 16;
				code_pair<DT>(x0, x1, inv, r, lb, c[2 * p], c[2 * p + 1]);
			}
			if (!full) { /* the codes of elements past n are 0 */
				for (int k = 0; k < 8; k++)
					if (te0 + first + 256 * st + (k < 4 ? k : gap + k - 4) >= n)
						c[k] = 0;
			}
			pack8<BITS>(c, code[st]);
		}
	}

	if (warp == 0) {
		uint64_t p = tile ? lb_exclusive_prefix(a.states, tile) : 0;
		if (lane == 0) {
			s_prefix = p;
			if (tile)
				lb_store(&a.states[tile], RCMOE_LB_INC | (p + total));
			if (tile == a.g.ntiles - 1)
				write_header(a.dst, a.hdr, a.g.kinds_bytes + p + total);
		}
	}
	__syncthreads();

	/* stores: lane j writes block j's scale; then each lane its code words (or raw elements)
	 * into its block, whose offset is s_off[block] */
	uint8_t *pl = a.dst + RCMOE_WIRE_HEADER_BYTES + a.g.kinds_bytes + s_prefix;
	if (lsq_word_quantized(kword))
		*(uint32_t *)(pl + s_off[bj]) = rcmoe_fbits(scale);
	/* the lane's code unit within its block's part of the step (8 bits: words gi and G + gi;
	 * 4 bits: word gi; 2 bits: half-word gi) */
	const uint32_t gi = lane & (G - 1);
#pragma unroll
	for (int st = 0; st < LSQ_STEPS; st++) {
		if (kw[st] == LSQ_WORD_ZERO)
			continue;
		const uint32_t off = lsq_off(warp, st, lane), bt = off >> log2b;
		uint8_t *base = pl + s_off[bt];
		if (kw[st] != LSQ_WORD_RAW) { /* quantized: zero blocks were skipped */
			/* word of the block at this step: for B >= 512, steps within the block add
			 * 64 words per step (8 bits), 32 (4 bits), 16 (2 bits) */
			const uint32_t sw = (256u * st & (B - 1)) * BITS / 32;
			uint32_t *cw = (uint32_t *)(base + 4) + sw;
			if (full) {
				if (BITS == 8) {
					cw[gi] = code[st][0];
					cw[G + gi] = code[st][1];
				} else if (BITS == 4) {
					cw[gi] = code[st][0];
				} else {
					((uint16_t *)cw)[gi] = (uint16_t)code[st][0];
				}
				continue;
			}
			uint64_t b0 = te0 + ((uint64_t)bt << log2b);
			uint32_t m = (uint32_t)min((uint64_t)B, n - b0); /* b0 < n: not ZERO */
			uint32_t words = (m * BITS + 31) / 32 - sw;      /* words from cw on */
			if (BITS == 8) {
				if (gi < words)
					cw[gi] = code[st][0];
				if (G + gi < words)
					cw[G + gi] = code[st][1];
			} else if (BITS == 4) {
				if (gi < words)
					cw[gi] = code[st][0];
			} else if (gi / 2 < words) {
				((uint16_t *)cw)[gi] = (uint16_t)code[st][0];
			}
		} else {
			for (int k = 0; k < 8; k++) {
				uint32_t o = first + 256 * st + (k < 4 ? k : gap + k - 4);
				uint32_t x = WIDE ? raw[st][k]
						  : raw[st][k / 2] >> (16 * (k % 2)) & 0xffffu;
				if (te0 + o < n)
					st_elem<DT>(base, o & (B - 1), x);
			}
		}
	}
}

template <int DT, int BITS>
__global__ void __launch_bounds__(LSQ_NT, DT == RCMOE_DT_FP32_ ? 3 : LSQ_ENC_MIN_CTAS)
	lsq_encode_kernel(const struct lsq_enc_args a)
{
	lsq_encode_tile<DT, BITS>(a, blockIdx.x);
}

/* Several streams in one launch (lsq_tile.cuh), each with its own tile states and ticket. */
typedef struct lsq_many_args<struct lsq_enc_args> lsq_enc_many_args;

template <int DT, int BITS>
__global__ void __launch_bounds__(LSQ_NT, DT == RCMOE_DT_FP32_ ? 3 : LSQ_ENC_MIN_CTAS)
	lsq_encode_many_kernel(const __grid_constant__ lsq_enc_many_args m)
{
	const int s = lsq_many_seg(m);
	lsq_encode_tile<DT, BITS>(m.seg[s], blockIdx.x - m.first_cta[s]);
}

extern "C" size_t rcmoe_gpu_lsq_work_bytes(size_t n, const struct rcmoe_lsq_cfg *cfg)
{
	struct lsq_geom g;
	if (rcmoe_lsq_check_cfg(cfg) != RCMOE_OK)
		return 0;
	lsq_geometry(n, cfg->block, &g);
	return lsq_work_bytes(&g);
}

/* Check one stream's arguments and fill its kernel arguments, with its tile states at states;
 * the caller places its ticket. */
static rcmoe_status_t enc_args(const void *d_src, size_t n, const struct rcmoe_lsq_cfg *cfg,
			       void *d_dst, size_t cap, void *d_work, unsigned long long *states,
			       struct lsq_enc_args *a)
{
	rcmoe_status_t st = rcmoe_lsq_check_cfg(cfg);
	if (st != RCMOE_OK)
		return st;
	st = rcmoe_gpu_encode_args(d_src, n, rcmoe_dtype_size(cfg->dtype), d_dst, d_work,
				   rcmoe_lsq_bound(n, cfg), cap);
	if (st != RCMOE_OK)
		return st;
	lsq_geometry(n, cfg->block, &a->g);
	struct rcmoe_wire_header h = rcmoe_lsq_header(n, cfg, 0); /* length: filled in on the GPU */
	rcmoe_wire_words(&h, a->hdr);
	a->src = (const uint8_t *)d_src;
	a->dst = (uint8_t *)d_dst;
	a->key = rcmoe_rng_key(cfg->seed, cfg->op_id, cfg->rank);
	a->states = states;
	a->vec = ((uintptr_t)d_src % 16) == 0;
	return RCMOE_OK;
}

/* Scratch of a many-stream launch: every stream's tile states, then one ticket per stream (8
 * bytes each, keeping the states of a next launch aligned). */
static size_t many_work_bytes(uint64_t tiles, int nseg)
{
	return (size_t)rcmoe_align_up(8ull * tiles + 8ull * (uint64_t)nseg, 256);
}

extern "C" size_t rcmoe_gpu_lsq_encode_many_work_bytes(const struct rcmoe_gpu_lsq_seg *segs,
						       int nseg)
{
	uint64_t tiles = 0;
	if (!segs || nseg < 1 || nseg > RCMOE_GPU_LSQ_MAX_SEGS)
		return 0;
	for (int s = 0; s < nseg; s++) {
		struct lsq_geom g;
		if (rcmoe_lsq_check_cfg(&segs[s].cfg) != RCMOE_OK)
			return 0;
		lsq_geometry(segs[s].n, segs[s].cfg.block, &g);
		tiles += g.ntiles;
	}
	return many_work_bytes(tiles, nseg);
}

extern "C" rcmoe_status_t rcmoe_gpu_lsq_encode_many(const struct rcmoe_gpu_lsq_seg *segs, int nseg,
						    void *d_work, size_t work_bytes,
						    cudaStream_t stream)
{
	lsq_enc_many_args m;
	if (!segs || nseg < 1 || nseg > RCMOE_GPU_LSQ_MAX_SEGS || !d_work)
		return RCMOE_ERR_INVALID;
	size_t need = rcmoe_gpu_lsq_encode_many_work_bytes(segs, nseg);
	if (need == 0 || work_bytes < need)
		return RCMOE_ERR_INVALID;
	unsigned long long *states = (unsigned long long *)d_work;
	uint64_t tiles = 0;
	m.nseg = nseg;
	for (int s = 0; s < nseg; s++) {
		const struct rcmoe_gpu_lsq_seg *g = &segs[s];
		if (g->cfg.dtype != segs[0].cfg.dtype || g->cfg.bits != segs[0].cfg.bits)
			return RCMOE_ERR_INVALID; /* one kernel instance for all */
		rcmoe_status_t st = enc_args(g->src, g->n, &g->cfg, g->dst, g->cap, d_work,
					     states + tiles, &m.seg[s]);
		if (st != RCMOE_OK)
			return st;
		m.seg[s].ticket = (unsigned int *)((char *)d_work + need - 8ull * (nseg - s));
		m.first_cta[s] = (uint32_t)tiles;
		tiles += m.seg[s].g.ntiles;
	}
	m.first_cta[nseg] = (uint32_t)tiles;
	if (rcmoe_gpu_fill(d_work, 0, need, stream) != RCMOE_OK)
		return RCMOE_ERR_CUDA;
	lsq_dispatch(segs[0].cfg.dtype, segs[0].cfg.bits, [&](auto dt, auto bits) {
		lsq_encode_many_kernel<dt.value, bits.value>
			<<<m.first_cta[nseg], LSQ_NT, 0, stream>>>(m);
	});
	return rcmoe_cuda_launch_status();
}

extern "C" rcmoe_status_t rcmoe_gpu_lsq_encode(const void *d_src, size_t n,
					       const struct rcmoe_lsq_cfg *cfg, void *d_dst,
					       size_t cap, void *d_work, size_t work_bytes,
					       cudaStream_t stream)
{
	struct lsq_enc_args a;
	unsigned long long *states = (unsigned long long *)d_work;
	rcmoe_status_t st = enc_args(d_src, n, cfg, d_dst, cap, d_work, states, &a);
	if (st != RCMOE_OK)
		return st;
	a.ticket = (unsigned int *)(states + a.g.ntiles);
	if (work_bytes < lsq_work_bytes(&a.g))
		return RCMOE_ERR_INVALID;
	if (lsq_clear_tile_states(d_work, &a.g, stream) != RCMOE_OK)
		return RCMOE_ERR_CUDA;
	lsq_dispatch(cfg->dtype, cfg->bits, [&](auto dt, auto bits) {
		lsq_encode_kernel<dt.value, bits.value><<<a.g.ntiles, LSQ_NT, 0, stream>>>(a);
	});
	return rcmoe_cuda_launch_status();
}
