/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The version-neutral core of the net plugin. The ABI tables (abi/net_v11.c, abi/net_v10.c)
 * translate NCCL's calls into these functions and their rcmoe_status_t into ncclResult_t; the
 * core stages GPU buffers, asks the profiler side what each transfer is, keeps the counters, and
 * hands host bytes to the transport chosen at init (rcmoe/transport.h, transport/registry.c).
 *
 * What it leaves to others: which sends are encoded and how (the policy's encode plans,
 * policy.h), every CUDA call (gpu.h, gpu_codec.h: the core builds and runs without CUDA), the
 * codecs themselves (rcmoe/codec.h), and how bytes move (the transport).
 */
#ifndef RCMOE_CORE_H
#define RCMOE_CORE_H

#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>

#include "rcmoe/nccl_abi.h"
#include "rcmoe/params.h"
#include "rcmoe/status.h"
#include "rcmoe/transport.h"
#include "a2a_dedup.h"
#include "cpu_codec.h"
#include "gpu.h"
#include "gpu_codec.h"
#include "msginfo.h"
#include "stats.h"

#define RCMOE_NET_NAME      "RCMoE"
#define RCMOE_MAX_P2P_BYTES (1ull << 30) /* test() reports sizes as int */

/* One per NCCL communicator (net v11 init), or one for the process (net v10). */
struct rcmoe_ctx {
	uint64_t comm_id;
	ncclProfilerCallback_t prof;
	struct rcmoe_stats stats;
	_Atomic uint32_t attr_op; /* last setNetAttr op bitmask (v11), 0 if none */
	struct timespec last_dump;
};

/* A registered region. For GPU memory it carries a pinned host shadow of the same size: a
 * transfer at offset k of the region is staged at offset k of the shadow, so staging is bounded
 * by what NCCL registers and is allocated here, never per message. */
struct rcmoe_mr {
	char *base;
	size_t size;
	int type; /* NCCL_PTR_HOST or NCCL_PTR_CUDA */
	/* Host bytes the wire sees: GPU regions always have one (pinned, mapped into the GPU);
	 * with compression on, every region has one twice its size, so an encoded stream (which
	 * may briefly exceed its input while being built) of the transfer at offset k fits at 2k.
	 */
	char *host_shadow;
	size_t shadow_factor; /* 1 or 2 */
	int gpu_dev;          /* device of the plugin context the pinned shadow belongs to */
	/* The transport's registrations (reg_mr, on the comm NCCL registered the region with,
	 * which NCCL closes only after deregMr) of the host memory it may move: NCCL's buffer
	 * (host regions) and the shadow. NULL where there is none, or no comm was given. */
	struct rcmoe_comm *reg_comm;
	struct rcmoe_tmr *t_data;
	struct rcmoe_tmr *t_shadow;
};

enum rcmoe_req_state {
	REQ_FREE = 0,
	REQ_ENCODING,    /* send: GPU encoder writing the stream into the shadow */
	REQ_STAGING,     /* send: device -> host copy in flight */
	REQ_WAIT_POST,   /* send: ready, waiting for earlier sends to be posted (FIFO) */
	REQ_XFER,        /* the transport owns it */
	REQ_UNSTAGING,   /* recv: host -> device copy or GPU decode in flight */
	REQ_WAIT_DECODE, /* recv: a window-dedup stream waits for the earlier receives' decodes */
	REQ_DONE,
};

struct rcmoe_comm;

struct rcmoe_request {
	enum rcmoe_req_state state;
	int is_send;
	struct rcmoe_comm *comm;
	uint64_t seq;
	char *data;  /* NCCL's buffer */
	size_t size; /* send: bytes; recv: posted maximum */
	struct rcmoe_mr *mr;
	char *wire; /* host bytes handed to the transport */
	/* recv: where the transport writes the wire bytes (NCCL's buffer or the shadow), from
	 * place_recv: once the message is known, or at irecv for needs_posted_dest (data.c) */
	char *landing;
	size_t wire_len;
	uint32_t flags;
	size_t result;           /* bytes reported to NCCL */
	uint64_t codec_start_ns; /* GPU codec: when it was launched */
	uint64_t codec_ns;       /* encode or decode time, for the counters */
	int on_cpu;              /* REQ_ENCODING / REQ_UNSTAGING wait for `job`, not `ev` */
	int gpu_pending;         /* GPU work was enqueued for it and `ev` has not been seen done */
	int dd_job;              /* its CPU job codes against the comm's dedup window */
	int dd_pending;          /* that encode job waits for the earlier sends to be posted */
	struct rcmoe_wdedup_cfg wd; /* its window dedup, filled into the job when it starts */
	struct rcmoe_cpu_job job;
	struct rcmoe_treq *treq;
	struct rcmoe_gpu_event ev;
	struct rcmoe_msg_info info;
};

