/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The profiler side, driven the way NCCL drives it: Group -> P2p/Coll -> ProxyOp -> ProxyStep,
 * then a NetPlugin event from the net side whose parent is the step. The answer must carry the
 * operation's datatype, count and function, and stay unknown whenever the chain is broken.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "msginfo.h"
#include "profiler.h"
#include "test_log.h"

static void *ctx;

static void setup(void)
{
	int mask = 0;
	test_log_init();
	cr_assert_eq(rcmoe_prof_init(&ctx, 0x1234, &mask, "test", 4, 4, 1), RCMOE_OK);
	cr_assert_eq(mask & RCMOE_PROF_MASK, RCMOE_PROF_MASK, "mask lacks the chain's events");
}

static void teardown(void)
{
	rcmoe_prof_finalize(ctx);
}

TestSuite(profiler, .init = setup, .fini = teardown);

static void *start(ncclProfilerEventDescr_v5_t *d)
{
	void *h = (void *)0x1;
	cr_assert_eq(rcmoe_prof_start(ctx, &h, d), RCMOE_OK);
	return h;
}

static void *group(void)
{
	ncclProfilerEventDescr_v5_t d = { .type = ncclProfileGroup };
	return start(&d);
}

/* The P2p events made so far, with what NCCL would say of their proxy ops. */
struct made_p2p {
	void *op;
	int peer, is_send;
};
static struct made_p2p made[64];
static int nmade;

static void *p2p(void *grp, const char *func, const char *dtype, size_t count, int peer)
{
	ncclProfilerEventDescr_v5_t d = { .type = ncclProfileP2p, .parentObj = grp };
	d.p2p.func = func;
	d.p2p.datatype = dtype;
	d.p2p.count = count;
	d.p2p.peer = peer;
	d.p2p.parentGroup = grp;
	void *op = start(&d);
	if (nmade < 64)
		made[nmade++] = (struct made_p2p){ op, peer, strcmp(func, "Recv") != 0 };
	return op;
}

/* A proxy op as NCCL describes it: its process, peer and direction. */
static void *proxy_op_to(void *parent, pid_t pid, int peer, int is_send)
{
	ncclProfilerEventDescr_v5_t d = { .type = ncclProfileProxyOp, .parentObj = parent };
	d.proxyOp.pid = pid;
	d.proxyOp.peer = peer;
	d.proxyOp.isSend = is_send;
	return start(&d);
}

/* The proxy op NCCL makes for `op`: for a P2p made by p2p() its peer and direction (recorded
 * there), for anything else peer -1, sending. */
static void *proxy_op(void *op, pid_t pid)
{
	for (int i = 0; i < nmade; i++)
		if (made[i].op == op)
			return proxy_op_to(op, pid, made[i].peer, made[i].is_send);
	return proxy_op_to(op, pid, -1, 1);
}

static void *step(void *op)
{
	ncclProfilerEventDescr_v5_t d = { .type = ncclProfileProxyStep, .parentObj = op };
	return start(&d);
}

static struct rcmoe_msg_info ask(void *stp, int64_t id)
{
	struct rcmoe_msg_info info;
	rcmoe_msg_info_reset(&info);
	ncclProfilerEventDescr_v5_t d = { .type = ncclProfileNetPlugin, .parentObj = stp };
	d.netPlugin.id = id;
	d.netPlugin.data = &info;
	void *h = (void *)0x1;
	cr_assert_eq(rcmoe_prof_start(ctx, &h, &d), RCMOE_OK);
	cr_expect_null(h, "NetPlugin events need no stop handle");
	return info;
}

Test(profiler, p2p_chain_resolves_datatype_count_function)
{
	void *g = group();
	void *op = p2p(g, "Send", "ncclBfloat16", 4096, 2);
	/* NCCL stops the P2p event before the proxy starts its ProxyOp. */
	rcmoe_prof_stop(op);
	void *px = proxy_op(op, getpid());
	struct rcmoe_msg_info info = ask(step(px), RCMOE_PROFILER_PLUGIN_ID);
	cr_expect_eq(info.known, 1);
	cr_expect_eq(info.dtype, ncclBfloat16);
	cr_expect_eq(info.func, ncclFuncSend);
	cr_expect_eq(info.count, 4096);
	cr_expect_eq(info.peer, 2);
	cr_expect_eq(info.rank, 1);
	cr_expect_eq(info.nranks, 4);
}

Test(profiler, int64_split_exchange_is_int64)
{
	void *g = group();
	void *op = p2p(g, "Recv", "ncclInt64", 4, 0);
	struct rcmoe_msg_info info = ask(step(proxy_op(op, getpid())), RCMOE_PROFILER_PLUGIN_ID);
	cr_expect_eq(info.known, 1);
	cr_expect_eq(info.dtype, ncclInt64);
	cr_expect_eq(info.func, ncclFuncRecv);
}

