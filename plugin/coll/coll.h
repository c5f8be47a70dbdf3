/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collective side (NCCL's collNet): a version-neutral core the ABI tables (abi/coll_v11.c,
 * abi/coll_v10.c) call, as the net side's core.h is for abi/net_v*.c. It carries all-reduce:
 * NCCL hands each iallreduce a count, a datatype and a reduction, and the plugin does the whole
 * inter-node reduction itself over its own connections, losslessly or compressed (policy:
 * ar_policy.h).
 *
 * Files, one job each:
 *   comm.c       init, devices, listen, connect (the full mesh and its hello), regMr, close
 *   ar_engine.c  iallreduce and test: the per-call state machine (docs/compression.md)
 *   ar_policy.c  the RCMOE_AR_* settings and the mode of each call
 *   sum.c        the exact rank-order sum every mode uses
 *
 * The mesh. Every rank connects to every other twice through the transport (rcmoe/transport.h):
 * connection set A carries each call's first message (a reduce-scatter shard, or a PTS stream),
 * set B its second (an all-gather shard). Each directed connection carries at most one message
 * per call, posted in call order on both sides, so calls in flight never mix, whatever the
 * timing (NCCL issues calls in the same order on every rank).
 *
 * Threads. NCCL's proxy thread calls iallreduce and test; neither blocks: transfers are the
 * transport's non-blocking requests, driven from test, and encoding, decoding and summing run on
 * the CPU codec workers (cpu_codec.h; inline when RCMOE_CPU_CODEC_THREADS=0). connect may block
 * (NCCL calls it once, on its proxy service thread), bounded by RCMOE_SOCKET_TIMEOUT.
 */
#ifndef RCMOE_COLL_H
#define RCMOE_COLL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "rcmoe/nccl_abi.h"
#include "rcmoe/status.h"
#include "rcmoe/transport.h"
#include "ar_policy.h"
#include "cpu_codec.h"
#include "stats.h"

/* Calls in flight per collective comm: NCCL keeps at most NCCL_STEPS (8) per group of 8
 * channels in flight; each call takes one transport request per connection. */
#define RCMOE_COLL_MAX_CALLS NCCL_NET_MAX_REQUESTS
/* The two connection sets (see above). */
enum { RCMOE_COLL_SET_A = 0, RCMOE_COLL_SET_B = 1, RCMOE_COLL_NSETS = 2 };

/*
 * GPU SEAM. The collective side reduces host buffers only so far. It reports the net side's
 * ptrSupport (NCCL merges net and collNet devices of the same name, so they must agree), but
 * until GPU support lands here it declines to connect when the plugin claims GPU buffers (NCCL
 * then keeps all-reduce on its ring: no collNet, no failure), and iallreduce refuses any pointer
 * registered as NCCL_PTR_CUDA. GPU support plugs in here: make this return 1, and give
 * ar_engine.c's coll_call_start (marked "GPU SEAM") the staging and kernels.
 */
static inline int rcmoe_coll_gpu_supported(void)
{
	return 0;
}

/* Counters per mode of the calls (lossless, PTS, LSQ), each by datatype (stats.h cells with
 * func AllReduce, direction send: what this rank sent). */
struct rcmoe_coll_ctx {
	uint64_t comm_id;
	struct rcmoe_stats stats[RCMOE_AR_NMODES];
	struct timespec last_dump; /* RCMOE_STATS_INTERVAL */
};

struct rcmoe_coll_listen {
	struct rcmoe_coll_ctx *ctx;
	struct rcmoe_tlisten *tlisten;
	int dev;
};

/* A growable buffer: grown to the next power of two when a call needs more, then kept, so a
 * slot allocates once per size class, not per call. */
struct rcmoe_growbuf {
	void *p;
	size_t cap;
};

/* One transfer of a call: on connection (peer, set), send or receive. */
enum coll_xfer_state {
	XFER_NONE = 0, /* no message on this connection for this call */
	XFER_WAIT,     /* waiting for its data (send) or its turn (both) */
	XFER_POSTED,   /* the transport has it */
	XFER_DONE,
};

struct coll_call;

struct coll_xfer {
	struct coll_call *call;
	int peer;
	int set;
	int is_send;
	enum coll_xfer_state state;
	int ready;        /* send: data in place; recv: may be posted */
	const void *sbuf; /* send: bytes to send */
	size_t len;       /* send: bytes; recv: bytes received */
	size_t max_len;   /* recv: the largest message it may be */
	void *dest;       /* recv: fixed destination, or NULL: grown into `in` at arrival */
	struct rcmoe_growbuf in;
	struct rcmoe_treq *treq;
};

enum coll_call_state { CALL_FREE = 0, CALL_RUNNING, CALL_DONE };

