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
#include "rcmoe/wdedup.h"
#include "cpu_codec.h"
#include "gpu_codec.h"
#include "msginfo.h"

/* One send's encode plan. The stream the encoders write is stamped with the message's number
 * (its op_id), and decodes to exactly the send's bytes: data.c checks both before it sends.
 *
 * With RCMOE_A2A_DEDUP=on a plan also carries the window dedup of the send (`dedup`, `wd`): a
 * stateful codec that must run on its connection's window, one message at a time and in order
 * (a2a_dedup.h), on host buffers only for now. data.c takes it for host buffers; a GPU buffer
 * takes the stateless codec below when there is one (`stateless`), else goes raw. */
struct rcmoe_encode_plan {
	int stateless;                  /* cfg and what follows are set (RCMOE_A2A_BITS) */
	int dedup;                      /* wd is set (RCMOE_A2A_DEDUP) */
	struct rcmoe_wdedup_cfg wd;     /* window dedup, LSQ-composed when RCMOE_A2A_BITS is set */
	size_t dedup_bound;             /* largest window-dedup stream, header included */
	struct rcmoe_codec_cfg cfg;     /* codec id (cfg.codec) and its configuration */
	size_t n;                       /* elements to encode (dedup: bytes) */
	size_t bound;                   /* largest stream the encoders may write, header included */
	size_t gpu_work;                /* GPU scratch the GPU encoder needs (0 without CUDA) */
	rcmoe_cpu_encode_fn cpu_encode; /* host buffers, on the CPU codec workers */
	rcmoe_gpu_encode_fn gpu_encode; /* GPU buffers, on the comm's stream */
};

/* Decided once at setup: 0 when nothing is coded (RCMOE_A2A_BITS=0 and RCMOE_A2A_DEDUP=off),
 * or LSQ cannot be safe and dedup is off. */
int rcmoe_policy_setup(const struct rcmoe_params *p);

/* 1 and *plan filled when this send of `bytes` is to be encoded. `attr_op` is the last
 * setNetAttr op mask of the communicator (0 if none); `op_id` (the message's number) feeds the
 * RNG and is stamped into the stream. */
int rcmoe_policy_plan(const struct rcmoe_params *p, const struct rcmoe_msg_info *info,
		      uint32_t attr_op, size_t bytes, uint64_t op_id,
		      struct rcmoe_encode_plan *plan);

/* May a peer with these settings send an encoded stream into this receive of at most `bytes`
 * (its own attribution `info`, the comm's `attr_op`)? 0 only when it surely cannot: nothing is
 * coded, the receive is shorter than RCMOE_MIN_BYTES (so is every send it may get), or it is
 * known to be no receive of what rcmoe_policy_plan encodes (another function or datatype). An
 * unknown receive may, and so may a lone float receive (a receiver cannot tell the scope).
 * For transports that need the destination before the message (data.c): a guess that costs a
 * copy when wrong, never bytes.
 */
int rcmoe_policy_may_receive_encoded(const struct rcmoe_params *p,
				     const struct rcmoe_msg_info *info, uint32_t attr_op,
				     size_t bytes);

/* GPU codec scratch one comm needs for transfers up to max_bytes: any plan this policy makes,
 * and the decode of any stream a peer with the same settings sends. 0 without CUDA. */
size_t rcmoe_policy_gpu_work_bytes(const struct rcmoe_params *p, size_t max_bytes);

/* 1 when RCMOE_A2A_DEDUP=on: connections get dedup windows (a2a_dedup.h). */
int rcmoe_policy_dedup(void);

/* One line for the init log: what is compressed, and how ("off (lossless)" when nothing). */
void rcmoe_policy_describe(const struct rcmoe_params *p, char *buf, size_t len);

#endif
