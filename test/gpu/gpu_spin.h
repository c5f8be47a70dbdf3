/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A stand-in for NCCL's kernel in the deadlock model of test_gpu_net.c: a kernel that cannot
 * finish until the host releases it through pinned memory mapped into the device, and that gives
 * up by itself after a timeout (device clock), so that a test which would deadlock fails instead.
 */
#ifndef RCMOE_TEST_GPU_SPIN_H
#define RCMOE_TEST_GPU_SPIN_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Words of the control block (pinned, mapped: cudaHostAllocMapped, host address == device
 * address under unified addressing). The host writes RELEASE; the kernel writes STATE. */
#define GPU_SPIN_RELEASE   0
#define GPU_SPIN_STATE     1
#define GPU_SPIN_CTL_WORDS 2

/* STATE values. The final one is also what the kernel writes into every word of its output. */
#define GPU_SPIN_IDLE      0u
#define GPU_SPIN_RUNNING   1u
#define GPU_SPIN_RELEASED  0x52454c53u /* "RELS": the host released it */
#define GPU_SPIN_TIMED_OUT 0x54494d4fu /* "TIMO": nobody released it within the timeout */

/* Launch one block of 256 threads on `stream`: thread 0 sets STATE to RUNNING, then waits until
 * RELEASE is non-zero or timeout_s seconds have passed; then every thread writes the final state
 * into d_out[0, nwords) and thread 0 stores it in STATE. Returns the launch status. */
cudaError_t gpu_spin_launch(uint32_t *ctl, uint32_t *d_out, size_t nwords, double timeout_s,
			    cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
