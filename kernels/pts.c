/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PTS, CPU reference: encode, validate, accumulate. The GPU kernels (pts_encode.cu,
 * pts_decode.cu) produce the same bytes and the same sums. Payload (docs/stream-format.md):
 * sparse: a directory of one u32 per chunk (small count | large count << 16), then each chunk's
 * body (codec_math.h, struct rcmoe_pts_chunk); dense: the n raw elements.
 */
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"

rcmoe_status_t rcmoe_pts_check_cfg(const struct rcmoe_pts_cfg *cfg)
{
	if (!cfg || rcmoe_dt_size(cfg->dtype) == 0)
		return RCMOE_ERR_INVALID;
	if (!(cfg->density > 0.0 && cfg->density <= 1.0))
		return RCMOE_ERR_INVALID;
	if (cfg->chunk != 0 &&
	    (cfg->chunk < RCMOE_PTS_MIN_CHUNK || cfg->chunk > RCMOE_PTS_MAX_CHUNK ||
	     (cfg->chunk & (cfg->chunk - 1)) != 0))
		return RCMOE_ERR_INVALID;
	return RCMOE_OK;
}

static uint32_t cfg_chunk(const struct rcmoe_pts_cfg *cfg)
{
	return cfg->chunk ? cfg->chunk : RCMOE_PTS_DEFAULT_CHUNK;
}

size_t rcmoe_pts_bound(size_t n, const struct rcmoe_pts_cfg *cfg)
{
	if (rcmoe_pts_check_cfg(cfg) != RCMOE_OK || n > RCMOE_CODEC_MAX_COUNT)
		return 0;
	uint64_t nchunks = rcmoe_pts_nchunks(n, cfg_chunk(cfg));
	/* worst case: every element large (position + value, each padded per chunk); this is
	 * also more than the dense form */
	return RCMOE_WIRE_HEADER_BYTES + 4 * nchunks + 8 * nchunks +
	       (uint64_t)n * (2 + rcmoe_dt_size(cfg->dtype));
}

/* One L1 chunk's lane sums v[t] (the elements t, t + LANES, ... of the chunk starting at
 * element e0, in that order), inlined once per datatype: the loop has no datatype branch, and a
 * full chunk no bounds check. The additions and their order are the reference's, so the sum is
 * the same to the last bit. */
static inline __attribute__((always_inline)) void l1_chunk(const uint8_t *in, int dtype,
							   uint64_t e0, uint64_t n, double *v)
{
	uint32_t esize = dtype == RCMOE_DT_FP32 ? 4 : 2;
	if (e0 + RCMOE_PTS_L1_CHUNK <= n) {
		for (int i = 0; i < RCMOE_PTS_L1_CHUNK / RCMOE_PTS_L1_LANES; i++)
			for (int t = 0; t < RCMOE_PTS_L1_LANES; t++) {
				uint64_t idx = e0 + (uint64_t)i * RCMOE_PTS_L1_LANES + t;
				float x = rcmoe_to_f32(dtype, rcmoe_ld_elem(in, esize, idx));
				v[t] += (double)rcmoe_bitsf(rcmoe_fbits(x) & 0x7fffffffu);
			}
		return;
	}
	for (int i = 0; i < RCMOE_PTS_L1_CHUNK / RCMOE_PTS_L1_LANES; i++) {
		for (int t = 0; t < RCMOE_PTS_L1_LANES; t++) {
			uint64_t idx = e0 + (uint64_t)i * RCMOE_PTS_L1_LANES + t;
			if (idx >= n)
				return;
			float x = rcmoe_to_f32(dtype, rcmoe_ld_elem(in, esize, idx));
			v[t] += (double)rcmoe_bitsf(rcmoe_fbits(x) & 0x7fffffffu);
		}
	}
}

double rcmoe_pts_l1(const void *src, size_t n, int dtype)
{
	const uint8_t *in = src;
	double lanes[RCMOE_PTS_L1_LANES] = { 0 }, v[RCMOE_PTS_L1_LANES];
	uint64_t nchunks = (n + RCMOE_PTS_L1_CHUNK - 1) / RCMOE_PTS_L1_CHUNK, c;
	int t, s;

	for (c = 0; c < nchunks; c++) {
		memset(v, 0, sizeof(v));
		uint64_t e0 = c * RCMOE_PTS_L1_CHUNK;
		switch (dtype) {
		case RCMOE_DT_FP32: l1_chunk(in, RCMOE_DT_FP32, e0, n, v); break;
		case RCMOE_DT_BF16: l1_chunk(in, RCMOE_DT_BF16, e0, n, v); break;
		default: l1_chunk(in, RCMOE_DT_FP16, e0, n, v);
		}
		for (s = RCMOE_PTS_L1_LANES / 2; s >= 1; s >>= 1)
			for (t = 0; t < s; t++)
				v[t] += v[t + s];
		lanes[c % RCMOE_PTS_L1_LANES] += v[0];
	}
	for (s = RCMOE_PTS_L1_LANES / 2; s >= 1; s >>= 1)
		for (t = 0; t < s; t++)
			lanes[t] += lanes[t + s];
	return lanes[0];
}

