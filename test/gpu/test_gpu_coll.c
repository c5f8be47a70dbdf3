/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collective side (collNet all-reduce) with device buffers (NCCL_PTR_CUDA):
 *  - rank_sum: the GPU's rank-order sum against plugin/coll/sum.c byte for byte (fp32, fp16,
 *    bf16; 1 to 7 sources; odd sizes and misaligned pointers; NaN payloads, Inf, subnormals,
 *    overflow; in place);
 *  - the exported collNet table, 2 to 4 ranks in one process over 127.0.0.1 (test/coll's
 *    harness), lossless, PTS and LSQ two-step: every call is run once on host buffers and once
 *    on device buffers in a fresh mesh (same seed, same call numbers), and each rank's device
 *    result must be the bytes of its host result (so mixed ranks would agree), and the same on
 *    every rank; NaN and Inf included;
 *  - 12 calls in flight at once (more than the comm's GPU lanes), lossless, PTS and LSQ: the
 *    device results are the host path's bytes;
 *  - NCCL's staging (the first registration) cleared after a lossy call's encode on the GPU too,
 *    a user's device buffer never.
 * Each test skips, saying why, when no GPU is visible; CUDA is touched only inside the tests
 * (each runs in its own forked process), never in Criterion's runner.
 */
#include <criterion/criterion.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_data.h"
#include "coll_mesh.h"
#include "codec_math.h"
#include "sum.h"
#include "rcmoe/kernels.h"
#include "test_log.h"

static void setup(void)
{
	int count = 0;
	test_log_init();
	setenv("RCMOE_SOCKET_IFNAME", "lo", 1);
	setenv("RCMOE_SOCKET_NSTREAMS", "2", 1);
	setenv("RCMOE_SOCKET_NTHREADS", "1", 1);
	setenv("RCMOE_AR_MIN_BYTES", "0", 1);
	setenv("RCMOE_CUDA_BUFFERS", "on", 1);
	signal(SIGPIPE, SIG_IGN);
	cudaError_t e = cudaGetDeviceCount(&count);
	if (e != cudaSuccess || count == 0)
		cr_skip_test("no CUDA device visible (cudaGetDeviceCount: %s, %d devices): the "
			     "collective side's GPU path needs one",
			     cudaGetErrorString(e), count);
}

TestSuite(gpu_coll, .init = setup, .timeout = 600);

#define CK(call)                                                                                   \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		cr_assert_eq(e_, cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_));            \
	} while (0)

