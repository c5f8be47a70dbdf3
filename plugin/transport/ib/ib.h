/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private state of the InfiniBand/RoCE verbs transport (rcmoe_ib_ops).
 *
 * libibverbs is loaded at run time (ibv.c, RCMOE_IB_LIBRARY), so the plugin has no link-time
 * dependency on rdma-core and runs over sockets where it is absent. Every active port of every
 * HCA (RCMOE_IB_HCA filters them) is one device (init.c).
 *
 * A connection (conn.c) is RCMOE_IB_QPS_PER_CONN reliable-connected queue pairs between the two
 * processes plus a TCP side channel: the handshake (QP numbers, GID, the sender's clear-to-send
 * FIFO, the listener's secret) goes over it, and afterwards it only tells each side that the
 * other is gone (EOF).
 *
 * Data (data.c): the receiver owns every destination. irecv asks the core where the message
 * goes at once (needs_posted_dest), then writes a clear-to-send entry (address, rkey, size, tag)
 * by RDMA into slot seq % 32 of the sender's FIFO. The sender waits for the entry of each
 * message in order, checks its size and tag, and writes the payload straight into the posted
 * buffer with one RDMA write with immediate per QP (a stripe each, possibly empty); each
 * immediate carries its stripe's length and the message's flags. The receiver counts one
 * completion per QP per message; QPs deliver in order, so the k-th completion on a QP belongs
 * to message k.
 *
 * Memory (mr.c): reg_mr shares one verbs registration among every handle whose pages lie
 * inside it (a registration cache per HCA, counted on each), and dereg_mr drops the
 * registration with its last handle.
 *
 * Threading: no threads of its own. One caller thread per comm at a time (NCCL's proxy thread),
 * except reg_mr/dereg_mr (NCCL's service thread, and proxy threads of other comms), which touch
 * only the HCA's protection domain and registration cache, the latter under its lock.
 */
#ifndef RCMOE_IB_H
#define RCMOE_IB_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rcmoe/ibv_abi.h"
#include "rcmoe/transport.h"
#include "transport/socket/socket.h" /* its side-channel helpers: sock_util.c, iface.c */

#define IB_MAX_REQS    RCMOE_TRANSPORT_MAX_REQUESTS
#define IB_MAX_QPS     16 /* RCMOE_IB_QPS_PER_CONN's maximum */
#define IB_MAX_DEVS    32
#define IB_RECV_DEPTH  (2 * IB_MAX_REQS) /* receive WRs kept posted on each QP */
#define IB_PEER_STRLEN 64

/* ---- the verbs library (ibv.c) ---- */

struct ib_verbs {
	void *lib;
	struct rcmoe_ibv_device **(*get_device_list)(int *num);
	void (*free_device_list)(struct rcmoe_ibv_device **list);
	const char *(*get_device_name)(struct rcmoe_ibv_device *dev);
	struct rcmoe_ibv_context *(*open_device)(struct rcmoe_ibv_device *dev);
	int (*close_device)(struct rcmoe_ibv_context *ctx);
	int (*query_port)(struct rcmoe_ibv_context *ctx, uint8_t port,
			  struct rcmoe_ibv_port_attr *attr);
	int (*query_gid)(struct rcmoe_ibv_context *ctx, uint8_t port, int index,
			 union rcmoe_ibv_gid *gid);
	struct rcmoe_ibv_pd *(*alloc_pd)(struct rcmoe_ibv_context *ctx);
	int (*dealloc_pd)(struct rcmoe_ibv_pd *pd);
	struct rcmoe_ibv_mr *(*reg_mr)(struct rcmoe_ibv_pd *pd, void *addr, size_t len, int access);
	int (*dereg_mr)(struct rcmoe_ibv_mr *mr);
	struct rcmoe_ibv_cq *(*create_cq)(struct rcmoe_ibv_context *ctx, int cqe, void *cq_context,
					  void *channel, int comp_vector);
	int (*destroy_cq)(struct rcmoe_ibv_cq *cq);
	struct rcmoe_ibv_qp *(*create_qp)(struct rcmoe_ibv_pd *pd,
					  struct rcmoe_ibv_qp_init_attr *attr);
	int (*modify_qp)(struct rcmoe_ibv_qp *qp, struct rcmoe_ibv_qp_attr *attr, int mask);
	int (*destroy_qp)(struct rcmoe_ibv_qp *qp);
	const char *(*wc_status_str)(int status);
	/* optional (rdma-core 34 and later): NULL when the library lacks it */
	struct rcmoe_ibv_mr *(*reg_dmabuf_mr)(struct rcmoe_ibv_pd *pd, uint64_t offset, size_t len,
					      uint64_t iova, int fd, int access);
};

extern struct ib_verbs ib_verbs;
/* dlopen `path` and resolve every entry point; RCMOE_ERR_UNSUPPORTED (with an INFO saying why)
 * when the library or a symbol is missing. */
rcmoe_status_t ib_verbs_load(const char *path);
/* "IBV_WC_..." name of a completion status, from the library when it has one. */
const char *ib_wc_status_str(int status);

/* ---- devices (init.c) ---- */

/* The live registrations of one HCA (mr.c): sorted by start, all counters under `lock`. */
struct ib_mr_entry;
struct ib_mr_cache {
	pthread_mutex_t lock;
	uintptr_t page;         /* the page size: registrations are of whole pages */
	struct ib_mr_entry **v; /* by start address */
	size_t n, cap, peak;    /* live registrations; array size; most live at once */
	uint64_t hits, misses;  /* reg_mr calls that shared a registration, or made one */
};

struct ib_hca {
	struct rcmoe_ibv_context *ctx;
	struct rcmoe_ibv_pd *pd;
	char name[64];
	struct ib_mr_cache mr_cache;
};

struct ib_dev {
	struct ib_hca *hca;
	uint8_t port;
	int gid_index;
	union rcmoe_ibv_gid gid;
	uint16_t lid;
	uint8_t link_layer;
	int mtu; /* RCMOE_IBV_MTU_* */
	int speed_mbps;
	char pci_path[256];
};

struct ib_global {
	struct rcmoe_params params; /* copied at init */
	union sock_addr side_addr;  /* the side channel's address, port 0 */
	int ndev;
	struct ib_dev dev[IB_MAX_DEVS];
	int nhca;
	struct ib_hca hca[IB_MAX_DEVS];
};

extern struct ib_global ib_global;
rcmoe_status_t ib_init(const struct rcmoe_params *params);
rcmoe_status_t ib_check_init(void);
rcmoe_status_t ib_device_count(int *ndev);
rcmoe_status_t ib_device_info(int dev, struct rcmoe_device_info *info);
/* Does `name` (an HCA) with `port` pass the RCMOE_IB_HCA filter `filter`? */
bool ib_hca_selected(const char *filter, const char *name, int port);

/* ---- wire formats (proto.c), big-endian ---- */

#define IB_PROTO_VERSION 1u
#define IB_HANDLE_MAGIC  0x72636d6f65696268ull /* "rcmoeibh" */
#define IB_HELLO_MAGIC   0x72636d6f65696263ull /* "rcmoeibc": connector -> listener */
#define IB_REPLY_MAGIC   0x72636d6f65696261ull /* "rcmoeiba": listener -> connector */
#define IB_HANDLE_SIZE   44
/* hello / reply: magic u64 | version u32 | nqps u32 | secret u64 | gid 16 B | lid u16 | mtu u8 |
 * pad u8 | fifo_rkey u32 | fifo_addr u64 | qpn u32 x IB_MAX_QPS */
#define IB_HELLO_SIZE (8 + 4 + 4 + 8 + 16 + 2 + 1 + 1 + 4 + 8 + 4 * IB_MAX_QPS)
/* The connector says it is ready (its QPs are ready to receive) with this one byte. */
#define IB_READY_BYTE 0x52

struct ib_handle {
	uint32_t version;
	union sock_addr addr;
	uint64_t secret;
};

struct ib_hello {
	uint64_t magic;
	uint32_t version;
	uint32_t nqps;
	uint64_t secret; /* the listener's, from the handle (hello); 0 in the reply */
	union rcmoe_ibv_gid gid;
	uint16_t lid;
	uint8_t mtu;
	uint32_t fifo_rkey; /* hello only: the sender's clear-to-send FIFO */
	uint64_t fifo_addr;
	uint32_t qpn[IB_MAX_QPS];
};

void ib_handle_encode(const struct ib_handle *h, void *buf);
rcmoe_status_t ib_handle_decode(const void *buf, struct ib_handle *h);
void ib_hello_encode(const struct ib_hello *h, uint8_t out[IB_HELLO_SIZE]);
void ib_hello_decode(const uint8_t in[IB_HELLO_SIZE], struct ib_hello *h);

/* A clear-to-send entry, written by the receiver into the sender's FIFO. `seq1` (message number
 * + 1) is last, and the sender reads it first: an entry is there when seq1 matches. */
struct ib_cts {
	uint64_t addr;
	uint64_t size;
	uint32_t rkey;
	int32_t tag;
	uint32_t pad;
	uint32_t seq1;
};

/* Immediate data of a stripe (host order before htonl): its length and the message's flags. */
#define IB_IMM_ENCODED 0x80000000u
#define IB_IMM_LEN     0x7fffffffu

/* ---- comms ---- */

/* The opaque types of transport.h are, in this transport, the ib_* structures below; the
 * socket transport (whose helpers the side channel uses) defines the rcmoe_t* tags for itself,
 * so the two meet only through these conversions (ops.c, data.c). */
struct ib_mr {
	struct rcmoe_ibv_mr *mr; /* the registration it shares (its entry's) */
	uintptr_t addr;          /* the range reg_mr was asked for: transfers must stay inside */
	size_t len;
	struct ib_mr_entry *entry; /* NULL: a DMA-BUF registration of its own */
	struct ib_hca *dmabuf_hca; /* that registration's HCA */
	bool spanning; /* its pages are all of the registration's (mr.c says why that matters) */
};

/* Does the handle's range hold [p, p + len)? */
static inline bool ib_mr_covers(const struct ib_mr *m, const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p;
	return m && a >= m->addr && a - m->addr <= m->len && len <= m->len - (a - m->addr);
}

/* mr.c: the registration cache. ib_mr_cache_init sets up an HCA's (init.c, before the HCA is
 * counted). ib_mr_get returns a handle on `len` bytes at `buf`, sharing a live registration with
 * `access` that holds their pages or registering them (a WARN when the verbs refuse);
 * ib_mr_put drops it, and the registration with its last handle. */
rcmoe_status_t ib_mr_cache_init(struct ib_hca *h);
rcmoe_status_t ib_mr_get(struct ib_hca *h, void *buf, size_t len, int access, struct ib_mr **out);
rcmoe_status_t ib_mr_put(struct ib_mr *m);
/* A handle on a DMA-BUF registration of its own (not cached: two fds for the same memory cannot
 * be told apart), named by iova `buf`; ib_mr_put deregisters it. RCMOE_ERR_UNSUPPORTED when the
 * library has no ibv_reg_dmabuf_mr, RCMOE_ERR_SYSTEM (with a WARN) when the verbs refuse. */
rcmoe_status_t ib_mr_get_dmabuf(struct ib_hca *h, void *buf, size_t len, int fd, uint64_t offset,
				int access, struct ib_mr **out);
struct ib_mr_cache_stats {
	uint64_t hits, misses;
	size_t live, peak;
};
void ib_mr_cache_stats(struct ib_hca *h, struct ib_mr_cache_stats *out);

enum ib_req_state {
	IB_REQ_FREE = 0,
	IB_REQ_WAIT_CTS, /* send: waiting for the receiver's entry */
	IB_REQ_POSTED,   /* send: stripes written; recv: entry written */
	IB_REQ_DONE,
	IB_REQ_FLUSHING, /* recv: a flush's read is posted (flush.c) */
};

struct ib_comm;

struct ib_req {
	struct ib_comm *comm;
	enum ib_req_state state;
	uint32_t seq;
	const uint8_t *buf; /* send */
	size_t len;         /* send: its length; recv: bytes received so far */
	uint32_t lkey;      /* send */
	int tag;
	uint32_t flags;
	int pending; /* completions still expected (stripes) */
};

struct ib_comm {
	bool is_send;
	struct ib_dev *dev;
	char peer[IB_PEER_STRLEN];
	int fd; /* the side channel */
	int nqps;
	struct rcmoe_ibv_cq *cq;
	struct rcmoe_ibv_qp *qp[IB_MAX_QPS];

	struct ib_req reqs[IB_MAX_REQS];
	uint32_t head;       /* seq of the next request */
	uint32_t next_write; /* send: seq of the next message to write */

	/* send: the FIFO the receiver writes its entries into */
	struct ib_cts *fifo;
	struct rcmoe_ibv_mr *fifo_mr;
	/* recv: the entries as written from here, the sender's FIFO, and per slot whether the
	 * entry's write is still in flight */
	struct ib_cts *cts;
	struct rcmoe_ibv_mr *cts_mr;
	uint64_t peer_fifo_addr;
	uint32_t peer_fifo_rkey;
	bool cts_busy[IB_MAX_REQS];
	uint32_t qp_msgs[IB_MAX_QPS]; /* recv: stripes received on each QP */

	/* recv, from its first DMA-BUF registration (flush.c): a QP connected to itself whose
	 * RDMA reads of received GPU memory order the HCA's earlier writes before what follows */
	struct rcmoe_ibv_cq *flush_cq;
	struct rcmoe_ibv_qp *flush_qp;
	uint32_t *flush_buf; /* where the read bytes land (host) */
	struct rcmoe_ibv_mr *flush_mr;
	struct ib_req flush_reqs[IB_MAX_REQS];
	uint32_t flush_head;

	rcmoe_status_t error; /* RCMOE_OK while healthy */
	uint64_t eof_ns;      /* the side channel closed (0: not seen) */
	uint64_t next_side_ns;
};

#define IB_TO(type, p) ((type *)(void *)(p))

/* qp.c: the verbs side of a comm. ib_ep_create makes its CQ and QPs (state INIT) and its
 * FIFO (send) or entries (recv); ib_ep_hello describes them for the peer; ib_ep_connect takes
 * the QPs to RTS towards the peer's hello (and posts a receive comm's receive WRs). */
rcmoe_status_t ib_ep_create(struct ib_comm *c);
void ib_ep_hello(const struct ib_comm *c, uint64_t magic, uint64_t secret, struct ib_hello *h);
rcmoe_status_t ib_ep_connect(struct ib_comm *c, const struct ib_hello *peer);
/* One RC QP of the comm (`what` names it in WARNs): to INIT with `access`; to RTR and RTS
 * towards QP `dest_qpn` at (gid, lid), by GID where the link or a lid of 0 asks for it. */
rcmoe_status_t ib_qp_init(const struct ib_comm *c, struct rcmoe_ibv_qp *qp, const char *what,
			  int access);
rcmoe_status_t ib_qp_connect(const struct ib_comm *c, struct rcmoe_ibv_qp *qp, const char *what,
			     uint32_t dest_qpn, const union rcmoe_ibv_gid *gid, uint16_t lid,
			     int mtu);

/* flush.c: ib_flush_create makes a receiving comm's flush QP (once; the service thread, at its
 * first DMA-BUF registration); ib_iflush posts a read of the first bytes of `buf` (a DMA-BUF
 * registration's memory: host memory needs none, *req NULL); ib_flush_test completes it;
 * ib_flush_destroy frees what ib_flush_create made. */
rcmoe_status_t ib_flush_create(struct ib_comm *c);
rcmoe_status_t ib_iflush(struct rcmoe_trecv *comm, void *buf, size_t len, struct rcmoe_tmr *mr,
			 struct rcmoe_treq **req);
void ib_flush_test(struct ib_req *r);
void ib_flush_destroy(struct ib_comm *c);

/* conn.c */
rcmoe_status_t ib_listen(int dev, void *handle, struct rcmoe_tlisten **out);
rcmoe_status_t ib_connect(int dev, const void *handle, struct rcmoe_tsend **out);
rcmoe_status_t ib_accept(struct rcmoe_tlisten *l, struct rcmoe_trecv **out);
rcmoe_status_t ib_close_listen(struct rcmoe_tlisten *l);
void ib_comm_destroy(struct ib_comm *c);
/* Mark the comm failed with `st`; the first call logs one WARN naming the peer and shuts the
 * side channel down, so the peer learns it too. */
void ib_comm_fail(struct ib_comm *c, rcmoe_status_t st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* data.c */
rcmoe_status_t ib_isend(struct rcmoe_tsend *comm, const void *buf, size_t len, struct rcmoe_tmr *mr,
			int tag, uint32_t flags, struct rcmoe_treq **req);
rcmoe_status_t ib_irecv(struct rcmoe_trecv *comm, size_t max_len, int tag, rcmoe_place_fn place,
			void *place_arg, struct rcmoe_treq **req);
rcmoe_status_t ib_test(struct rcmoe_treq *req, int *done, size_t *len, uint32_t *flags);
/* Post the receive WRs a fresh receive comm keeps on each QP. */
rcmoe_status_t ib_post_recvs(struct ib_comm *c, int qp, int n);

#endif
