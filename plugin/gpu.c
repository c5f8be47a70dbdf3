/* SPDX-License-Identifier: Apache-2.0 */
#include <stdlib.h>

#include "rcmoe/log.h"
#include "gpu.h"

#ifdef RCMOE_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "rcmoe/kernels.h"

#define CUDA_CHECK(call)                                                                           \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		if (e_ != cudaSuccess) {                                                           \
			RCMOE_WARN("%s failed: %s", #call, cudaGetErrorString(e_));                \
			return RCMOE_ERR_CUDA;                                                     \
		}                                                                                  \
	} while (0)

int rcmoe_gpu_available(void)
{
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess) {
		(void)cudaGetLastError(); /* no driver or no device: not sticky for us */
		return 0;
	}
	return n > 0;
}

int rcmoe_gpu_mps_enabled(void)
{
	int dev = 0, on = 0;
	if (cudaGetDevice(&dev) != cudaSuccess ||
	    cudaDeviceGetAttribute(&on, cudaDevAttrMpsEnabled, dev) != cudaSuccess) {
		(void)cudaGetLastError();
		return 0;
	}
	return on != 0;
}

rcmoe_status_t rcmoe_gpu_stream_create(struct rcmoe_gpu_stream *s)
{
	int lo, hi;
	cudaStream_t st;
	CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&lo, &hi));
	/* High priority: our copies and codecs run beside NCCL's persistent kernels. */
	CUDA_CHECK(cudaStreamCreateWithPriority(&st, cudaStreamNonBlocking, hi));
	s->handle = st;
	return RCMOE_OK;
}

void rcmoe_gpu_stream_destroy(struct rcmoe_gpu_stream *s)
{
	if (s->handle)
		cudaStreamDestroy((cudaStream_t)s->handle);
	s->handle = NULL;
}

rcmoe_status_t rcmoe_gpu_event_create(struct rcmoe_gpu_event *e)
{
	cudaEvent_t ev;
	CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
	e->handle = ev;
	return RCMOE_OK;
}

void rcmoe_gpu_event_destroy(struct rcmoe_gpu_event *e)
{
	if (e->handle)
		cudaEventDestroy((cudaEvent_t)e->handle);
	e->handle = NULL;
}

/* Pinned and mapped into the device: the staging kernels address it directly. With unified
 * addressing (every 64-bit Linux system CUDA supports) the device address is the host address. */
rcmoe_status_t rcmoe_gpu_host_alloc(void **ptr, size_t size)
{
	void *dev = NULL;
	CUDA_CHECK(
		cudaHostAlloc(ptr, size ? size : 1, cudaHostAllocPortable | cudaHostAllocMapped));
	if (cudaHostGetDevicePointer(&dev, *ptr, 0) != cudaSuccess || dev != *ptr) {
		(void)cudaGetLastError();
		RCMOE_WARN("pinned staging is not addressable from the GPU at its host address");
		cudaFreeHost(*ptr);
		*ptr = NULL;
		return RCMOE_ERR_CUDA;
	}
	return RCMOE_OK;
}

void rcmoe_gpu_host_free(void *ptr)
{
	if (ptr)
		cudaFreeHost(ptr);
}

rcmoe_status_t rcmoe_gpu_dev_alloc(void **ptr, size_t size)
{
	CUDA_CHECK(cudaMalloc(ptr, size ? size : 1));
	return RCMOE_OK;
}

void rcmoe_gpu_dev_free(void *ptr)
{
	if (ptr)
		cudaFree(ptr);
}

/* Staging copies are kernels, never cudaMemcpyAsync: see kernels/stage_copy.cu for the
 * deadlock a memcpy on the proxy thread runs into. `host` side buffers come from
 * rcmoe_gpu_host_alloc (mapped). */
rcmoe_status_t rcmoe_gpu_copy_d2h(void *dst, const void *src, size_t n, struct rcmoe_gpu_stream *s)
{
	rcmoe_status_t st = rcmoe_gpu_stage_copy(dst, src, n, (cudaStream_t)s->handle);
	if (st != RCMOE_OK)
		RCMOE_WARN("staging copy of %zu bytes to the host failed: %s", n,
			   cudaGetErrorString(cudaGetLastError()));
	return st;
}

rcmoe_status_t rcmoe_gpu_copy_h2d(void *dst, const void *src, size_t n, struct rcmoe_gpu_stream *s)
{
	rcmoe_status_t st = rcmoe_gpu_stage_copy(dst, src, n, (cudaStream_t)s->handle);
	if (st != RCMOE_OK)
		RCMOE_WARN("staging copy of %zu bytes to the GPU failed: %s", n,
			   cudaGetErrorString(cudaGetLastError()));
	return st;
}

rcmoe_status_t rcmoe_gpu_record(struct rcmoe_gpu_event *e, struct rcmoe_gpu_stream *s)
{
	CUDA_CHECK(cudaEventRecord((cudaEvent_t)e->handle, (cudaStream_t)s->handle));
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_gpu_poll(struct rcmoe_gpu_event *e, int *done)
{
	cudaError_t r = cudaEventQuery((cudaEvent_t)e->handle);
	if (r == cudaErrorNotReady) {
		*done = 0;
		return RCMOE_OK;
	}
	CUDA_CHECK(r);
	*done = 1;
	return RCMOE_OK;
}

#else /* no CUDA in this build: GPU buffers are never claimed */

int rcmoe_gpu_available(void)
{
	return 0;
}
int rcmoe_gpu_mps_enabled(void)
{
	return 0;
}
rcmoe_status_t rcmoe_gpu_stream_create(struct rcmoe_gpu_stream *s)
{
	s->handle = NULL;
	return RCMOE_ERR_UNSUPPORTED;
}
void rcmoe_gpu_stream_destroy(struct rcmoe_gpu_stream *s)
{
	s->handle = NULL;
}
rcmoe_status_t rcmoe_gpu_event_create(struct rcmoe_gpu_event *e)
{
	e->handle = NULL;
	return RCMOE_ERR_UNSUPPORTED;
}
void rcmoe_gpu_event_destroy(struct rcmoe_gpu_event *e)
{
	e->handle = NULL;
}
rcmoe_status_t rcmoe_gpu_host_alloc(void **ptr, size_t size)
{
	*ptr = malloc(size ? size : 1);
	return *ptr ? RCMOE_OK : RCMOE_ERR_NOMEM;
}
void rcmoe_gpu_host_free(void *ptr)
{
	free(ptr);
}
rcmoe_status_t rcmoe_gpu_dev_alloc(void **ptr, size_t size)
{
	*ptr = NULL;
	return RCMOE_ERR_UNSUPPORTED;
}
void rcmoe_gpu_dev_free(void *ptr)
{
	(void)ptr;
}
rcmoe_status_t rcmoe_gpu_copy_d2h(void *d, const void *s, size_t n, struct rcmoe_gpu_stream *st)
{
	return RCMOE_ERR_UNSUPPORTED;
}
rcmoe_status_t rcmoe_gpu_copy_h2d(void *d, const void *s, size_t n, struct rcmoe_gpu_stream *st)
{
	return RCMOE_ERR_UNSUPPORTED;
}
rcmoe_status_t rcmoe_gpu_record(struct rcmoe_gpu_event *e, struct rcmoe_gpu_stream *s)
{
	return RCMOE_ERR_UNSUPPORTED;
}
rcmoe_status_t rcmoe_gpu_poll(struct rcmoe_gpu_event *e, int *done)
{
	*done = 1;
	return RCMOE_ERR_UNSUPPORTED;
}
#endif