/* ---- rank_sum against sum.c ---- */

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint32_t next32(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

/* Element bits: mostly ordinary values of several magnitudes, and every special kind. */
static uint32_t special_bits(int dtype)
{
	uint32_t u = next32(), kind = u % 16;
	if (dtype == RCMOE_DT_FP32) {
		switch (kind) {
		case 0: return 0x7fc00000u | (next32() & 0x3fffffu);   /* quiet NaN */
		case 1: return 0x7f800001u | (next32() & 0x3fffffu);   /* signalling */
		case 2: return 0xff800000u;                            /* -Inf */
		case 3: return 0x7f800000u;                            /* +Inf */
		case 4: return next32() & 0x807fffffu;                 /* subnormal */
		case 5: return 0x7f7fffffu | (next32() & 0x80000000u); /* max: overflow */
		case 6: return next32() & 0x80000000u;                 /* +-0 */
		default: return rcmoe_fbits((float)((int)(next32() % 2001) - 1000) / 64.0f);
		}
	}
	uint32_t exp_mask = dtype == RCMOE_DT_FP16 ? 0x7c00u : 0x7f80u;
	uint32_t man_mask = dtype == RCMOE_DT_FP16 ? 0x03ffu : 0x007fu;
	switch (kind) {
	case 0: return exp_mask | 1u | (next32() & man_mask) | (next32() & 0x8000u); /* NaN */
	case 1: return exp_mask;
	case 2: return exp_mask | 0x8000u;
	case 3: return next32() & (man_mask | 0x8000u);                /* subnormal, 0 */
	case 4: return (exp_mask - (exp_mask & -exp_mask)) | man_mask; /* max: overflow */
	default: return rcmoe_from_f32(dtype, (float)((int)(next32() % 2001) - 1000) / 64.0f);
	}
}

static void put_bits(int dtype, void *buf, size_t i, uint32_t v)
{
	if (dtype == RCMOE_DT_FP32)
		memcpy((char *)buf + 4 * i, &v, 4);
	else {
		uint16_t h = (uint16_t)v;
		memcpy((char *)buf + 2 * i, &h, 2);
	}
}

static void rank_sum_case(int dtype, int nsrc, size_t n, size_t shift, int in_place)
{
	size_t es = dtype == RCMOE_DT_FP32 ? 4 : 2, bytes = (n + shift) * es;
	void *h_src[8], *d_src[8], *h_ref = malloc(bytes ? bytes : 1), *h_got = malloc(bytes + 1);
	const void *h_ptr[8], *d_ptr[8];
	void *d_dst = NULL;
	cudaStream_t s;
	cr_assert(h_ref && h_got);
	CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	for (int k = 0; k < nsrc; k++) {
		h_src[k] = malloc(bytes ? bytes : 1);
		cr_assert(h_src[k]);
		for (size_t i = 0; i < n + shift; i++)
			put_bits(dtype, h_src[k], i, special_bits(dtype));
		CK(cudaMalloc(&d_src[k], bytes ? bytes : 1));
		CK(cudaMemcpy(d_src[k], h_src[k], bytes, cudaMemcpyHostToDevice));
		CK(cudaDeviceSynchronize()); /* landed before a kernel on another stream reads it */
		h_ptr[k] = (char *)h_src[k] + shift * es;
		d_ptr[k] = (char *)d_src[k] + shift * es;
	}
	cr_assert_eq(rcmoe_coll_sum(dtype, h_ptr, nsrc, (char *)h_ref + shift * es, n), RCMOE_OK);
	if (in_place) {
		d_dst = (void *)d_ptr[0];
	} else {
		CK(cudaMalloc(&d_dst, bytes + es));
		d_dst = (char *)d_dst + shift * es;
	}
	cr_assert_eq(rcmoe_gpu_rank_sum(dtype, d_ptr, nsrc, d_dst, n, s), RCMOE_OK);
	CK(cudaStreamSynchronize(s));
	CK(cudaMemcpy(h_got, d_dst, n * es, cudaMemcpyDeviceToHost));
	for (size_t i = 0; i < n; i++) {
		uint32_t want = 0, got = 0;
		memcpy(&want, (char *)h_ref + (shift + i) * es, es);
		memcpy(&got, (char *)h_got + i * es, es);
		cr_assert_eq(got, want,
			     "dtype %d, %d sources, n %zu, shift %zu%s: element %zu is 0x%x, sum.c "
			     "gives 0x%x",
			     dtype, nsrc, n, shift, in_place ? ", in place" : "", i, got, want);
	}
	for (int k = 0; k < nsrc; k++) {
		cudaFree(d_src[k]);
		free(h_src[k]);
	}
	if (!in_place)
		cudaFree((char *)d_dst - shift * es);
	cudaStreamDestroy(s);
	free(h_ref);
	free(h_got);
}

Test(gpu_coll, rank_sum_same_bytes_as_sum_c)
{
	static const int dtypes[] = { RCMOE_DT_FP32, RCMOE_DT_FP16, RCMOE_DT_BF16 };
	static const int nsrcs[] = { 1, 2, 3, 4, 7 };
	static const size_t sizes[] = { 0, 1, 17, 1001, 65539, 300007 };
	for (size_t d = 0; d < 3; d++)
		for (size_t k = 0; k < sizeof(nsrcs) / sizeof(nsrcs[0]); k++)
			for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
				rank_sum_case(dtypes[d], nsrcs[k], sizes[z], z % 2, 0);
				if (z % 3 == 1)
					rank_sum_case(dtypes[d], nsrcs[k], sizes[z], 0, 1);
			}
}