static void set_bit(uint8_t *words, uint64_t bit)
{
	uint8_t *p = words + 4 * (bit / 32);
	rcmoe_st32(p, rcmoe_ld32(p) | 1u << (bit % 32));
}

static int get_bit(const uint8_t *words, uint64_t bit)
{
	return (rcmoe_ld32(words + 4 * (bit / 32)) >> (bit % 32)) & 1;
}

/* k (<= 15) bits at bit offset `bit` of a little-endian word array. */
static uint32_t get_bits(const uint8_t *words, uint64_t bit, uint32_t k)
{
	if (k == 0)
		return 0;
	uint32_t sh = (uint32_t)(bit % 32);
	uint32_t v = rcmoe_ld32(words + 4 * (bit / 32)) >> sh;
	if (sh + k > 32)
		v |= rcmoe_ld32(words + 4 * (bit / 32 + 1)) << (32 - sh);
	return v & ((1u << k) - 1);
}

static void put_bits(uint8_t *words, uint64_t bit, uint32_t k, uint32_t v)
{
	uint32_t j;
	for (j = 0; j < k; j++)
		if ((v >> j) & 1)
			set_bit(words, bit + j);
}

/* One chunk body. sel[] holds each element's selection, raw[] its bits. */
static void write_chunk(uint8_t *body, const struct rcmoe_pts_chunk *L, uint32_t len,
			uint32_t esize, const uint8_t *sel, const uint8_t *raw, const uint8_t *neg)
{
	uint8_t *idx = body, *sign = body + 4 * L->idx_words;
	uint8_t *pos = sign + 4 * L->sign_words, *val = pos + L->pos_bytes;
	uint32_t p, j = 0, e = 0;

	memset(body, 0, L->bytes);
	for (p = 0; p < len; p++) {
		/* Most elements are dropped (density 0.01: about 99 in 100): skip 8 at a time. */
		if (p % 8 == 0 && len - p >= 8) {
			uint64_t eight;
			memcpy(&eight, sel + p, 8);
			if (!eight) {
				p += 7;
				continue;
			}
		}
		if (sel[p] == RCMOE_PTS_SMALL) {
			if (!L->ef) {
				set_bit(idx, p);
			} else {
				put_bits(idx, (uint64_t)j * L->k, L->k, p & ((1u << L->k) - 1));
				set_bit(idx + 4 * L->low_words, (p >> L->k) + j);
			}
			if (neg[p])
				set_bit(sign, j);
			j++;
		} else if (sel[p] == RCMOE_PTS_LARGE) {
			rcmoe_st16(pos + 2 * e, (uint16_t)p);
			memcpy(val + (size_t)esize * e, raw + (size_t)esize * p, esize);
			e++;
		}
	}
}

/* Elements per step of the selection loop. A step has a trip count fixed at compile time and
 * restrict pointers, so gcc -O2 (its "very cheap" cost model, lsq.c) vectorises it; a chunk is a
 * whole number of steps (chunks are powers of two >= RCMOE_PTS_MIN_CHUNK) but for the stream's
 * last, whose tail takes the scalar loop. A step is a function of its own (pts_steps, below,
 * RCMOE_CPU_DTYPE_FNS); the call costs little against 64 draws. */
#define PTS_STEP 64

/* The selection of PTS_STEP elements, the first with lo32(index) = lo: rcmoe_pts_select with the
 * draw rcmoe_rng_lo(hikey, lo + t), written without branches: large when |g| >= tau and g is not
 * zero; small when |g| < tau and u * tau < |g| (which rejects zeros and NaN, as the reference's
 * test that |g| > 0 does, since u * tau >= 0). Adds the counts of small and large elements. */
