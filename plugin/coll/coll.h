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
 *   ar_gpu.c     the same calls on device buffers: kernels in the plugin's CUDA context
 *   ar_policy.c  the RCMOE_AR_* settings and the mode of each call
 *   sum.c        the exact rank-order sum every mode uses (kernels/rank_sum.cu on the GPU)
 *   profile.c    where a call's time goes (profile.h), logged at finalize
 *
 * The mesh. Every rank connects to every other twice through the transport (rcmoe/transport.h):
 * connection set A carries each call's first message (a reduce-scatter shard, or a PTS stream),
 * set B its second (an all-gather shard). Each directed connection carries at most one message
 * per call, posted in call order on both sides, so calls in flight never mix, whatever the
 * timing (NCCL issues calls in the same order on every rank).
 *
 * Both transports. Over sockets (needs_posted_dest 0) a receive is placed once its header
 * arrived, a growable buffer grown to the message's length then, and nothing is registered (the
 * socket transport takes unregistered memory). A transport that needs each receive's
 * destination posted ahead (IB: the sender writes by RDMA into what the receiver advertised)
 * also needs every buffer registered: there (posted_dest) each receive's buffer is grown to the
 * largest message it may get before it is posted, and every buffer a transfer uses is
 * registered once, on one connection of the mesh, which the transport lets every connection of
 * the device use (transport.h: reg_mr). NCCL's buffers are registered at regMr (comm.c); the
 * call slots' scratch on first use after it grew (rcmoe_coll_buf_reg).
 *
 * Threads. NCCL's proxy thread calls iallreduce and test; neither blocks: transfers are the
 * transport's non-blocking requests, driven from test, and encoding, decoding and summing run on
 * the CPU codec workers (cpu_codec.h; inline when RCMOE_CPU_CODEC_THREADS=0), or, for device
 * buffers, as kernels on the comm's own stream, polled through an event per call (ar_gpu.c).
 * connect may block (NCCL calls it once, on its proxy service thread), bounded by
 * RCMOE_SOCKET_TIMEOUT.
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
#include "gpu.h"
#include "profile.h"
#include "stats.h"

/* Calls in flight per collective comm: NCCL keeps at most NCCL_STEPS (8) per group of 8
 * channels in flight; each call takes one transport request per connection. */
#define RCMOE_COLL_MAX_CALLS NCCL_NET_MAX_REQUESTS
/* The two connection sets (see above). */
enum { RCMOE_COLL_SET_A = 0, RCMOE_COLL_SET_B = 1, RCMOE_COLL_NSETS = 2 };

/* Counters per mode of the calls (lossless, PTS, LSQ), each by datatype (stats.h cells with
 * func AllReduce, direction send: what this rank sent). */
struct rcmoe_coll_ctx {
	uint64_t comm_id;
	struct rcmoe_stats stats[RCMOE_AR_NMODES];
	struct coll_profile prof[RCMOE_AR_NMODES]; /* where the calls' time went (profile.h) */
	struct timespec last_dump;                 /* RCMOE_STATS_INTERVAL */
};

struct rcmoe_coll_listen {
	struct rcmoe_coll_ctx *ctx;
	struct rcmoe_tlisten *tlisten;
	int dev;
};

/* What a growable buffer holds: malloc'd host memory, pinned host memory mapped into the device
 * (the GPU path's streams and staging: kernels read and write it), or device memory. */
enum { RCMOE_BUF_HOST = 0, RCMOE_BUF_PINNED, RCMOE_BUF_DEVICE };

/* A growable buffer: grown to the next power of two when a call needs more, then kept, so a
 * slot allocates once per size class, not per call. */
struct rcmoe_growbuf {
	void *p;
	size_t cap;
	int kind; /* RCMOE_BUF_* */
	/* posted_dest only: its transport registration, made for [reg_p, reg_p + reg_cap) the
	 * first time a transfer used it (rcmoe_coll_buf_reg), so stale once p or cap moved on;
	 * NULL: none. */
	struct rcmoe_tmr *reg;
	void *reg_p;
	size_t reg_cap;
};

/* A pinned or device buffer replaced by a larger one: kernels enqueued before may still use it,
 * and freeing it would synchronize, so it is kept until the comm closes. */