/* One iallreduce. Its per-peer arrays have nranks entries, allocated at connect. */
struct coll_call {
	enum coll_call_state state;
	struct rcmoe_coll_comm *comm;
	uint64_t seq; /* the call's number on this comm: the same on every rank */
	int mode;     /* RCMOE_AR_* (ar_policy.h) */
	int dtype;
	size_t count;
	size_t esize;
	const char *send;
	char *recv;
	struct coll_xfer *xa_send, *xa_recv, *xb_send, *xb_recv; /* [nranks], by peer */
	/* Worker jobs: `jobs[s]` per shard or peer (encodes, LSQ decodes); `reduce` the sum. */
	struct rcmoe_cpu_job *jobs;
	int *job_used; /* [nranks]: 0 unused, 1 submitted, 2 results taken */
	struct rcmoe_cpu_job reduce;
	int reduce_used;
	/* Scratch, kept per slot across calls (size classes). */
	struct rcmoe_growbuf work;  /* lossless: contributions; LSQ: decoded shards + sum */
	struct rcmoe_growbuf own;   /* PTS: this rank's stream; LSQ: its encoded shards */
	size_t *own_off;            /* [nranks] LSQ: offset of shard s's stream in `own` */
	size_t *own_len;            /* [nranks] length of that stream (PTS: [0]) */
	const void **srcs;          /* [nranks] a job's inputs, in rank order */
	size_t *lens;               /* [nranks] their lengths (streams) */
	struct rcmoe_growbuf agout; /* LSQ: the encoded summed shard */
	size_t agout_len;
	int bad_peer;          /* set by a failing job: the peer whose stream was refused */
	rcmoe_status_t failed; /* a job or a transfer of this call failed */
	uint64_t codec_ns;
	size_t wire_sent;
};

struct coll_peer {
	struct rcmoe_tsend *tsend[RCMOE_COLL_NSETS];
	struct rcmoe_trecv *trecv[RCMOE_COLL_NSETS];
	/* The next call whose transfer on this connection is to be posted (call order). */
	uint64_t next_send[RCMOE_COLL_NSETS];
	uint64_t next_recv[RCMOE_COLL_NSETS];
};

struct rcmoe_coll_comm {
	struct rcmoe_coll_ctx *ctx;
	int rank;
	int nranks;
	struct rcmoe_ar_settings settings;
	struct coll_peer *peers; /* [nranks]; this rank's own entry has no connections */
	struct coll_call calls[RCMOE_COLL_MAX_CALLS];
	uint64_t next_seq;
	rcmoe_status_t failed; /* sticky: every call fails after it */
};

/* A registration: the collective side only needs to know which kind of memory it is. */
struct rcmoe_coll_mr {
	char *base;
	size_t size;
	int type; /* NCCL_PTR_HOST or NCCL_PTR_CUDA */
};

/* comm.c */
rcmoe_status_t rcmoe_coll_init(struct rcmoe_coll_ctx **ctx, uint64_t comm_id,
			       ncclDebugLogger_t logger);
rcmoe_status_t rcmoe_coll_finalize(struct rcmoe_coll_ctx *ctx);
/* Log (at finalize) and queue for RCMOE_STATS_FILE the counters of every mode; `event` is
 * "finalize" or "periodic". */
void rcmoe_coll_stats_dump(struct rcmoe_coll_ctx *ctx, const char *event);
/* The ctx of collNet v10 (one init per process) and of comms made without one. */
struct rcmoe_coll_ctx *rcmoe_coll_default_ctx(void);
rcmoe_status_t rcmoe_coll_listen(struct rcmoe_coll_ctx *ctx, int dev, void *handle,
				 struct rcmoe_coll_listen **out);
rcmoe_status_t rcmoe_coll_connect(void *handles[], int nranks, int rank,
				  struct rcmoe_coll_listen *l, struct rcmoe_coll_comm **out);
rcmoe_status_t rcmoe_coll_reduce_support(int dtype, int op, int *supported);
rcmoe_status_t rcmoe_coll_reg_mr(struct rcmoe_coll_comm *c, void *data, size_t size, int type,
				 struct rcmoe_coll_mr **out);
rcmoe_status_t rcmoe_coll_dereg_mr(struct rcmoe_coll_comm *c, struct rcmoe_coll_mr *mr);
rcmoe_status_t rcmoe_coll_close(struct rcmoe_coll_comm *c);
rcmoe_status_t rcmoe_coll_close_listen(struct rcmoe_coll_listen *l);

/* Tests: called by connect with this rank's settings before they go into its hello (NULL:
 * none), to make ranks disagree. */
void rcmoe_coll_set_settings_hook(void (*hook)(int rank, struct rcmoe_ar_settings *s));

/* ar_engine.c */
rcmoe_status_t rcmoe_coll_iallreduce(struct rcmoe_coll_comm *c, void *send, void *recv,
				     size_t count, int dtype, int op, struct rcmoe_coll_mr *smr,
				     struct rcmoe_coll_mr *rmr, struct coll_call **out);
rcmoe_status_t rcmoe_coll_test(struct coll_call *call, int *done, size_t *size);
/* When a call is in flight in `mr` (any call when mr is NULL): stop every call of the comm and
 * wait until nothing of ours touches their buffers. For close and deregMr (never the data
 * path); a deregMr of memory no call uses changes nothing. */
void rcmoe_coll_quiesce(struct rcmoe_coll_comm *c, const struct rcmoe_coll_mr *mr);
/* Set up / free the per-call arrays of a connected comm (its nranks known). */
rcmoe_status_t rcmoe_coll_calls_alloc(struct rcmoe_coll_comm *c);
void rcmoe_coll_calls_free(struct rcmoe_coll_comm *c);

#endif