static inline __attribute__((always_inline)) void
select_step(int dtype, const uint8_t *restrict in, uint32_t lo, uint32_t hikey, float tau,
	    uint8_t *restrict sel, uint8_t *restrict neg, uint32_t *restrict small,
	    uint32_t *restrict large)
{
	uint32_t esize = dtype == RCMOE_DT_FP32 ? 4 : 2, ns = 0, nl = 0;
	for (uint32_t t = 0; t < PTS_STEP; t++) {
		float g = rcmoe_to_f32(dtype, rcmoe_ld_elem(in, esize, t));
		uint32_t bits = rcmoe_fbits(g);
		float a = rcmoe_bitsf(bits & 0x7fffffffu);
		float u = rcmoe_rng_unit(rcmoe_rng_lo(hikey, lo + t));
		uint32_t is_large = (uint32_t)(a >= tau) & (uint32_t)(a > 0.0f);
		uint32_t is_small = (uint32_t) !(a >= tau) & (uint32_t)(rcmoe_fmul(u, tau) < a);
		sel[t] = (uint8_t)(is_large * RCMOE_PTS_LARGE + is_small * RCMOE_PTS_SMALL);
		neg[t] = (uint8_t)(bits >> 31);
		ns += is_small;
		nl += is_large;
	}
	*small += ns;
	*large += nl;
}

/* select_step per datatype and CPU build: the draws multiply 32-bit lanes, which SSE2 lacks. The
 * same bytes either way (integer operations, and the same single fp32 roundings: no FMA to
 * contract into). */
RCMOE_CPU_DTYPE_FNS(pts_steps, select_step,
		    (const uint8_t *restrict in, uint32_t lo, uint32_t hikey, float tau,
		     uint8_t *restrict sel, uint8_t *restrict neg, uint32_t *restrict small,
		     uint32_t *restrict large),
		    (in, lo, hikey, tau, sel, neg, small, large))

/* Each element's selection for one chunk (elements e0 .. e0 + l - 1): the reference rule,
 * rcmoe_pts_select with the draw rcmoe_rng_at(key, i), in steps of PTS_STEP (`step`, the
 * datatype's) and the scalar rule for a last chunk's tail. The draw's high key is taken once
 * per chunk: a chunk (a power of two no larger than 2^14, starting at a multiple of its size)
 * never crosses a multiple of 2^32. */
static void select_chunk(const uint8_t *in, int dtype, rcmoe_cpu_fn_t(pts_steps) step, uint64_t e0,
			 uint32_t l, float tau, uint64_t key, uint8_t *sel, uint8_t *neg,
			 uint32_t *m, uint32_t *nl)
{
	uint32_t esize = rcmoe_dt_size(dtype), small = 0, large = 0, p;
	uint32_t hikey = rcmoe_rng_hikey(key, (uint32_t)(e0 >> 32));
	for (p = 0; p + PTS_STEP <= l; p += PTS_STEP)
		step(in + (e0 + p) * esize, (uint32_t)(e0 + p), hikey, tau, sel + p, neg + p,
		     &small, &large);
	for (; p < l; p++) {
		uint64_t i = e0 + p;
		float g = rcmoe_to_f32(dtype, rcmoe_ld_elem(in, esize, i));
		int s = rcmoe_pts_select(g, tau, rcmoe_rng_lo(hikey, (uint32_t)i));
		sel[p] = (uint8_t)s;
		neg[p] = (uint8_t)(rcmoe_fbits(g) >> 31);
		small += s == RCMOE_PTS_SMALL;
		large += s == RCMOE_PTS_LARGE;
	}
	*m += small;
	*nl += large;
}

