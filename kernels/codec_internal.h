/* SPDX-License-Identifier: Apache-2.0 */
/* Internal glue between the CPU codec files (and the GPU launchers): byte access helpers, the
 * header as 16 words, and the per-codec validators and decoders behind rcmoe_codec_*. */
#ifndef RCMOE_CODEC_INTERNAL_H
#define RCMOE_CODEC_INTERNAL_H

#include <stdint.h>
#include <string.h>
#include "rcmoe/codec.h"
#include "codec_math.h"

#ifdef __cplusplus
extern "C" {
#endif

static inline uint32_t rcmoe_ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint16_t rcmoe_ld16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static inline void rcmoe_st32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static inline void rcmoe_st16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

/* Element i of a dtype array as raw bits (16-bit types in the low half). */
static inline uint32_t rcmoe_ld_elem(const uint8_t *base, uint32_t esize, uint64_t i)
{
	return esize == 4 ? rcmoe_ld32(base + 4 * i) : rcmoe_ld16(base + 2 * i);
}

static inline void rcmoe_st_elem(uint8_t *base, uint32_t esize, uint64_t i, uint32_t v)
{
	if (esize == 4)
		rcmoe_st32(base + 4 * i, v);
	else
		rcmoe_st16(base + 2 * i, (uint16_t)v);
}

/* The header as the 16 words the GPU encoders patch (payload_len) and finish (check word). */
void rcmoe_wire_words(const struct rcmoe_wire_header *hdr, uint32_t w[RCMOE_HW_WORDS]);

/* Structural validation behind rcmoe_codec_validate, header already parsed; payload points
 * after the header and holds hdr->payload_len bytes. */
/* What every CPU encoder checks before writing: its buffers, and room for its worst case
 * (`bound` 0: the configuration or the element count was refused). */
static inline rcmoe_status_t rcmoe_encode_args(const void *src, size_t n, const void *dst,
					       const size_t *len, size_t bound, size_t cap)
{
	if ((!src && n) || !dst || !len || bound == 0)
		return RCMOE_ERR_INVALID;
	return cap < bound ? RCMOE_ERR_OVERFLOW : RCMOE_OK;
}

rcmoe_status_t rcmoe_lsq_validate(const uint8_t *payload, const struct rcmoe_wire_header *hdr);
rcmoe_status_t rcmoe_pts_validate(const uint8_t *payload, const struct rcmoe_wire_header *hdr);
rcmoe_status_t rcmoe_dedup_validate(const uint8_t *payload, const struct rcmoe_wire_header *hdr);

/* Decoders of validated streams. */
void rcmoe_lsq_decode_valid(const uint8_t *payload, const struct rcmoe_wire_header *hdr, void *dst);

/* The element-at-a-time LSQ reference (lsq_ref.c) that rcmoe_lsq_encode and
 * rcmoe_lsq_decode_valid (specialised per dtype and bits) must match byte for byte; for tests. */
rcmoe_status_t rcmoe_lsq_encode_ref(const void *src, size_t n, const struct rcmoe_lsq_cfg *cfg,
				    void *dst, size_t cap, size_t *len);
void rcmoe_lsq_decode_valid_ref(const uint8_t *payload, const struct rcmoe_wire_header *hdr,
				void *dst);
/* The fast path's branch-free fp16 widening (finite inputs), for an exhaustive test against
 * rcmoe_f16_to_f32. */
float rcmoe_lsq_f16_widen(uint16_t h);

/* The header of an LSQ stream of n elements encoded with cfg, payload_len bytes following it:
 * what the fast CPU encoder, the reference and the GPU encoder all write. */
struct rcmoe_wire_header rcmoe_lsq_header(size_t n, const struct rcmoe_lsq_cfg *cfg,
					  uint64_t payload_len);

/* Which build of the specialised CPU loops (LSQ encode and decode, PTS selection and rounding,
 * the collective sum, the window-dedup hash) runs: the portable one (x86-64 baseline, SSE2) or,
 * on x86-64 CPUs that have them, one compiled for AVX2 or one for AVX-512 (F, BW, VL, DQ, with
 * 512-bit vectors) (cpu_isa.c). AUTO (the default) takes the widest the CPU has.
 * rcmoe_cpu_isa: 0 portable, 1 AVX2, 2 AVX-512. rcmoe_cpu_set_isa is for tests and benchmarks,
 * which compare every build against the reference; it returns 0, changing nothing, when the
 * CPU or the build lacks the one asked for. Not thread-safe against codecs running at the same
 * time. gcc vectorises for 256 bits by default even with AVX-512 (prefer-vector-width), clang
 * likewise (min_vector_width): both are told 512 here. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RCMOE_CPU_HAVE_AVX2    1
#define RCMOE_CPU_AVX2         __attribute__((target("avx2")))
#define RCMOE_CPU_IF_AVX2(...) __VA_ARGS__
#if defined(__clang__)
#define RCMOE_CPU_AVX512                                                                           \
	__attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512dq"), min_vector_width(512)))
#else
#define RCMOE_CPU_AVX512                                                                           \
	__attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512")))
#endif
#else
#define RCMOE_CPU_HAVE_AVX2 0
#define RCMOE_CPU_IF_AVX2(...)
#endif
enum { RCMOE_CPU_ISA_AUTO, RCMOE_CPU_ISA_PORTABLE, RCMOE_CPU_ISA_AVX2, RCMOE_CPU_ISA_AVX512 };
/* Rows of the per-build tables: portable, AVX2, AVX-512. */
#define RCMOE_CPU_NISA 3

/* A loop specialised per float datatype and per CPU build. BODY is an always-inline function
 * whose first parameter is the datatype and whose loops have fixed trip counts over restrict
 * pointers (what gcc -O2 vectorises); RCMOE_CPU_DTYPE_FNS(table, BODY, PARAMS, ARGS) defines it
 * as noinline functions for fp32, bf16 and fp16, each for the baseline, AVX2 and AVX-512 (one
 * function each: gcc 12 does not vectorise such a loop once inlined into an enclosing loop), and
 * `table[isa][rcmoe_cpu_dtype_index(dtype)]` of them (the x86 rows empty elsewhere). PARAMS
 * is the functions' parenthesised parameter list, ARGS the parenthesised names in it; the type
 * of an entry is rcmoe_cpu_fn_t(table). */
static inline uint32_t rcmoe_cpu_dtype_index(int dtype)
{
	return dtype == RCMOE_DT_FP32_ ? 0 : dtype == RCMOE_DT_BF16_ ? 1 : 2;
}
#define RCMOE_CPU_UNPAREN(...) __VA_ARGS__
#define RCMOE_CPU_FN_(name, attr, dtype, BODY, PARAMS, ARGS)                                       \
	attr __attribute__((noinline)) static void name PARAMS                                     \
	{                                                                                          \
		BODY(dtype, RCMOE_CPU_UNPAREN ARGS);                                               \
	}
#define RCMOE_CPU_FNS_ISA_(table, sfx, attr, BODY, PARAMS, ARGS)                                   \
	RCMOE_CPU_FN_(table##_fp32##sfx, attr, RCMOE_DT_FP32_, BODY, PARAMS, ARGS)                 \
	RCMOE_CPU_FN_(table##_bf16##sfx, attr, RCMOE_DT_BF16_, BODY, PARAMS, ARGS)                 \
	RCMOE_CPU_FN_(table##_fp16##sfx, attr, RCMOE_DT_FP16_, BODY, PARAMS, ARGS)
#define rcmoe_cpu_fn_t(table) table##_fn_t
#define RCMOE_CPU_DTYPE_FNS(table, BODY, PARAMS, ARGS)                                             \
	typedef void(*table##_fn_t) PARAMS;                                                        \
	RCMOE_CPU_FNS_ISA_(table, , , BODY, PARAMS, ARGS)                                          \
	RCMOE_CPU_IF_AVX2(RCMOE_CPU_FNS_ISA_(table, _avx2, RCMOE_CPU_AVX2, BODY, PARAMS, ARGS))    \
	RCMOE_CPU_IF_AVX2(                                                                         \
		RCMOE_CPU_FNS_ISA_(table, _avx512, RCMOE_CPU_AVX512, BODY, PARAMS, ARGS))          \
	static const table##_fn_t table[RCMOE_CPU_NISA][3] = {                                     \
		{ table##_fp32, table##_bf16, table##_fp16 },                                      \
		RCMOE_CPU_IF_AVX2({ table##_fp32_avx2, table##_bf16_avx2, table##_fp16_avx2 }),    \
		RCMOE_CPU_IF_AVX2(                                                                 \
			{ table##_fp32_avx512, table##_bf16_avx512, table##_fp16_avx512 }),        \
	};
int rcmoe_cpu_isa(void);
int rcmoe_cpu_set_isa(int isa);
/* rcmoe_pts_accumulate for streams already validated as rcmoe_pts_accumulate would (each a PTS
 * stream of n elements of dtype: rcmoe_codec_validate and those three fields), which it does not
 * repeat: for callers that had to validate first (rcmoe_codec_decode, the collective side). */
rcmoe_status_t rcmoe_pts_accumulate_valid(const void *const *payloads, const size_t *lens,
					  int npayloads, int dtype, void *dst, size_t n);
/* The window-dedup sender's hash of a block of bb bytes (bb a multiple of 4; wdedup.c defines
 * it, the GPU encoder computes the same); for tests, which compare it with the plain definition
 * in both builds of its loop. */
uint64_t rcmoe_wdedup_block_hash(const uint8_t *p, uint32_t bb);
void rcmoe_dedup_decode_valid(const uint8_t *payload, const struct rcmoe_wire_header *hdr,
			      void *dst);

/* PTS layout helpers shared with the GPU launchers. */
static inline uint64_t rcmoe_pts_nchunks(uint64_t n, uint32_t chunk)
{
	return (n + chunk - 1) / chunk;
}

/* Canonical fp64 L1 norm (see RCMOE_PTS_L1_CHUNK). */
double rcmoe_pts_l1(const void *src, size_t n, int dtype);

#ifdef __cplusplus
}
#endif
#endif