Test(gpu_coll, rank_sum_refuses_misuse)
{
	const void *src[2] = { NULL, NULL };
	cr_expect_eq(rcmoe_gpu_rank_sum(RCMOE_DT_FP32, src, 0, NULL, 0, 0), RCMOE_ERR_INVALID);
	cr_expect_eq(rcmoe_gpu_rank_sum(3, src, 1, NULL, 0, 0), RCMOE_ERR_INVALID);
	cr_expect_eq(
		rcmoe_gpu_rank_sum(RCMOE_DT_FP32, src, RCMOE_GPU_RANK_SUM_MAX_SRCS + 1, NULL, 0, 0),
		RCMOE_ERR_INVALID);
	cr_expect_eq(rcmoe_gpu_rank_sum(RCMOE_DT_FP32, src, 2, (void *)16, 4, 0),
		     RCMOE_ERR_INVALID);
}

/* ---- the collective side: device buffers give the host path's bits ---- */

static const ncclDataType_t dtypes[] = { ncclFloat32, ncclBfloat16, ncclFloat16 };
static const size_t counts[] = { 1, 17, 1001, 70001, 1 << 20 };
#define NCOUNTS  (sizeof(counts) / sizeof(counts[0]))
#define MAXBYTES ((size_t)(1 << 20) * 4)

static int use_gpu;
static void *results[2][MESH_MAX_RANKS][3][NCOUNTS];

/* The region a body's calls use, on the device or the host as use_gpu says, registered as the
 * comm's first region (NCCL's staging); NULL (the rank failed, saying why) when it cannot be. */
static char *region_open(struct mesh_rank *r, size_t bytes, void **mh)
{
	char *region = NULL;
	if (use_gpu ? cudaMalloc((void **)&region, bytes) != cudaSuccess
		    : (region = malloc(bytes)) == NULL) {
		rank_check(r, 0, "no memory for a %zu-byte region", bytes);
		return NULL;
	}
	if (rank_check(r,
		       coll_reg_type(r, region, bytes, use_gpu ? NCCL_PTR_CUDA : NCCL_PTR_HOST,
				     mh) == ncclSuccess,
		       "regMr")) {
		if (use_gpu)
			cudaFree(region);
		else
			free(region);
		return NULL;
	}
	return region;
}

static void region_close(struct mesh_rank *r, char *region, void *mh)
{
	RCHECK(r, coll_dereg(r, mh) == ncclSuccess, "deregMr");
	if (use_gpu)
		cudaFree(region);
	else
		free(region);
}

/* Every (dtype, count) once, half of them in place, from one registered region (the comm's
 * first: NCCL's staging, so lossy calls also clear it); NaN and Inf in the 1001-element calls. */