rcmoe_status_t rcmoe_pts_encode(const void *src, size_t n, const struct rcmoe_pts_cfg *cfg,
				void *dst, size_t cap, size_t *len)
{
	rcmoe_status_t st = rcmoe_pts_check_cfg(cfg);
	if (st != RCMOE_OK)
		return st;
	st = rcmoe_encode_args(src, n, dst, len, rcmoe_pts_bound(n, cfg), cap);
	if (st != RCMOE_OK)
		return st;

	const uint8_t *in = src;
	uint8_t *payload = (uint8_t *)dst + RCMOE_WIRE_HEADER_BYTES;
	uint32_t esize = rcmoe_dt_size(cfg->dtype), C = cfg_chunk(cfg), tau_bits;
	uint64_t key = rcmoe_rng_key(cfg->seed, cfg->op_id, cfg->rank);
	int dense = rcmoe_pts_tau(rcmoe_pts_l1(src, n, cfg->dtype), cfg->density, n, cfg->dtype,
				  &tau_bits);
	uint64_t off;

	if (dense) {
		memcpy(payload, in, (size_t)n * esize);
		off = (uint64_t)n * esize;
	} else {
		uint64_t nchunks = rcmoe_pts_nchunks(n, C), c;
		float tau = rcmoe_bitsf(tau_bits);
		rcmoe_cpu_fn_t(pts_steps) step =
			pts_steps[rcmoe_cpu_isa()][rcmoe_cpu_dtype_index(cfg->dtype)];
		uint8_t *sel = malloc((size_t)C * 2);
		if (!sel)
			return RCMOE_ERR_NOMEM;
		uint8_t *neg = sel + C;
		off = 4 * nchunks;
		for (c = 0; c < nchunks; c++) {
			uint64_t e0 = c * C;
			uint32_t l = (uint32_t)(n - e0 < C ? n - e0 : C), m = 0, nl = 0;
			struct rcmoe_pts_chunk L;
			select_chunk(in, cfg->dtype, step, e0, l, tau, key, sel, neg, &m, &nl);
			rcmoe_pts_chunk_layout(m, nl, l, esize, &L);
			rcmoe_st32(payload + 4 * c, m | nl << 16);
			write_chunk(payload + off, &L, l, esize, sel, in + e0 * esize, neg);
			off += L.bytes;
		}
		free(sel);
	}

	struct rcmoe_wire_header h = {
		.magic = RCMOE_WIRE_MAGIC,
		.version = RCMOE_WIRE_VERSION,
		.codec = RCMOE_CODEC_PTS,
		.dtype = (uint8_t)cfg->dtype,
		.flags = dense ? RCMOE_PTS_DENSE : 0,
		.block = C,
		.count = n,
		.seed = cfg->seed,
		.op_id = cfg->op_id,
		.rank = cfg->rank,
		.payload_len = off,
		.aux = tau_bits,
	};
	rcmoe_wire_write(dst, &h);
	*len = RCMOE_WIRE_HEADER_BYTES + off;
	return RCMOE_OK;
}

/* Small positions of a chunk body into pos[] (ascending), with checks when `check`: exactly m
 * of them, strictly increasing, < len, and zero padding bits. Returns 0 when malformed. */
static int small_positions(const uint8_t *body, const struct rcmoe_pts_chunk *L, uint32_t m,
			   uint32_t len, uint16_t *pos, int check)
{
	uint32_t j = 0, w, b;
	if (m == 0)
		return 1;
	if (!L->ef) {
		for (w = 0; w < L->idx_words; w++) {
			uint32_t word = rcmoe_ld32(body + 4 * w);
			for (; word; word &= word - 1) { /* set bits, lowest first */
				b = (uint32_t)__builtin_ctz(word);
				if (check && (w * 32 + b >= len || j >= m))
					return 0;
				pos[j++] = (uint16_t)(w * 32 + b);
			}
		}
		return !check || j == m;
	}
	const uint8_t *low = body, *high = body + 4 * L->low_words;
	uint64_t lowbits = (uint64_t)m * L->k;
	int64_t prev = -1;
	if (check)
		for (uint64_t bit = lowbits; bit < (uint64_t)L->low_words * 32; bit++)
			if (get_bit(low, bit))
				return 0;
	for (w = 0; w < L->high_words; w++) {
		uint32_t word = rcmoe_ld32(high + 4 * w);
		for (; word; word &= word - 1) {
			b = (uint32_t)__builtin_ctz(word);
			if (check && j >= m)
				return 0;
			uint32_t bucket = w * 32 + b - j;
			uint32_t p = bucket << L->k | get_bits(low, (uint64_t)j * L->k, L->k);
			if (check && (p >= len || (int64_t)p <= prev))
				return 0;
			prev = p;
			pos[j++] = (uint16_t)p;
		}
	}
	return !check || j == m;
}

