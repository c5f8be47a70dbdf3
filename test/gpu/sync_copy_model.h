/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The deadlock of the first GPU version, modelled without NCCL (used by test_gpu_net.c and
 * test_gpu_context.c).
 *
 * In the job that hung (H100, PyTorch, NCCL_NET_GDR_LEVEL=SYS): NCCL's kernel waited for data
 * that NCCL's proxy thread moves through the plugin. The application's main thread had its
 * stream wait for NCCL's stream (work.wait()) and called tensor.cpu(), a synchronous copy into
 * pageable memory, which waits inside the driver, holding a driver lock, until NCCL's kernel is
 * done. The proxy thread then called cudaMemcpyAsync in the plugin, which needs that lock: no
 * thread could move again.
 *
 * Here: gpu_spin_kernel on its own non-blocking stream plays NCCL's kernel; it cannot finish
 * until the test thread sets a flag in mapped pinned memory, or until it gives up by itself
 * after a timeout (device clock), so that a would-be deadlock ends and the test fails instead of
 * hanging. The model's application thread makes the legacy default stream wait for the spin
 * kernel's event and copies the kernel's output into pageable memory with cudaMemcpy, so the copy
 * waits for a kernel that waits for the test thread, which plays NCCL's proxy thread.
 */
#ifndef RCMOE_TEST_SYNC_COPY_MODEL_H
#define RCMOE_TEST_SYNC_COPY_MODEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#define MODEL_SETTLE_MS  300 /* let the application thread get into its copy */
#define MODEL_COPY_WORDS (1u << 20)

#define CK(call)                                                                                   \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		cr_assert_eq(e_, cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_));            \
	} while (0)

struct app_copy {
	cudaEvent_t after_spin; /* recorded on the "NCCL" stream after the spin kernel */
	const uint32_t *d_out;  /* what the spin kernel writes */
	uint32_t *host;         /* pageable */
	size_t nwords;
	atomic_int entered, returned;
	cudaError_t err;
};

struct model {
	uint32_t *ctl; /* mapped pinned: GPU_SPIN_* words */
	uint32_t *d_out;
	cudaStream_t nccl_stream;
	pthread_t thread;
	struct app_copy app;
};

/* Start the spin kernel (giving up after spin_timeout_s) and the application's copy behind it;
 * returns once the copy waits. Fails the test if the model does not take hold. */
void model_start(struct model *m, double spin_timeout_s);

/* Release the kernel, wait (bounded) for the copy, check that it carried the kernel's output
 * (so it really was ordered after the kernel), free everything; returns the kernel's final
 * state (GPU_SPIN_RELEASED or GPU_SPIN_TIMED_OUT). */
uint32_t model_finish(struct model *m);

void sleep_ms(int ms);
double model_clock_s(void); /* CLOCK_MONOTONIC, seconds */

#endif
