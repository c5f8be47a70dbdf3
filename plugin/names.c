/* SPDX-License-Identifier: Apache-2.0 */
/* NCCL's names of functions, datatypes and protocols, as they appear in profiler events. */
#include <string.h>
#include <strings.h>

#include "msginfo.h"
#include "profiler.h"

static const char *const func_names[RCMOE_NFUNC] = {
	"Broadcast", "Reduce", "AllGather", "ReduceScatter", "AllReduce", "SendRecv",
	"Send",      "Recv",   "AlltoAll",  "Scatter",       "Gather",
};

/* ncclUint8 is printed "Unknown" by NCCL 2.28, so it never resolves: treated as unknown. */
static const char *const dtype_names[RCMOE_NDTYPE] = {
	"ncclInt8",    "ncclUint8",    "ncclInt32",      "ncclUint32",
	"ncclInt64",   "ncclUint64",   "ncclFloat16",    "ncclFloat32",
	"ncclFloat64", "ncclBfloat16", "ncclFloat8e4m3", "ncclFloat8e5m2",
};

static int lookup(const char *const *names, int n, const char *s)
{
	if (!s)
		return -1;
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -1;
}

int rcmoe_func_from_str(const char *s)
{
	return lookup(func_names, RCMOE_NFUNC, s);
}

int rcmoe_dtype_from_str(const char *s)
{
	return lookup(dtype_names, RCMOE_NDTYPE, s);
}

int rcmoe_proto_from_str(const char *s)
{
	if (!s)
		return -1;
	if (!strcasecmp(s, "LL"))
		return RCMOE_PROTO_LL;
	if (!strcasecmp(s, "LL128"))
		return RCMOE_PROTO_LL128;
	if (!strcasecmp(s, "Simple"))
		return RCMOE_PROTO_SIMPLE;
	return -1;
}

const char *rcmoe_func_name(int func)
{
	return (func >= 0 && func < RCMOE_NFUNC) ? func_names[func] : "unknown";
}

const char *rcmoe_dtype_name(int dtype)
{
	return (dtype >= 0 && dtype < RCMOE_NDTYPE) ? dtype_names[dtype] : "unknown";
}
