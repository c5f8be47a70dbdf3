/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe-kbench device helpers. Launch configuration: grid-stride loops, 256 threads, 4 CTAs per
 * SM worth of blocks (the sizes here are memory-bound one-pass sweeps).
 */
#include <math.h>

#include "codec_math.h"
#include "kbench_data.h"

#define KB_NT 256

static unsigned kb_grid(size_t n)
{
	int dev = 0, sms = 132;
	cudaGetDevice(&dev);
	cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
	size_t want = (n + KB_NT - 1) / KB_NT, cap = (size_t)sms * 8;
	return (unsigned)(want < cap ? (want ? want : 1) : cap);
}

static __device__ double kb_unit(uint64_t key, uint64_t i)
{
	return ((double)(rcmoe_mix64(key + i * 0x9e3779b97f4a7c15ull) >> 11) + 0.5) * 0x1p-53;
}

static __device__ double kb_gauss(uint64_t key, uint64_t i)
{
	double u = kb_unit(key, 2 * i), v = kb_unit(key, 2 * i + 1);
	return sqrt(-2.0 * log(u)) * cospi(2.0 * v);
}

__global__ void kb_fill_kernel(uint8_t *d, size_t n, int dtype, int kind, uint64_t seed)
{
	uint64_t k1 = rcmoe_mix64(seed), k2 = rcmoe_mix64(seed + 1), k3 = rcmoe_mix64(seed + 2);
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		double scale =
			exp(0.5 * kb_gauss(k3, i / 4096)) * (dtype == RCMOE_DT_FP16_ ? 1.0 : 0.02);
		double v = kb_gauss(k1, i);
		if (kind == KB_HEAVY) {
			double c = 0;
			for (int j = 0; j < 3; j++) {
				double z = kb_gauss(k2, 3 * i + j);
				c += z * z;
			}
			v /= sqrt(c / 3.0);
		}
		uint32_t bits = rcmoe_from_f32(dtype, (float)(v * scale));
		if (dtype == RCMOE_DT_FP32_)
			((uint32_t *)d)[i] = bits;
		else
			((uint16_t *)d)[i] = (uint16_t)bits;
	}
}

__global__ void kb_rows_kernel(uint32_t *d, size_t words, uint32_t row_words, double dup,
			       uint64_t seed)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < words;
	     i += (size_t)gridDim.x * blockDim.x) {
		uint64_t row = i / row_words, w = i % row_words;
		/* follow the copy chain back to the row that holds original content */
		while (row > 0) {
			uint64_t h = rcmoe_mix64(seed ^ (row * 0xd6e8feb86659fd93ull));
			if ((double)(h >> 11) * 0x1p-53 >= dup)
				break;
			row = (h >> 7) % row;
		}
		d[i] = (uint32_t)rcmoe_mix64(seed + row * 0x9e3779b97f4a7c15ull + w);
	}
}

__global__ void kb_err_kernel(const uint8_t *x, const uint8_t *y, size_t n, int dtype, double *acc,
			      unsigned int *maxbits)
{
	double se = 0, sx = 0;
	float mx = 0;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		uint32_t a, b;
		if (dtype == RCMOE_DT_FP32_) {
			a = ((const uint32_t *)x)[i];
			b = ((const uint32_t *)y)[i];
		} else {
			a = ((const uint16_t *)x)[i];
			b = ((const uint16_t *)y)[i];
		}
		double xa = rcmoe_to_f32(dtype, a), yb = rcmoe_to_f32(dtype, b);
		if (!isfinite(xa))
			continue;
		se += (yb - xa) * (yb - xa);
		sx += xa * xa;
		mx = fmaxf(mx, (float)fabs(yb - xa));
	}
	for (int o = 16; o > 0; o >>= 1) {
		se += __shfl_xor_sync(0xffffffffu, se, o);
		sx += __shfl_xor_sync(0xffffffffu, sx, o);
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
	}
	if ((threadIdx.x & 31) == 0) {
		atomicAdd(&acc[0], se);
		atomicAdd(&acc[1], sx);
		atomicMax(maxbits, __float_as_uint(mx));
	}
}

extern "C" cudaError_t kb_fill(void *d, size_t n, int dtype, enum kb_data kind, uint64_t seed,
			       cudaStream_t s)
{
	kb_fill_kernel<<<kb_grid(n), KB_NT, 0, s>>>((uint8_t *)d, n, dtype, kind, seed);
	return cudaGetLastError();
}

extern "C" cudaError_t kb_fill_rows(void *d, size_t bytes, uint32_t row_bytes, double dup_frac,
				    uint64_t seed, cudaStream_t s)
{
	kb_rows_kernel<<<kb_grid(bytes / 4), KB_NT, 0, s>>>((uint32_t *)d, bytes / 4, row_bytes / 4,
							    dup_frac, seed);
	return cudaGetLastError();
}

extern "C" cudaError_t kb_error(const void *x, const void *y, size_t n, int dtype, void *d_tmp,
				cudaStream_t s, struct kb_err *out)
{
	double acc[2];
	unsigned int mb;
	cudaError_t e = cudaMemsetAsync(d_tmp, 0, 32, s);
	if (e != cudaSuccess)
		return e;
	kb_err_kernel<<<kb_grid(n), KB_NT, 0, s>>>((const uint8_t *)x, (const uint8_t *)y, n, dtype,
						   (double *)d_tmp,
						   (unsigned int *)((char *)d_tmp + 16));
	if ((e = cudaMemcpyAsync(acc, d_tmp, 16, cudaMemcpyDeviceToHost, s)) != cudaSuccess ||
	    (e = cudaMemcpyAsync(&mb, (char *)d_tmp + 16, 4, cudaMemcpyDeviceToHost, s)) !=
		    cudaSuccess ||
	    (e = cudaStreamSynchronize(s)) != cudaSuccess)
		return e;
	float mx;
	memcpy(&mx, &mb, 4);
	out->rel_l2 = acc[1] > 0 ? sqrt(acc[0] / acc[1]) : 0;
	out->max_abs = mx;
	return cudaSuccess;
}
