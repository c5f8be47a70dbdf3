/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The profiler side of rcmoe: a minimal NCCL profiler whose only job is to answer the net side's
 * NetPlugin callbacks with the datatype, count and function of the operation a transfer belongs
 * to. It keeps the events of the chain Group -> Coll/P2p -> ProxyOp -> ProxyStep in per-comm
 * rings that are never freed while the comm lives (NCCL stops Coll/P2p events before the proxy
 * starts their ProxyOps), and copies what it needs down the chain at each start.
 */
#ifndef RCMOE_PROFILER_H
#define RCMOE_PROFILER_H

#include "rcmoe/nccl_abi.h"
#include "rcmoe/status.h"

rcmoe_status_t rcmoe_prof_init(void **context, uint64_t comm_id, int *mask, const char *name,
			       int nnodes, int nranks, int rank);
rcmoe_status_t rcmoe_prof_start(void *context, void **handle, ncclProfilerEventDescr_v5_t *d);
rcmoe_status_t rcmoe_prof_stop(void *handle);
rcmoe_status_t rcmoe_prof_finalize(void *context);

/* The events the chain needs (Group, Coll, P2p, ProxyOp, ProxyStep, NetPlugin). */
#define RCMOE_PROF_MASK                                                                            \
	(ncclProfileGroup | ncclProfileColl | ncclProfileP2p | ncclProfileProxyOp |                \
	 ncclProfileProxyStep | ncclProfileNetPlugin)

/* String tables NCCL uses in event descriptors -> numbers; -1 if unknown. */
int rcmoe_func_from_str(const char *s);
int rcmoe_dtype_from_str(const char *s);
int rcmoe_proto_from_str(const char *s);

#endif