rcmoe_status_t rcmoe_pts_validate(const uint8_t *payload, const struct rcmoe_wire_header *hdr)
{
	uint32_t esize = rcmoe_dt_size(hdr->dtype), C = hdr->block;
	uint64_t n = hdr->count;

	if (hdr->flags & RCMOE_PTS_DENSE)
		return hdr->payload_len == n * esize ? RCMOE_OK : RCMOE_ERR_MALFORMED;

	uint64_t nchunks = rcmoe_pts_nchunks(n, C), off = 4 * nchunks, c;
	if (hdr->payload_len < off)
		return RCMOE_ERR_MALFORMED;
	uint16_t *pos = malloc((size_t)C * sizeof(uint16_t) + (size_t)C / 8);
	if (!pos)
		return RCMOE_ERR_NOMEM;
	uint8_t *member = (uint8_t *)(pos + C);
	rcmoe_status_t st = RCMOE_ERR_MALFORMED;

	for (c = 0; c < nchunks; c++) {
		uint32_t entry = rcmoe_ld32(payload + 4 * c), m = entry & 0xffffu, nl = entry >> 16;
		uint32_t len = (uint32_t)(n - c * C < C ? n - c * C : C), j, bit;
		struct rcmoe_pts_chunk L;
		if ((uint64_t)m + nl > len || (m > 0 && hdr->aux == 0))
			goto out;
		rcmoe_pts_chunk_layout(m, nl, len, esize, &L);
		if (L.bytes > hdr->payload_len - off)
			goto out;
		const uint8_t *body = payload + off, *sign = body + 4 * L.idx_words;
		const uint8_t *lpos = sign + 4 * L.sign_words, *val = lpos + L.pos_bytes;
		if (!small_positions(body, &L, m, len, pos, 1))
			goto out;
		for (bit = m; bit < L.sign_words * 32; bit++)
			if (get_bit(sign, bit))
				goto out;
		memset(member, 0, (len + 7) / 8);
		for (j = 0; j < m; j++)
			member[pos[j] / 8] |= (uint8_t)(1u << (pos[j] % 8));
		for (j = 0; j < nl; j++) {
			uint32_t p = rcmoe_ld16(lpos + 2 * j);
			if (p >= len || (member[p / 8] >> (p % 8)) & 1)
				goto out;
			if (j > 0 && p <= rcmoe_ld16(lpos + 2 * (j - 1)))
				goto out;
		}
		for (j = 2 * nl; j < L.pos_bytes; j++)
			if (lpos[j])
				goto out;
		for (j = esize * nl; j < L.val_bytes; j++)
			if (val[j])
				goto out;
		off += L.bytes;
	}
	if (off == hdr->payload_len)
		st = RCMOE_OK;
out:
	free(pos);
	return st;
}

/* Where a validated payload's next chunk body starts, walking it chunk by chunk. */
struct pts_cursor {
	const uint8_t *payload;
	struct rcmoe_wire_header h;
	uint64_t off;
};

/* acc[0 .. chunk's length) += chunk c of a validated sparse payload, the chunk the cursor is
 * at. pos: scratch of `chunk` u16. */
static void accumulate_chunk(float *acc, struct pts_cursor *cur, uint64_t c, uint16_t *pos)
{
	const struct rcmoe_wire_header *h = &cur->h;
	uint32_t esize = rcmoe_dt_size(h->dtype), C = h->block;
	float tau = rcmoe_bitsf(h->aux), ntau = rcmoe_bitsf(h->aux | 0x80000000u);
	uint32_t entry = rcmoe_ld32(cur->payload + 4 * c), m = entry & 0xffffu, nl = entry >> 16;
	uint32_t len = (uint32_t)(h->count - c * C < C ? h->count - c * C : C), j;
	struct rcmoe_pts_chunk L;
	rcmoe_pts_chunk_layout(m, nl, len, esize, &L);
	const uint8_t *body = cur->payload + cur->off, *sign = body + 4 * L.idx_words;
	const uint8_t *lpos = sign + 4 * L.sign_words, *val = lpos + L.pos_bytes;
	small_positions(body, &L, m, len, pos, 0);
	for (j = 0; j < m; j++)
		acc[pos[j]] = rcmoe_fadd_acc(acc[pos[j]], get_bit(sign, j) ? ntau : tau);
	for (j = 0; j < nl; j++) {
		uint32_t p = rcmoe_ld16(lpos + 2 * j);
		acc[p] = rcmoe_fadd_acc(acc[p],
					rcmoe_to_f32(h->dtype, rcmoe_ld_elem(val, esize, j)));
	}
	cur->off += L.bytes;
}

/* The rounding of the sum into the datatype, in steps of PTS_STEP elements built like the
 * selection's (one function per datatype and ISA, restrict pointers, a fixed trip count, so gcc
 * -O2 vectorises them), and the scalar loop for a window's tail. */
static inline __attribute__((always_inline)) void store_step(int dtype, uint8_t *restrict dst,
							     const float *restrict acc)
{
	uint32_t esize = dtype == RCMOE_DT_FP32 ? 4 : 2;
	for (uint32_t i = 0; i < PTS_STEP; i++)
		rcmoe_st_elem(dst, esize, i, rcmoe_from_f32(dtype, acc[i]));
}