static void calls_body(struct mesh_rank *r)
{
	void *mh = NULL;
	char *region = region_open(r, 2 * MAXBYTES, &mh);
	if (!region)
		return;
	for (size_t d = 0; d < 3; d++)
		for (size_t ci = 0; ci < NCOUNTS; ci++) {
			ncclDataType_t dt = dtypes[d];
			size_t n = counts[ci], es = dt_size(dt);
			int inplace = (int)((d + ci) % 2);
			struct contrib c;
			RCHECK(r,
			       contrib_make(&c, r->m->nranks, dt, n, (unsigned)(d * 10 + ci)) == 0,
			       "memory");
			if (ci == 2) {
				contrib_poison(&c, 1 % r->m->nranks, 5, NAN);
				contrib_poison(&c, r->m->nranks - 1, 700, INFINITY);
				contrib_poison(&c, 0, 900, -INFINITY);
			}
			char *send = region, *recv = inplace ? region : region + MAXBYTES;
			/* A copy from pageable memory may return before its data has landed;
			 * the plugin's kernels run in its own context, unordered with ours: wait
			 * for it, as NCCL's kernel has finished writing before the proxy posts. */
			if (use_gpu)
				RCHECK(r,
				       cudaMemcpy(send, c.in[r->rank], n * es,
						  cudaMemcpyHostToDevice) == cudaSuccess &&
					       cudaDeviceSynchronize() == cudaSuccess,
				       "cudaMemcpy");
			else
				memcpy(send, c.in[r->rank], n * es);
			void *req = coll_post(r, send, recv, n, dt, mh, mh);
			if (!req || coll_wait(r, req, n * es, 120.0))
				return;
			void *out = malloc(n * es);
			RCHECK(r, out != NULL, "memory");
			if (use_gpu)
				RCHECK(r,
				       cudaMemcpy(out, recv, n * es, cudaMemcpyDeviceToHost) ==
					       cudaSuccess,
				       "cudaMemcpy");
			else
				memcpy(out, recv, n * es);
			results[use_gpu][r->rank][d][ci] = out;
			contrib_free(&c);
		}
	region_close(r, region, mh);
}

static void same_bits_as_host(int nranks, int lossless)
{
	for (use_gpu = 0; use_gpu < 2; use_gpu++) {
		struct mesh m;
		mesh_open(&m, 11, nranks, 1);
		mesh_run(&m, calls_body);
		mesh_close(&m);
	}
	for (size_t d = 0; d < 3; d++)
		for (size_t ci = 0; ci < NCOUNTS; ci++) {
			size_t n = counts[ci], es = dt_size(dtypes[d]);
			for (int r = 0; r < nranks; r++) {
				const char *h = results[0][r][d][ci], *g = results[1][r][d][ci];
				size_t i = 0;
				while (i < n * es && h[i] == g[i])
					i++;
				uint32_t hv = 0, gv = 0;
				if (i < n * es) {
					memcpy(&hv, h + i / es * es, es);
					memcpy(&gv, g + i / es * es, es);
				}
				cr_expect_eq(
					i, n * es,
					"%s n=%zu rank %d: device result differs from the host "
					"path's at element %zu (device 0x%x, host 0x%x)",
					dt_name(dtypes[d]), n, r, i / es, gv, hv);
				cr_expect_eq(memcmp(g, results[1][0][d][ci], n * es), 0,
					     "%s n=%zu: rank %d holds other bits than rank 0",
					     dt_name(dtypes[d]), n, r);
			}
			if (lossless && ci != 2) {
				struct contrib c;
				cr_assert_eq(contrib_make(&c, nranks, dtypes[d], n,
							  (unsigned)(d * 10 + ci)),
					     0);
				size_t bad = ref_compare(&c, results[1][0][d][ci], 1);
				cr_expect_eq(bad, (size_t)-1,
					     "%s n=%zu: lossless GPU sum not exact (element %zu of "
					     "%zu; the host path's %s)",
					     dt_name(dtypes[d]), n, bad, n,
					     ref_compare(&c, results[0][0][d][ci], 1) == (size_t)-1
						     ? "is exact"
						     : "is not exact either");
				contrib_free(&c);
			}
			for (int r = 0; r < nranks; r++)
				for (int gpu = 0; gpu < 2; gpu++)
					free(results[gpu][r][d][ci]);
		}
}

Test(gpu_coll, lossless_2_ranks_same_bits_as_host)
{
	same_bits_as_host(2, 1);
}

Test(gpu_coll, lossless_4_ranks_same_bits_as_host)
{
	same_bits_as_host(4, 1);
}

Test(gpu_coll, pts_3_ranks_same_bits_as_host)
{
	setenv("RCMOE_AR_DENSITY", "0.05", 1);
	same_bits_as_host(3, 0);
}