/* Send and recv comms share this shape; `is_send` says which transport comm is set. */
struct rcmoe_comm {
	int is_send;
	struct rcmoe_ctx *ctx;
	struct rcmoe_tsend *tsend;
	struct rcmoe_trecv *trecv;
	struct rcmoe_request reqs[NCCL_NET_MAX_REQUESTS];
	uint64_t next_seq;  /* sequence number of the next isend/irecv */
	uint64_t next_post; /* send: next sequence number to hand to the transport */
	int gpu_dev;        /* device of the plugin's CUDA context for this comm, or -1 */
	struct rcmoe_gpu_stream stream;
	void *gpu_work; /* codec scratch on the GPU (kernels on `stream` run one at a time) */
	size_t gpu_work_bytes;
	int failed;                    /* sticky: after an error every call fails */
	struct rcmoe_a2a_dedup *dedup; /* RCMOE_A2A_DEDUP's window, NULL when off */
};

struct rcmoe_listen_comm {
	struct rcmoe_ctx *ctx;
	struct rcmoe_tlisten *tlisten;
	int dev;
};

/* Device properties, version neutral (the ABI files copy them into their struct). */
struct rcmoe_props {
	char *name;
	char *pci_path;
	uint64_t guid;
	int ptr_support;
	int speed;
	float latency;
	size_t max_p2p_bytes;
};

/* ctx.c */
rcmoe_status_t rcmoe_core_init(struct rcmoe_ctx **ctx, uint64_t comm_id, ncclDebugLogger_t logger,
			       ncclProfilerCallback_t prof);
rcmoe_status_t rcmoe_core_finalize(struct rcmoe_ctx *ctx);
rcmoe_status_t rcmoe_core_devices(int *ndev);
rcmoe_status_t rcmoe_core_properties(int dev, struct rcmoe_props *props);
void rcmoe_core_set_attr(struct rcmoe_ctx *ctx, const ncclNetAttr_v11_t *attr);
const struct rcmoe_transport_ops *rcmoe_core_transport(void);
const struct rcmoe_params *rcmoe_core_params(void);
/* 1 when GPU buffers are claimed (NCCL_PTR_CUDA): comms then get a stream and events. */
int rcmoe_core_props_cuda(void);
/* 1 when eligible sends are compressed (RCMOE_A2A_BITS, see policy.h). */
int rcmoe_core_compressing(void);

/* conn.c */
rcmoe_status_t rcmoe_core_listen(struct rcmoe_ctx *ctx, int dev, void *handle,
				 struct rcmoe_listen_comm **out);
rcmoe_status_t rcmoe_core_connect(struct rcmoe_ctx *ctx, int dev, void *handle,
				  struct rcmoe_comm **out);
rcmoe_status_t rcmoe_core_accept(struct rcmoe_listen_comm *l, struct rcmoe_comm **out);
rcmoe_status_t rcmoe_core_close(struct rcmoe_comm *comm);
rcmoe_status_t rcmoe_core_close_listen(struct rcmoe_listen_comm *l);

/* mr.c */
rcmoe_status_t rcmoe_core_reg_mr(struct rcmoe_comm *comm, void *data, size_t size, int type,
				 struct rcmoe_mr **out);
rcmoe_status_t rcmoe_core_dereg_mr(struct rcmoe_comm *comm, struct rcmoe_mr *mr);

/* data.c */
rcmoe_status_t rcmoe_core_isend(struct rcmoe_comm *comm, void *data, size_t size, int tag,
				struct rcmoe_mr *mr, void *phandle, struct rcmoe_request **out);
rcmoe_status_t rcmoe_core_irecv(struct rcmoe_comm *comm, void *data, size_t size, int tag,
				struct rcmoe_mr *mr, void *phandle, struct rcmoe_request **out);
rcmoe_status_t rcmoe_core_test(struct rcmoe_request *req, int *done, size_t *size);
/* Block until no transfer of ours touches mr's buffers (all of the comm's when mr is NULL),
 * stopping the comm first if any is in flight. For deregMr and close, never the data path. */
void rcmoe_core_quiesce(struct rcmoe_comm *c, const struct rcmoe_mr *mr);

/* The ctx used by v10 (no per-comm init) and by comms created without one. */
struct rcmoe_ctx *rcmoe_core_default_ctx(void);

#endif
