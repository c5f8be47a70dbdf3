/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <unistd.h>

#include <string.h>

#include "prof_chain.h"
#include "rcmoe/log.h"

extern const ncclProfiler_v5_t ncclProfiler_v5;

ncclResult_t fake_nccl_callback(void **eh, int type, void *phandle, int64_t id, void *data)
{
	struct fake_phandle *ph = phandle;
	if (type == ncclProfilerNetEventStart) {
		ncclProfilerEventDescr_v5_t d = { .type = ncclProfileNetPlugin,
						  .parentObj = ph->step };
		d.netPlugin.id = id;
		d.netPlugin.data = data;
		return ncclProfiler_v5.startEvent(ph->prof_ctx, eh, &d);
	}
	if (type == ncclProfilerNetEventStop)
		return ncclProfiler_v5.stopEvent(*eh);
	return ncclSuccess;
}

static void *prof_event(void *pctx, ncclProfilerEventDescr_v5_t *d)
{
	void *h = NULL;
	cr_assert_eq(ncclProfiler_v5.startEvent(pctx, &h, d), ncclSuccess);
	return h;
}

void *prof_chain_init(int nranks, int rank)
{
	void *pctx = NULL;
	int mask = 0;
	cr_assert_eq(ncclProfiler_v5.init(&pctx, 0x42, &mask, "t", nranks, nranks, rank,
					  rcmoe_log_get()),
		     ncclSuccess);
	cr_assert(mask & ncclProfileNetPlugin);
	return pctx;
}

struct fake_phandle prof_chain(void *pctx, const char *func, const char *dtype, size_t count,
			       int npeers)
{
	ncclProfilerEventDescr_v5_t g = { .type = ncclProfileGroup };
	void *grp = prof_event(pctx, &g), *first = NULL;
	for (int peer = 0; peer < npeers; peer++) {
		ncclProfilerEventDescr_v5_t op = { .type = ncclProfileP2p, .parentObj = grp };
		op.p2p.func = func;
		op.p2p.datatype = dtype;
		op.p2p.count = count;
		op.p2p.peer = peer;
		op.p2p.parentGroup = grp;
		void *p2p = prof_event(pctx, &op);
		if (!first)
			first = p2p;
	}
	/* As NCCL describes the proxy op of the first P2p: its peer and its direction. */
	ncclProfilerEventDescr_v5_t px = { .type = ncclProfileProxyOp, .parentObj = first };
	px.proxyOp.pid = getpid();
	px.proxyOp.peer = 0;
	px.proxyOp.isSend = strcmp(func, "Recv") != 0;
	void *pop = prof_event(pctx, &px);
	ncclProfilerEventDescr_v5_t st = { .type = ncclProfileProxyStep, .parentObj = pop };
	struct fake_phandle ph = { .prof_ctx = pctx,
				   .step = prof_event(pctx, &st),
				   .proxy_op = pop };
	return ph;
}

struct fake_phandle prof_chain_next_step(const struct fake_phandle *ph)
{
	ncclProfilerEventDescr_v5_t st = { .type = ncclProfileProxyStep,
					   .parentObj = ph->proxy_op };
	struct fake_phandle next = { .prof_ctx = ph->prof_ctx,
				     .step = prof_event(ph->prof_ctx, &st),
				     .proxy_op = ph->proxy_op };
	return next;
}