Test(gpu_coll, lsq_8bit_4_ranks_same_bits_as_host)
{
	setenv("RCMOE_AR_BITS", "8", 1);
	same_bits_as_host(4, 0);
}

Test(gpu_coll, lsq_2bit_3_ranks_same_bits_as_host)
{
	setenv("RCMOE_AR_BITS", "2", 1);
	same_bits_as_host(3, 0);
}

/* ---- many calls in flight ---- */

/* NCCL keeps several calls in flight; on the GPU they run on the comm's lanes (ar_gpu.c), more
 * calls than lanes, so some share one. INFLIGHT calls of 64 Ki bf16 (NCCL's chunk is 256 KiB),
 * each its own contribution and slot in one registered region, all posted before any is waited
 * for; the device results must be the host path's bytes, on every rank. */
#define INFLIGHT   12
#define INFLIGHT_N ((size_t)1 << 16)
static void *inflight[2][MESH_MAX_RANKS][INFLIGHT];

static void inflight_body(struct mesh_rank *r)
{
	const size_t bytes = INFLIGHT_N * 2;
	void *mh = NULL, *req[INFLIGHT];
	struct contrib c[INFLIGHT];
	char *region = region_open(r, 2 * INFLIGHT * bytes, &mh);
	if (!region)
		return;
	for (int i = 0; i < INFLIGHT; i++) {
		RCHECK(r,
		       contrib_make(&c[i], r->m->nranks, ncclBfloat16, INFLIGHT_N,
				    (unsigned)(100 + i)) == 0,
		       "memory");
		char *send = region + 2 * (size_t)i * bytes;
		if (use_gpu)
			RCHECK(r,
			       cudaMemcpy(send, c[i].in[r->rank], bytes, cudaMemcpyHostToDevice) ==
				       cudaSuccess,
			       "cudaMemcpy");
		else
			memcpy(send, c[i].in[r->rank], bytes);
	}
	if (use_gpu) /* see calls_body */
		RCHECK(r, cudaDeviceSynchronize() == cudaSuccess, "cudaDeviceSynchronize");
	for (int i = 0; i < INFLIGHT; i++) {
		char *send = region + 2 * (size_t)i * bytes;
		req[i] = coll_post(r, send, send + bytes, INFLIGHT_N, ncclBfloat16, mh, mh);
		if (!req[i])
			return;
	}
	for (int i = 0; i < INFLIGHT; i++) {
		char *recv = region + (2 * (size_t)i + 1) * bytes;
		if (coll_wait(r, req[i], bytes, 120.0))
			return;
		void *out = malloc(bytes);
		RCHECK(r, out != NULL, "memory");
		if (use_gpu)
			RCHECK(r,
			       cudaMemcpy(out, recv, bytes, cudaMemcpyDeviceToHost) == cudaSuccess,
			       "cudaMemcpy");
		else
			memcpy(out, recv, bytes);
		inflight[use_gpu][r->rank][i] = out;
		contrib_free(&c[i]);
	}
	region_close(r, region, mh);
}

static void inflight_same_bits_as_host(int nranks)
{
	for (use_gpu = 0; use_gpu < 2; use_gpu++) {
		struct mesh m;
		mesh_open(&m, 13, nranks, 1);
		mesh_run(&m, inflight_body);
		mesh_close(&m);
	}
	for (int i = 0; i < INFLIGHT; i++)
		for (int r = 0; r < nranks; r++) {
			const char *h = inflight[0][r][i], *g = inflight[1][r][i];
			cr_assert(h && g, "call %d rank %d: no result", i, r);
			cr_expect_eq(memcmp(h, g, INFLIGHT_N * 2), 0,
				     "call %d (of %d in flight) rank %d: the device result differs "
				     "from the host path's",
				     i, INFLIGHT, r);
			cr_expect_eq(memcmp(g, inflight[1][0][i], INFLIGHT_N * 2), 0,
				     "call %d: rank %d holds other bits than rank 0", i, r);
		}
	for (int i = 0; i < INFLIGHT; i++)
		for (int r = 0; r < nranks; r++)
			for (int gpu = 0; gpu < 2; gpu++)
				free(inflight[gpu][r][i]);
}