struct rcmoe_coll_retired {
	struct rcmoe_growbuf buf;
	struct rcmoe_coll_retired *next;
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
	int pinned;           /* recv (GPU call): `in` is pinned, sized to max_len at setup */
	struct rcmoe_tmr *mr; /* recv, posted_dest: the registration of where it was posted */
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
	const char *send; /* NCCL's buffers (device memory for a GPU call) */
	char *recv;
	const struct rcmoe_coll_mr *smr, *rmr; /* their registrations (NULL: none given) */
	/* The host bytes the host steps read and write: send and recv, or for a lossless GPU
	 * call the pinned staging `hs` and `hr` */
	const char *hsend;
	char *hrecv;
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
	int clear; /* lossy call from NCCL's staging: zero each encoded piece of `send` after use */
	/* GPU path (ar_gpu.c): work on the call's lane is followed by a record of `ev`; each
	 * step keeps the number of its record (0: not enqueued), done once ev_seen reaches it. */
	int gpu; /* device buffers */
	struct coll_gpu_lane *lane;
	struct rcmoe_gpu_event ev;
	uint64_t ev_rec, ev_seen;
	uint64_t t_in;      /* lossless: copy of send to hs; PTS, LSQ: the encodes (and clear) */
	uint64_t t_own;     /* PTS: the accumulation; LSQ owner: decodes, sum, encode of the sum */
	uint64_t t_own2;    /* LSQ owner: decode of its summed stream into recv */
	uint64_t t_out;     /* lossless: copy of hr to recv */
	uint64_t *t_gather; /* [nranks] LSQ: decode of shard p's summed stream into recv */
	int in_taken;       /* t_in seen done and its results taken */
	int own_done;       /* LSQ owner: its shard is in recv */
	struct rcmoe_wire_header *hdrs; /* [2 nranks] validated headers: [p] set A, [n+p] set B */
	struct rcmoe_growbuf hs, hr;    /* lossless GPU call: pinned copies of send and result */
	int bad_peer;                /* set by a failing job: the peer whose stream was refused */
	rcmoe_status_t failed;       /* a job or a transfer of this call failed */
	uint64_t marks[COLL_NMARKS]; /* when it reached each mark (profile.h), 0: not yet */
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

/* A stream of the comm's GPU work and the scratch its kernels take turns with. Call `seq` runs
 * all its steps on lane seq % RCMOE_COLL_GPU_LANES (ar_gpu.c says why there are several). */
#define RCMOE_COLL_GPU_LANES 4
struct coll_gpu_lane {
	struct rcmoe_gpu_stream stream;
	struct rcmoe_growbuf work; /* device: codec scratch */
	struct rcmoe_growbuf dec;  /* device: the LSQ owner's decoded parts and their sum */
};

/* A comm's GPU resources (ar_gpu.c), made at connect when the plugin claims GPU buffers. */
struct coll_gpu {
	int dev; /* device of the plugin's CUDA context, or -1: host buffers only */
	struct coll_gpu_lane lanes[RCMOE_COLL_GPU_LANES];
	struct rcmoe_coll_retired *retired;
};

struct rcmoe_coll_comm {
	struct rcmoe_coll_ctx *ctx;
	int rank;
	int nranks;
	struct rcmoe_ar_settings settings;
	struct coll_peer *peers; /* [nranks]; this rank's own entry has no connections */
	struct coll_call calls[RCMOE_COLL_MAX_CALLS];
	uint64_t next_seq;
	uint64_t last_post_ns; /* profile.h: NCCL's pace */
	rcmoe_status_t failed; /* sticky: every call fails after it */
	/* The transport needs receives posted ahead and every buffer registered (see above). */
	int posted_dest;
	/* NCCL's collNet staging buffer: the first region registered on the comm (NCCL registers
	 * it at setup, before any user buffer). Lossy calls clear what they encoded from it
	 * (ar_engine.c, "Leftovers"). NULL before regMr and after its deregMr. */
	struct rcmoe_coll_mr *stage_mr;
	int registered; /* any region was ever registered: later ones are never staging */
	struct coll_gpu gpu;
};

/* A registration: which kind of memory it is, and whether it is NCCL's own collNet staging. */
struct rcmoe_coll_mr {
	char *base;
	size_t size;
	int type;    /* NCCL_PTR_HOST or NCCL_PTR_CUDA */
	int staging; /* the comm's first registration: NCCL's staging buffer (comm.c, reg_mr) */
	struct rcmoe_tmr *tmr; /* posted_dest, host memory: its transport registration */
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

/* posted_dest: the registration of a call slot's buffer g, made now if g is new or grew since
 * (the memory it replaced is freed only after rcmoe_coll_buf_unreg, or kept until close:
 * ar_gpu.c), in *out; a WARN and an error when the transport refuses. */
rcmoe_status_t rcmoe_coll_buf_reg(struct rcmoe_coll_comm *c, struct rcmoe_growbuf *g,
				  struct rcmoe_tmr **out);
/* Drop g's registration, if any: before its memory is freed or replaced. */
void rcmoe_coll_buf_unreg(struct rcmoe_coll_comm *c, struct rcmoe_growbuf *g);
/* Drop the registrations of slot k's buffers; host_only: only of malloc'd ones (those a GPU
 * call frees when it regrows them as pinned memory). No transfer of the slot may be in flight. */
void rcmoe_coll_call_unreg(struct rcmoe_coll_comm *c, struct coll_call *k, int host_only);

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

/* ar_gpu.c: device buffers */
/* At connect, when the plugin claims GPU buffers: bind the plugin's CUDA context, make the
 * comm's stream and an event per call slot. c->gpu.dev stays -1 otherwise. */
rcmoe_status_t rcmoe_coll_gpu_open(struct rcmoe_coll_comm *c);
/* At close (calls quiet) or after a failed connect: release every pinned and device buffer of
 * the comm and its slots, the events and the stream. Safe on a comm without GPU. */
void rcmoe_coll_gpu_close(struct rcmoe_coll_comm *c);
/* iallreduce of a call with k->gpu: its buffers and first kernels. */
rcmoe_status_t rcmoe_coll_gpu_setup(struct coll_call *k);
/* test: move a GPU call along (never blocks); complete: its GPU steps are all done. */
rcmoe_status_t rcmoe_coll_gpu_progress(struct coll_call *k);
int rcmoe_coll_gpu_complete(const struct coll_call *k);
/* Nothing enqueued for the call is still running (a failed comm's quiesce). */
int rcmoe_coll_gpu_quiet(struct coll_call *k);

#endif