RCMOE_CPU_DTYPE_FNS(pts_stores, store_step, (uint8_t *restrict dst, const float *restrict acc),
		    (dst, acc))

/* acc[0 .. l) rounded into the datatype at dst. */
static void store_acc(uint8_t *dst, int dtype, const float *acc, uint32_t l)
{
	uint32_t esize = rcmoe_dt_size(dtype), i;
	rcmoe_cpu_fn_t(pts_stores) step = pts_stores[rcmoe_cpu_isa()][rcmoe_cpu_dtype_index(dtype)];
	for (i = 0; i + PTS_STEP <= l; i += PTS_STEP)
		step(dst + (size_t)i * esize, acc + i);
	for (; i < l; i++)
		rcmoe_st_elem(dst, esize, i, rcmoe_from_f32(dtype, acc[i]));
}

rcmoe_status_t rcmoe_pts_accumulate(const void *const *payloads, const size_t *lens, int npayloads,
				    int dtype, void *dst, size_t n)
{
	uint32_t esize = rcmoe_dt_size(dtype);
	struct rcmoe_wire_header h;
	rcmoe_status_t st;

	if (esize == 0 || npayloads < 0 || (npayloads > 0 && (!payloads || !lens)) || (!dst && n) ||
	    n > RCMOE_CODEC_MAX_COUNT)
		return RCMOE_ERR_INVALID;
	for (int r = 0; r < npayloads; r++) {
		st = rcmoe_codec_validate(payloads[r], lens[r], (size_t)n * esize, &h);
		if (st != RCMOE_OK)
			return st;
		if (h.codec != RCMOE_CODEC_PTS || h.dtype != dtype || h.count != n)
			return RCMOE_ERR_INVALID;
	}
	return rcmoe_pts_accumulate_valid(payloads, lens, npayloads, dtype, dst, n);
}

rcmoe_status_t rcmoe_pts_accumulate_valid(const void *const *payloads, const size_t *lens,
					  int npayloads, int dtype, void *dst, size_t n)
{
	uint32_t esize = rcmoe_dt_size(dtype), W = RCMOE_PTS_MIN_CHUNK;
	struct pts_cursor *cur = malloc((npayloads ? (size_t)npayloads : 1) * sizeof(*cur));
	if (!cur)
		return RCMOE_ERR_NOMEM;
	for (int r = 0; r < npayloads; r++) {
		rcmoe_wire_parse(payloads[r], lens[r], &cur[r].h);
		cur[r].payload = (const uint8_t *)payloads[r] + RCMOE_WIRE_HEADER_BYTES;
		cur[r].off = 4 * rcmoe_pts_nchunks(n, cur[r].h.block);
		W = cur[r].h.block > W ? cur[r].h.block : W;
	}
	/* The sum goes window by window, W (the largest chunk, a power of two, so a whole number
	 * of every payload's chunks) elements at a time, every payload in order within each: the
	 * same additions in the same order as a pass per payload over the whole output, with an
	 * accumulator that stays in cache and is not allocated (and faulted in) per call. */
	float *acc = malloc((size_t)W * sizeof(float));
	uint16_t *pos = malloc((size_t)W * sizeof(uint16_t));
	if (!acc || !pos) {
		free(acc);
		free(pos);
		free(cur);
		return RCMOE_ERR_NOMEM;
	}
	for (uint64_t w0 = 0; w0 < n; w0 += W) {
		uint32_t wl = (uint32_t)(n - w0 < W ? n - w0 : W);
		memset(acc, 0, (size_t)wl * sizeof(float));
		for (int r = 0; r < npayloads; r++) {
			const struct rcmoe_wire_header *ph = &cur[r].h;
			if (ph->flags & RCMOE_PTS_DENSE) {
				for (uint32_t i = 0; i < wl; i++)
					acc[i] = rcmoe_fadd_acc(
						acc[i],
						rcmoe_to_f32(dtype, rcmoe_ld_elem(cur[r].payload,
										  esize, w0 + i)));
				continue;
			}
			uint32_t C = ph->block;
			for (uint64_t c = w0 / C; c * C < w0 + wl; c++)
				accumulate_chunk(acc + (c * C - w0), &cur[r], c, pos);
		}
		store_acc((uint8_t *)dst + w0 * esize, dtype, acc, wl);
	}
	free(acc);
	free(pos);
	free(cur);
	return RCMOE_OK;
}
