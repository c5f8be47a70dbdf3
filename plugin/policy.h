/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which sends are compressed, and how. Only what the profiler chain identified as a
 * point-to-point send of bf16, fp16 or fp32, long enough, within the configured scope, and never
 * when NCCL may put LL-formatted data (flags inside the payload) on p2p connections. Everything
 * else goes byte-exact.
 *
 * How is an encode plan: the codec and its configuration, and what the data path needs to run
 * it without knowing which codec it is (data.c). The policy is the one place that names a codec
 * for sending; adding one is a codec in the codec library (rcmoe/codec.h, rcmoe/kernels.h) and a
 * line in rcmoe_policy_plan.
 */
#ifndef RCMOE_POLICY_H
#define RCMOE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "rcmoe/codec.h"
#include "rcmoe/params.h"
#include "cpu_codec.h"
#include "gpu_codec.h"
#include "msginfo.h"

/* One send's encode plan. The stream the encoders write is stamped with the message's number
 * (its op_id), and decodes to exactly the send's bytes: data.c checks both before it sends. */
struct rcmoe_encode_plan {
	struct rcmoe_codec_cfg cfg;     /* codec id (cfg.codec) and its configuration */
	size_t n;                       /* elements to encode (dedup: bytes) */
	size_t bound;                   /* largest stream the encoders may write, header included */
	size_t gpu_work;                /* GPU scratch the GPU encoder needs (0 without CUDA) */
	rcmoe_cpu_encode_fn cpu_encode; /* host buffers, on the CPU codec workers */
	rcmoe_gpu_encode_fn gpu_encode; /* GPU buffers, on the comm's stream */
};

/* Decided once at setup: 0 when compression is off (RCMOE_A2A_BITS=0) or cannot be safe. */
int rcmoe_policy_setup(const struct rcmoe_params *p);

/* 1 and *plan filled when this send of `bytes` is to be encoded. `attr_op` is the last
 * setNetAttr op mask of the communicator (0 if none); `op_id` (the message's number) feeds the
 * RNG and is stamped into the stream. */
int rcmoe_policy_plan(const struct rcmoe_params *p, const struct rcmoe_msg_info *info,
		      uint32_t attr_op, size_t bytes, uint64_t op_id,
		      struct rcmoe_encode_plan *plan);

/* GPU codec scratch one comm needs for transfers up to max_bytes: any plan this policy makes,
 * and the decode of any stream a peer with the same settings sends. 0 without CUDA. */
size_t rcmoe_policy_gpu_work_bytes(const struct rcmoe_params *p, size_t max_bytes);

/* One line for the init log: what is compressed, and how ("off (lossless)" when nothing). */
void rcmoe_policy_describe(const struct rcmoe_params *p, char *buf, size_t len);

#endif
