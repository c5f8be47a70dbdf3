/* SPDX-License-Identifier: Apache-2.0 */
#include <stdlib.h>

#include "rcmoe/log.h"
#include "rcmoe/nccl_abi.h"
#include "policy.h"

static int enabled;

int rcmoe_policy_setup(const struct rcmoe_params *p)
{
	const char *ll = getenv("NCCL_ALLOC_P2P_NET_LL_BUFFERS");
	enabled = p->a2a_bits != 0;
	if (enabled && ll && atoi(ll) != 0) {
		/* p2p messages may then be LL: flags inside the payload that a lossy codec would
		 * destroy, and p2p events do not say which protocol a transfer uses. */
		RCMOE_WARN(
			"RCMOE_A2A_BITS=%lld ignored: NCCL_ALLOC_P2P_NET_LL_BUFFERS=%s lets NCCL "
			"send LL data on p2p connections, which must pass byte-exact; all traffic "
			"goes losslessly",
			(long long)p->a2a_bits, ll);
		enabled = 0;
	}
	return enabled;
}

static int is_float(int dtype)
{
	return dtype == RCMOE_DT_BF16 || dtype == RCMOE_DT_FP16 || dtype == RCMOE_DT_FP32;
}

int rcmoe_policy_lsq(const struct rcmoe_params *p, const struct rcmoe_msg_info *info,
		     uint32_t attr_op, size_t bytes, uint64_t op_id, struct rcmoe_lsq_cfg *cfg)
{
	if (!enabled || !info->known || info->func != ncclFuncSend || !is_float(info->dtype))
		return 0;
	size_t esize = rcmoe_dtype_size(info->dtype);
	if (bytes < (size_t)p->min_bytes || bytes == 0 || bytes % esize != 0)
		return 0;
	/* A message is a part of its operation: one longer than the whole operation cannot
	 * belong to it, so the attribution is not this message's and it goes byte-exact. */
	if (bytes / esize > info->count)
		return 0;
	if (p->a2a_scope == RCMOE_A2A_SCOPE_ALLTOALL && info->group_send_peers < 2 &&
	    !(attr_op & (1u << ncclFuncAlltoAll)))
		return 0; /* a lone send (pipeline parallelism): not all-to-all traffic */
	cfg->dtype = info->dtype;
	cfg->bits = (int)p->a2a_bits;
	cfg->block = (uint32_t)p->lsq_block;
	cfg->seed = (uint64_t)p->seed;
	cfg->op_id = op_id;
	cfg->rank = info->rank >= 0 ? (uint32_t)info->rank : 0;
	return rcmoe_lsq_check_cfg(cfg) == RCMOE_OK;
}