Test(gpu_coll, lossless_12_calls_in_flight_same_bits_as_host)
{
	inflight_same_bits_as_host(3);
}

Test(gpu_coll, pts_12_calls_in_flight_same_bits_as_host)
{
	setenv("RCMOE_AR_DENSITY", "0.01", 1);
	inflight_same_bits_as_host(4);
}

Test(gpu_coll, lsq_12_calls_in_flight_same_bits_as_host)
{
	setenv("RCMOE_AR_BITS", "8", 1);
	inflight_same_bits_as_host(4);
}

/* ---- staging cleared on the GPU path ---- */

enum { SLOT = 40000 };

static void staging_body(struct mesh_rank *r)
{
	size_t bytes = (size_t)SLOT * 4;
	char *stage = NULL, *user = NULL, *host = malloc(bytes), *before = malloc(bytes);
	void *mh_stage = NULL, *mh_user = NULL;
	RCHECK(r, host && before, "memory");
	RCHECK(r, cudaMalloc((void **)&stage, 2 * bytes) == cudaSuccess, "cudaMalloc");
	RCHECK(r, cudaMalloc((void **)&user, 2 * bytes) == cudaSuccess, "cudaMalloc");
	RCHECK(r, coll_reg_type(r, stage, 2 * bytes, NCCL_PTR_CUDA, &mh_stage) == ncclSuccess,
	       "regMr staging");
	RCHECK(r, coll_reg_type(r, user, 2 * bytes, NCCL_PTR_CUDA, &mh_user) == ncclSuccess,
	       "regMr user");
	for (size_t i = 0; i < SLOT; i++) {
		float v = (float)((int)(i % 13) - 6) * 0.25f;
		memcpy(before + 4 * i, &v, 4);
	}
	for (int which = 0; which < 2; which++) {
		char *buf = which ? user : stage;
		RCHECK(r,
		       cudaMemcpy(buf, before, bytes, cudaMemcpyHostToDevice) == cudaSuccess &&
			       cudaDeviceSynchronize() == cudaSuccess, /* see calls_body */
		       "cudaMemcpy");
		void *mh = which ? mh_user : mh_stage;
		void *req = coll_post(r, buf, buf + bytes, SLOT, ncclFloat32, mh, mh);
		if (!req || coll_wait(r, req, bytes, 60.0))
			return;
		RCHECK(r, cudaMemcpy(host, buf, bytes, cudaMemcpyDeviceToHost) == cudaSuccess,
		       "cudaMemcpy");
		if (which)
			RCHECK(r, memcmp(host, before, bytes) == 0,
			       "a user's device send buffer was changed");
		else
			for (size_t b = 0; b < bytes; b++)
				RCHECK(r, host[b] == 0, "staging send byte %zu not cleared", b);
	}
	RCHECK(r, coll_dereg(r, mh_user) == ncclSuccess, "deregMr");
	RCHECK(r, coll_dereg(r, mh_stage) == ncclSuccess, "deregMr");
	cudaFree(stage);
	cudaFree(user);
	free(host);
	free(before);
}

Test(gpu_coll, pts_clears_staging_not_user_buffers)
{
	setenv("RCMOE_AR_DENSITY", "0.1", 1);
	struct mesh m;
	mesh_open(&m, 11, 2, 1);
	mesh_run(&m, staging_body);
	mesh_close(&m);
}

Test(gpu_coll, lsq_clears_staging_not_user_buffers)
{
	setenv("RCMOE_AR_BITS", "4", 1);
	struct mesh m;
	mesh_open(&m, 11, 3, 1);
	mesh_run(&m, staging_body);
	mesh_close(&m);
}
