/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpu_spin_launch (gpu_spin.h): the kernel that plays NCCL's kernel in test_gpu_net.c.
 *
 * Launch: one block of 256 threads. Only thread 0 polls the host flag (every ~10 us, so the SM
 * and PCIe stay nearly idle and the plugin's kernels run beside it); the others wait at the
 * barrier. The timeout uses the device's global nanosecond timer, so it holds even when every
 * host thread is stuck.
 */
#include "gpu_spin.h"

#define SPIN_THREADS 256

static __device__ __forceinline__ unsigned long long global_ns(void)
{
	unsigned long long t;
	asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
	return t;
}

__global__ void __launch_bounds__(SPIN_THREADS)
	gpu_spin_kernel(volatile uint32_t *ctl, uint32_t *out, size_t nwords,
			unsigned long long timeout_ns)
{
	__shared__ uint32_t s_state;
	if (threadIdx.x == 0) {
		ctl[GPU_SPIN_STATE] = GPU_SPIN_RUNNING;
		__threadfence_system();
		const unsigned long long t0 = global_ns();
		uint32_t released = 0;
		for (;;) {
			released = ctl[GPU_SPIN_RELEASE];
			if (released || global_ns() - t0 >= timeout_ns)
				break;
			__nanosleep(10000);
		}
		s_state = released ? GPU_SPIN_RELEASED : GPU_SPIN_TIMED_OUT;
	}
	__syncthreads();
	const uint32_t v = s_state;
	for (size_t i = threadIdx.x; i < nwords; i += SPIN_THREADS)
		out[i] = v;
	__syncthreads();
	if (threadIdx.x == 0) {
		__threadfence_system();
		ctl[GPU_SPIN_STATE] = v;
	}
}

extern "C" cudaError_t gpu_spin_launch(uint32_t *ctl, uint32_t *d_out, size_t nwords,
				       double timeout_s, cudaStream_t stream)
{
	gpu_spin_kernel<<<1, SPIN_THREADS, 0, stream>>>(ctl, d_out, nwords,
							(unsigned long long)(timeout_s * 1e9));
	return cudaGetLastError();
}
