/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <stdlib.h>

#include "rcmoe/log.h"
#include "rcmoe/nccl_abi.h"
#include "policy.h"

static int enabled; /* LSQ on eligible sends */
static int dedup;   /* window dedup on eligible sends */

int rcmoe_policy_setup(const struct rcmoe_params *p)
{
	const char *ll = getenv("NCCL_ALLOC_P2P_NET_LL_BUFFERS");
	enabled = p->a2a_bits != 0;
	/* Dedup is exact: LL data (flags in the payload) arrives byte for byte all the same. */
	dedup = p->a2a_dedup == RCMOE_A2A_DEDUP_ON;
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
	return enabled || dedup;
}

static int is_float(int dtype)
{
	return dtype == RCMOE_DT_BF16 || dtype == RCMOE_DT_FP16 || dtype == RCMOE_DT_FP32;
}

/* The LSQ configuration the settings give for one send. */
static struct rcmoe_codec_cfg lsq_cfg(const struct rcmoe_params *p, int dtype, int bits,
				      uint64_t op_id, uint32_t rank)
{
	struct rcmoe_codec_cfg cfg = { .codec = RCMOE_CODEC_LSQ };
	cfg.u.lsq.dtype = dtype;
	cfg.u.lsq.bits = bits;
	cfg.u.lsq.block = (uint32_t)p->lsq_block;
	cfg.u.lsq.seed = (uint64_t)p->seed;
	cfg.u.lsq.op_id = op_id;
	cfg.u.lsq.rank = rank;
	return cfg;
}

/* Fill a plan for n elements with cfg: the codec library's entry points, bound and scratch. 0
 * when the codec refuses the configuration. */
static int plan_make(const struct rcmoe_codec_cfg *cfg, size_t n, struct rcmoe_encode_plan *plan)
{
	if (rcmoe_codec_check_cfg(cfg) != RCMOE_OK)
		return 0;
	plan->cfg = *cfg;
	plan->n = n;
	plan->bound = rcmoe_codec_bound(cfg, n);
	plan->gpu_work = rcmoe_gpu_codec_encode_work_bytes(cfg, n);
	plan->cpu_encode = rcmoe_codec_encode;
	plan->gpu_encode = rcmoe_gpu_codec_encode;
	plan->stateless = plan->bound != 0;
	return plan->stateless;
}

int rcmoe_policy_plan(const struct rcmoe_params *p, const struct rcmoe_msg_info *info,
		      uint32_t attr_op, size_t bytes, uint64_t op_id,
		      struct rcmoe_encode_plan *plan)
{
	plan->stateless = plan->dedup = 0;
	if ((!enabled && !dedup) || !info->known || info->func != ncclFuncSend ||
	    !is_float(info->dtype))
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
	/* The codec for an eligible send: the one line that names it. */
	struct rcmoe_codec_cfg cfg = lsq_cfg(p, info->dtype, (int)p->a2a_bits, op_id,
					     info->rank >= 0 ? (uint32_t)info->rank : 0);
	if (enabled)
		plan_make(&cfg, bytes / esize, plan);
	/* Dedup blocks are LSQ blocks, so rows of a multiple of RCMOE_LSQ_BLOCK elements dedup
	 * row by row; the window lives as long as the operation (op_serial) stays the same. */
	if (dedup && info->op_serial) {
		plan->wd = (struct rcmoe_wdedup_cfg){
			.op = info->op_serial,
			.op_id = op_id,
			.block_bytes = (uint32_t)(p->lsq_block * (int64_t)esize),
		};
		if (enabled)
			plan->wd.lsq = cfg.u.lsq;
		plan->dedup_bound = rcmoe_wdedup_bound(bytes, &plan->wd);
		plan->dedup = plan->dedup_bound != 0;
	}
	return plan->stateless || plan->dedup;
}

/* The sender's tests of rcmoe_policy_plan that a receiver can make too: not the datatype's
 * alignment or the operation's count, which only the message itself tells, nor the scope. */
int rcmoe_policy_may_receive_encoded(const struct rcmoe_params *p,
				     const struct rcmoe_msg_info *info, uint32_t attr_op,
				     size_t bytes)
{
	if ((!enabled && !dedup) || bytes == 0 || bytes < (size_t)p->min_bytes)
		return 0;
	if (!info->known)
		return 1;
	if (info->func != ncclFuncRecv || !is_float(info->dtype))
		return 0;
	if (!enabled && !info->op_serial)
		return 0; /* dedup alone needs the operation */
	/* Not RCMOE_A2A_SCOPE: whether the sender saw an all-to-all (its group's sends) is not
	 * something its peer's receive event reliably shows, so a lone float receive may too. */
	(void)attr_op;
	return 1;
}

/* The most elements max_bytes holds is in the narrowest dtype (bf16); scratch grows with the
 * element count, so that is the worst case, at every bit width the settings allow. A receiver
 * sizes for the smallest block a stream may declare (RCMOE_LSQ_MIN_BLOCK): the most blocks. */
size_t rcmoe_policy_gpu_work_bytes(const struct rcmoe_params *p, size_t max_bytes)
{
	size_t n = max_bytes / 2, need = 0;
	static const int bits[] = { 2, 4, 8 };
	for (int i = 0; i < 3; i++) {
		struct rcmoe_codec_cfg cfg = lsq_cfg(p, RCMOE_DT_BF16, bits[i], 0, 0);
		struct rcmoe_wire_header h = { .magic = RCMOE_WIRE_MAGIC,
					       .version = RCMOE_WIRE_VERSION,
					       .codec = RCMOE_CODEC_LSQ,
					       .dtype = RCMOE_DT_BF16,
					       .bits = (uint8_t)bits[i],
					       .block = RCMOE_LSQ_MIN_BLOCK,
					       .count = n };
		size_t e = rcmoe_gpu_codec_encode_work_bytes(&cfg, n);
		size_t d = rcmoe_gpu_codec_decode_work_bytes(&h);
		need = e > need ? e : need;
		need = d > need ? d : need;
	}
	return need;
}

void rcmoe_policy_describe(const struct rcmoe_params *p, char *buf, size_t len)
{
	char dd[96] = "";
	if (dedup)
		snprintf(dd, sizeof(dd), "%sdedup (window %lld bytes, host buffers)",
			 enabled ? ", after " : "", (long long)p->dedup_window);
	if (enabled)
		snprintf(buf, len,
			 "LSQ %lld-bit (block %lld)%s on %s float sends of at least %lld bytes",
			 (long long)p->a2a_bits, (long long)p->lsq_block, dd,
			 p->a2a_scope == RCMOE_A2A_SCOPE_P2P ? "all p2p" : "all-to-all",
			 (long long)p->min_bytes);
	else if (dedup)
		snprintf(buf, len, "lossless %s on %s float sends of at least %lld bytes", dd,
			 p->a2a_scope == RCMOE_A2A_SCOPE_P2P ? "all p2p" : "all-to-all",
			 (long long)p->min_bytes);
	else
		snprintf(buf, len, "off (lossless)");
}

int rcmoe_policy_dedup(void)
{
	return dedup;
}
