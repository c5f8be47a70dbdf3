/* SPDX-License-Identifier: Apache-2.0 */
/* A stand-in for NCCL's side of the profiler chain: builds Group -> P2p -> ProxyOp -> ProxyStep
 * events in the plugin's profiler and answers the net side's NetPlugin callbacks as NCCL does. */
#ifndef RCMOE_TEST_PROF_CHAIN_H
#define RCMOE_TEST_PROF_CHAIN_H

#include <stddef.h>
#include "rcmoe/nccl_abi.h"

/* What NCCL's phandle leads to: the step event the profiler side created. */
struct fake_phandle {
	void *prof_ctx;
	void *step;
	void *proxy_op;
};

/* Pass as the net init's profiler callback. */
ncclResult_t fake_nccl_callback(void **eh, int type, void *phandle, int64_t id, void *data);

/* Start the profiler side for a comm of `nranks`, this rank `rank`. */
void *prof_chain_init(int nranks, int rank);
/* One operation in its own group: `npeers` P2p events of func/dtype to peers 0..npeers-1 (the
 * all-to-all shape when npeers > 1), and the chain down to a step for the first one. */
struct fake_phandle prof_chain(void *pctx, const char *func, const char *dtype, size_t count,
			       int npeers);
/* The next step of the same proxy op: another message of the same operation. */
struct fake_phandle prof_chain_next_step(const struct fake_phandle *ph);

#endif
