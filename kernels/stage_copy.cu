/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe_gpu_stage_copy: the plugin's device <-> pinned-host staging copies, done by a kernel.
 *
 * Why not cudaMemcpyAsync: the driver's memcpy path takes a lock that a synchronous copy on
 * another thread holds while it waits for its stream (PyTorch's tensor.cpu() after a
 * collective). That stream waits for NCCL's kernel, NCCL's kernel waits for the proxy thread,
 * and the proxy thread would wait for that lock inside our memcpy: seen as a deadlock on the
 * H100 with NCCL_NET_GDR_LEVEL=SYS. A kernel reading or writing host memory that is mapped into
 * the device (pinned with cudaHostAllocMapped; with UVA the host address is the device address)
 * never enters that path.
 *
 * Launch: up to 32 blocks of 256 threads (a few SMs: NCCL's persistent kernels hold others),
 * grid-stride; 16-byte loads and stores when source, destination and length allow, else bytes.
 */
#include <stdint.h>

#include "rcmoe/kernels.h"

#define STAGE_THREADS    256
#define STAGE_MAX_BLOCKS 32

__global__ void stage_copy_vec16(uint4 *__restrict__ dst, const uint4 *__restrict__ src, size_t n16)
{
	size_t stride = (size_t)gridDim.x * blockDim.x;
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n16; i += stride)
		dst[i] = src[i];
}

__global__ void stage_copy_bytes(uint8_t *__restrict__ dst, const uint8_t *__restrict__ src,
				 size_t n)
{
	size_t stride = (size_t)gridDim.x * blockDim.x;
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
		dst[i] = src[i];
}

static unsigned int blocks_for(size_t items)
{
	size_t b = (items + STAGE_THREADS - 1) / STAGE_THREADS;
	if (b > STAGE_MAX_BLOCKS)
		b = STAGE_MAX_BLOCKS;
	return b ? (unsigned int)b : 1u;
}

extern "C" rcmoe_status_t rcmoe_gpu_stage_copy(void *dst, const void *src, size_t n,
					       cudaStream_t stream)
{
	if (n == 0)
		return RCMOE_OK;
	if (!dst || !src)
		return RCMOE_ERR_INVALID;
	uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
	size_t head = 0;
	if (d % 16 == 0 && s % 16 == 0) {
		size_t n16 = n / 16;
		if (n16) {
			stage_copy_vec16<<<blocks_for(n16), STAGE_THREADS, 0, stream>>>(
				(uint4 *)dst, (const uint4 *)src, n16);
			head = n16 * 16;
		}
	}
	if (head < n)
		stage_copy_bytes<<<blocks_for(n - head), STAGE_THREADS, 0, stream>>>(
			(uint8_t *)dst + head, (const uint8_t *)src + head, n - head);
	return cudaPeekAtLastError() == cudaSuccess ? RCMOE_OK : RCMOE_ERR_CUDA;
}
