/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe_gpu_fill: set device bytes to one value with a kernel on the caller's stream. The codec
 * launchers clear their scratch (look-back states, tickets, hash tables) with it.
 *
 * Why not cudaMemsetAsync: the launchers run on NCCL's proxy thread (the plugin's data path).
 * cudaMemsetAsync goes through the driver's cuMemsetD*Async, which may take the same driver lock
 * as its memcpy path; a synchronous copy on another thread (PyTorch's tensor.cpu() after a
 * collective) holds that lock while it waits for a stream that waits for NCCL's kernel, which
 * waits for the proxy thread: the deadlock described in stage_copy.cu, seen with
 * cudaMemcpyAsync on the H100. A kernel launch does not enter that path, and stream order makes
 * the fill complete before the codec kernels that follow it on the same stream.
 *
 * Launch: up to 32 blocks of 256 threads (a few SMs: NCCL's persistent kernels hold others),
 * grid-stride. 16-byte stores over the 16-byte aligned middle of the range, single bytes for its
 * unaligned head and tail, so any pointer and length work and exactly [d, d + bytes) is written.
 */
#include "gpu_common.cuh"

#define FILL_THREADS    256
#define FILL_MAX_BLOCKS 32

__global__ void __launch_bounds__(FILL_THREADS) fill_kernel(uint8_t *d, size_t n, uint32_t word)
{
	const size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	const size_t stride = (size_t)gridDim.x * blockDim.x;
	size_t head = (16 - ((uintptr_t)d & 15)) & 15;
	if (head > n)
		head = n;
	const size_t n16 = (n - head) / 16, tail = head + 16 * n16;
	uint4 *mid = (uint4 *)(d + head);
	const uint4 w = make_uint4(word, word, word, word);
	for (size_t i = tid; i < n16; i += stride)
		mid[i] = w;
	for (size_t i = tid; i < head; i += stride)
		d[i] = (uint8_t)word;
	for (size_t i = tail + tid; i < n; i += stride)
		d[i] = (uint8_t)word;
}

extern "C" rcmoe_status_t rcmoe_gpu_fill(void *d, uint8_t value, size_t bytes, cudaStream_t stream)
{
	if (bytes == 0)
		return RCMOE_OK;
	if (!d)
		return RCMOE_ERR_INVALID;
	/* enough threads for one 16-byte store each, up to the cap (grid-stride beyond) */
	size_t blocks = (bytes / 16 + FILL_THREADS - 1) / FILL_THREADS;
	if (blocks > FILL_MAX_BLOCKS)
		blocks = FILL_MAX_BLOCKS;
	if (blocks == 0)
		blocks = 1;
	fill_kernel<<<(unsigned)blocks, FILL_THREADS, 0, stream>>>((uint8_t *)d, bytes,
								   value * 0x01010101u);
	return rcmoe_cuda_launch_status();
}
