/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which sends are compressed. Only what the profiler chain identified as a point-to-point send
 * of bf16, fp16 or fp32, long enough, within the configured scope, and never when NCCL may put
 * LL-formatted data (flags inside the payload) on p2p connections. Everything else goes byte-exact.
 */
#ifndef RCMOE_POLICY_H
#define RCMOE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "rcmoe/codec.h"
#include "rcmoe/params.h"
#include "msginfo.h"

/* Decided once at setup: 0 when compression is off (RCMOE_A2A_BITS=0) or cannot be safe. */
int rcmoe_policy_setup(const struct rcmoe_params *p);

/* 1 and *cfg filled when this send is to be LSQ-encoded. `attr_op` is the last setNetAttr op
 * mask of the communicator (0 if none); `op_id` feeds the RNG. */
int rcmoe_policy_lsq(const struct rcmoe_params *p, const struct rcmoe_msg_info *info,
		     uint32_t attr_op, size_t bytes, uint64_t op_id, struct rcmoe_lsq_cfg *cfg);

#endif
