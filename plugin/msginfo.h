/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What rcmoe knows about one isend/irecv: filled by the profiler side (profiler.c) when NCCL
 * calls back through the NetPlugin event chain ProxyStep -> ProxyOp -> Coll/P2p. Unknown fields
 * stay -1, and unknown means "pass through byte-exact".
 */
#ifndef RCMOE_MSGINFO_H
#define RCMOE_MSGINFO_H

#include <stddef.h>
#include <stdint.h>

#define RCMOE_PROFILER_PLUGIN_ID ((int64_t)0x52434d00) /* "RCM\0": our NetPlugin events */
#define RCMOE_MSGINFO_MAGIC      0x4d534731u

enum { RCMOE_PROTO_LL = 0, RCMOE_PROTO_LL128 = 1, RCMOE_PROTO_SIMPLE = 2 };

/* Number of ncclFunc_t and ncclDataType_t values we keep counters for (+1 for unknown). */
#define RCMOE_NFUNC  11
#define RCMOE_NDTYPE 12

struct rcmoe_msg_info {
	uint32_t magic;       /* RCMOE_MSGINFO_MAGIC, set by the net side before the callback */
	int known;            /* 1 once the profiler chain resolved this message */
	int func;             /* ncclFunc_t, -1 unknown */
	int dtype;            /* ncclDataType_t, -1 unknown */
	int proto;            /* RCMOE_PROTO_*, -1 unknown (p2p events carry no protocol) */
	int peer;             /* peer rank of the op, -1 unknown */
	size_t count;         /* elements of the whole operation */
	int group_send_peers; /* distinct peers this rank sends to in the op's group (p2p) */
	int rank;
	int nranks;
	/* The operation (Coll or P2p event) this message is part of, unique per profiler context
	 * while the comm lives; 0 unknown. Steps of one send to one peer share it: the dedup
	 * window (a2a_dedup.c) lives as long as it stays the same. */
	uint64_t op_serial;
};

static inline void rcmoe_msg_info_reset(struct rcmoe_msg_info *m)
{
	m->magic = RCMOE_MSGINFO_MAGIC;
	m->known = 0;
	m->func = m->dtype = m->proto = m->peer = -1;
	m->count = 0;
	m->group_send_peers = 0;
	m->rank = m->nranks = -1;
	m->op_serial = 0;
}

const char *rcmoe_func_name(int func);
const char *rcmoe_dtype_name(int dtype);

#endif