Test(profiler, collective_chain_carries_protocol)
{
	ncclProfilerEventDescr_v5_t d = { .type = ncclProfileColl };
	d.coll.func = "AllReduce";
	d.coll.datatype = "ncclFloat32";
	d.coll.proto = "Simple";
	d.coll.count = 1000;
	void *op = start(&d);
	struct rcmoe_msg_info info = ask(step(proxy_op(op, getpid())), RCMOE_PROFILER_PLUGIN_ID);
	cr_expect_eq(info.known, 1);
	cr_expect_eq(info.func, ncclFuncAllReduce);
	cr_expect_eq(info.dtype, ncclFloat32);
	cr_expect_eq(info.proto, RCMOE_PROTO_SIMPLE);
}

Test(profiler, group_counts_distinct_send_peers)
{
	void *g = group();
	void *first = NULL;
	for (int peer = 0; peer < 4; peer++) {
		void *s = p2p(g, "Send", "ncclBfloat16", 100, peer);
		p2p(g, "Recv", "ncclBfloat16", 100, peer);
		if (!first)
			first = s;
	}
	struct rcmoe_msg_info info = ask(step(proxy_op(first, getpid())), RCMOE_PROFILER_PLUGIN_ID);
	cr_expect_eq(info.group_send_peers, 4);

	void *g2 = group();
	void *pp = p2p(g2, "Send", "ncclBfloat16", 100, 3);
	info = ask(step(proxy_op(pp, getpid())), RCMOE_PROFILER_PLUGIN_ID);
	cr_expect_eq(info.group_send_peers, 1, "a pipeline send is not all-to-all shaped");
}

Test(profiler, broken_chains_stay_unknown)
{
	void *op = p2p(group(), "Send", "ncclBfloat16", 10, 1);
	/* another process's proxy op (PXN): its parent is not ours to read */
	struct rcmoe_msg_info info =
		ask(step(proxy_op(op, getpid() + 1)), RCMOE_PROFILER_PLUGIN_ID);
	cr_expect_eq(info.known, 0);
	/* a parent pointer that is not one of our objects */
	static char junk[256];
	info = ask(step(proxy_op(junk + 8, getpid())), RCMOE_PROFILER_PLUGIN_ID);
	cr_expect_eq(info.known, 0);
	/* a NetPlugin event from some other net plugin id */
	info = ask(step(proxy_op(op, getpid())), 0x77);
	cr_expect_eq(info.known, 0);
	/* a step whose parent is a P2p, not a ProxyOp */
	info = ask(step(op), RCMOE_PROFILER_PLUGIN_ID);
	cr_expect_eq(info.known, 0);
	/* no parent at all */
	info = ask(NULL, RCMOE_PROFILER_PLUGIN_ID);
	cr_expect_eq(info.known, 0);
}

Test(profiler, unknown_strings_map_to_unknown)
{
	void *op = p2p(group(), "Send", "Unknown", 10, 1); /* NCCL prints ncclUint8 so */
	struct rcmoe_msg_info info = ask(step(proxy_op(op, getpid())), RCMOE_PROFILER_PLUGIN_ID);
	cr_expect_eq(info.known, 1);
	cr_expect_eq(info.dtype, -1);
	cr_expect_eq(rcmoe_dtype_from_str("ncclFloat16"), ncclFloat16);
	cr_expect_eq(rcmoe_func_from_str("AlltoAll"), ncclFuncAlltoAll);
	cr_expect_eq(rcmoe_proto_from_str("LL128"), RCMOE_PROTO_LL128);
	cr_expect_eq(rcmoe_proto_from_str(NULL), -1);
}

/* A proxy op whose named parent is a p2p to another peer, or in the other direction, is not
 * that operation's (a reused slot, or an event NCCL did not make for it): unknown, exact. */
Test(profiler, proxy_op_disagreeing_with_its_parent_stays_unknown)
{
	void *op = p2p(group(), "Send", "ncclFloat32", 1 << 20, 2);
	struct rcmoe_msg_info info =
		ask(step(proxy_op_to(op, getpid(), 2, 1)), RCMOE_PROFILER_PLUGIN_ID);
	cr_expect_eq(info.known, 1, "the matching proxy op must resolve");
	info = ask(step(proxy_op_to(op, getpid(), 3, 1)), RCMOE_PROFILER_PLUGIN_ID);
	cr_expect_eq(info.known, 0, "a proxy op to peer 3 resolved to a send to peer 2");
	info = ask(step(proxy_op_to(op, getpid(), 2, 0)), RCMOE_PROFILER_PLUGIN_ID);
	cr_expect_eq(info.known, 0, "a receive proxy op resolved to a send");
}
