/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The project's own declaration of the part of libibverbs' ABI (rdma-core, libibverbs.so.1) that
 * the IB transport (plugin/transport/ib/) uses, and that the test provider
 * (test/ib/fakeverbs/) implements. Written from the facts of the ABI: the member order, types and
 * sizes of the structures the caller reads or fills, and the numeric values of the constants. The
 * names carry an rcmoe_ prefix so that this header and rdma-core's can be compiled together: the
 * layout test (test/ib/test_ibv_layout.c) checks every offset here against the real header
 * where one is installed.
 *
 * Why the layouts matter: libibverbs' data-path calls (ibv_post_send, ibv_post_recv,
 * ibv_poll_cq) are not exported functions but inline wrappers that call through the function
 * pointers in the context's ops table. The transport makes the same indirect calls
 * (rcmoe_ibv_post_send etc. below), so it works against the real library and against the test
 * provider alike; every other verb is looked up by name with dlsym (plugin/transport/ib/ibv.c).
 *
 * Only what the transport touches is spelled out; reserved arrays keep the sizes and offsets of
 * the rest. Enumerations of the real ABI are int-sized; they are declared as int here.
 */
#ifndef RCMOE_IBV_ABI_H
#define RCMOE_IBV_ABI_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* ---- constants (values of rdma-core's enums) ---- */

enum {
	RCMOE_IBV_PORT_ACTIVE = 4,
	RCMOE_IBV_LINK_LAYER_UNSPECIFIED = 0,
	RCMOE_IBV_LINK_LAYER_INFINIBAND = 1,
	RCMOE_IBV_LINK_LAYER_ETHERNET = 2,
	RCMOE_IBV_MTU_256 = 1,
	RCMOE_IBV_MTU_1024 = 3,
	RCMOE_IBV_MTU_4096 = 5,
};

enum {
	RCMOE_IBV_ACCESS_LOCAL_WRITE = 1,
	RCMOE_IBV_ACCESS_REMOTE_WRITE = 1 << 1,
	RCMOE_IBV_ACCESS_REMOTE_READ = 1 << 2,
};

enum { RCMOE_IBV_QPT_RC = 2 };

enum {
	RCMOE_IBV_QPS_RESET = 0,
	RCMOE_IBV_QPS_INIT = 1,
	RCMOE_IBV_QPS_RTR = 2,
	RCMOE_IBV_QPS_RTS = 3,
	RCMOE_IBV_QPS_ERR = 6,
};

enum {
	RCMOE_IBV_QP_STATE = 1 << 0,
	RCMOE_IBV_QP_ACCESS_FLAGS = 1 << 3,
	RCMOE_IBV_QP_PKEY_INDEX = 1 << 4,
	RCMOE_IBV_QP_PORT = 1 << 5,
	RCMOE_IBV_QP_AV = 1 << 7,
	RCMOE_IBV_QP_PATH_MTU = 1 << 8,
	RCMOE_IBV_QP_TIMEOUT = 1 << 9,
	RCMOE_IBV_QP_RETRY_CNT = 1 << 10,
	RCMOE_IBV_QP_RNR_RETRY = 1 << 11,
	RCMOE_IBV_QP_RQ_PSN = 1 << 12,
	RCMOE_IBV_QP_MAX_QP_RD_ATOMIC = 1 << 13,
	RCMOE_IBV_QP_MIN_RNR_TIMER = 1 << 15,
	RCMOE_IBV_QP_SQ_PSN = 1 << 16,
	RCMOE_IBV_QP_MAX_DEST_RD_ATOMIC = 1 << 17,
	RCMOE_IBV_QP_DEST_QPN = 1 << 20,
};

enum {
	RCMOE_IBV_WR_RDMA_WRITE = 0,
	RCMOE_IBV_WR_RDMA_WRITE_WITH_IMM = 1,
	RCMOE_IBV_WR_SEND = 2,
	RCMOE_IBV_WR_RDMA_READ = 4,
};

enum {
	RCMOE_IBV_SEND_SIGNALED = 1 << 1,
	RCMOE_IBV_SEND_INLINE = 1 << 3,
};

enum {
	RCMOE_IBV_WC_SUCCESS = 0,
	RCMOE_IBV_WC_LOC_LEN_ERR = 1,
	RCMOE_IBV_WC_LOC_QP_OP_ERR = 2,
	RCMOE_IBV_WC_LOC_PROT_ERR = 4,
	RCMOE_IBV_WC_WR_FLUSH_ERR = 5,
	RCMOE_IBV_WC_LOC_ACCESS_ERR = 8,
	RCMOE_IBV_WC_REM_INV_REQ_ERR = 9,
	RCMOE_IBV_WC_REM_ACCESS_ERR = 10,
	RCMOE_IBV_WC_REM_OP_ERR = 11,
	RCMOE_IBV_WC_RETRY_EXC_ERR = 12,
	RCMOE_IBV_WC_RNR_RETRY_EXC_ERR = 13,
	RCMOE_IBV_WC_GENERAL_ERR = 21,
};

enum {
	RCMOE_IBV_WC_SEND = 0,
	RCMOE_IBV_WC_RDMA_WRITE = 1,
	RCMOE_IBV_WC_RDMA_READ = 2,
	RCMOE_IBV_WC_RECV = 1 << 7,
	RCMOE_IBV_WC_RECV_RDMA_WITH_IMM = (1 << 7) + 1,
};

enum { RCMOE_IBV_WC_WITH_IMM = 1 << 1 };

/* ---- structures ---- */

struct rcmoe_ibv_device; /* opaque: only passed back (ibv_open_device, ibv_get_device_name) */
struct rcmoe_ibv_context;
struct rcmoe_ibv_cq;
struct rcmoe_ibv_qp;
struct rcmoe_ibv_wc;
struct rcmoe_ibv_send_wr;
struct rcmoe_ibv_recv_wr;

/* The context's ops table: 32 function pointers, most of them compatibility placeholders. The
 * data path uses poll_cq (slot 11), post_send (25) and post_recv (26). */
struct rcmoe_ibv_context_ops {
	void *reserved0[11];
	int (*poll_cq)(struct rcmoe_ibv_cq *cq, int num_entries, struct rcmoe_ibv_wc *wc);
	int (*req_notify_cq)(struct rcmoe_ibv_cq *cq, int solicited_only);
	void *reserved1[12];
	int (*post_send)(struct rcmoe_ibv_qp *qp, struct rcmoe_ibv_send_wr *wr,
			 struct rcmoe_ibv_send_wr **bad_wr);
	int (*post_recv)(struct rcmoe_ibv_qp *qp, struct rcmoe_ibv_recv_wr *wr,
			 struct rcmoe_ibv_recv_wr **bad_wr);
	void *reserved2[5];
};

struct rcmoe_ibv_context {
	struct rcmoe_ibv_device *device;
	struct rcmoe_ibv_context_ops ops;
	int cmd_fd;
	int async_fd;
	int num_comp_vectors;
	pthread_mutex_t mutex;
	void *abi_compat;
};

union rcmoe_ibv_gid {
	uint8_t raw[16];
	struct {
		uint64_t subnet_prefix; /* big-endian */
		uint64_t interface_id;  /* big-endian */
	} global;
};

/* What the exported ibv_query_port fills (the caller zeroes it first, as libibverbs' inline
 * wrapper does: older libraries fill a shorter prefix). */
struct rcmoe_ibv_port_attr {
	int state;
	int max_mtu;
	int active_mtu;
	int gid_tbl_len;
	uint32_t port_cap_flags;
	uint32_t max_msg_sz;
	uint32_t bad_pkey_cntr;
	uint32_t qkey_viol_cntr;
	uint16_t pkey_tbl_len;
	uint16_t lid;
	uint16_t sm_lid;
	uint8_t lmc;
	uint8_t max_vl_num;
	uint8_t sm_sl;
	uint8_t subnet_timeout;
	uint8_t init_type_reply;
	uint8_t active_width;
	uint8_t active_speed;
	uint8_t phys_state;
	uint8_t link_layer;
	uint8_t flags;
	uint16_t port_cap_flags2;
};

struct rcmoe_ibv_pd {
	struct rcmoe_ibv_context *context;
	uint32_t handle;
};

struct rcmoe_ibv_mr {
	struct rcmoe_ibv_context *context;
	struct rcmoe_ibv_pd *pd;
	void *addr;
	size_t length;
	uint32_t handle;
	uint32_t lkey;
	uint32_t rkey;
};

struct rcmoe_ibv_cq {
	struct rcmoe_ibv_context *context;
	void *channel;
	void *cq_context;
	uint32_t handle;
	int cqe;
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	uint32_t comp_events_completed;
	uint32_t async_events_completed;
};

struct rcmoe_ibv_qp {
	struct rcmoe_ibv_context *context;
	void *qp_context;
	struct rcmoe_ibv_pd *pd;
	struct rcmoe_ibv_cq *send_cq;
	struct rcmoe_ibv_cq *recv_cq;
	void *srq;
	uint32_t handle;
	uint32_t qp_num;
	int state;
	int qp_type;
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	uint32_t events_completed;
};

struct rcmoe_ibv_qp_cap {
	uint32_t max_send_wr;
	uint32_t max_recv_wr;
	uint32_t max_send_sge;
	uint32_t max_recv_sge;
	uint32_t max_inline_data;
};

struct rcmoe_ibv_qp_init_attr {
	void *qp_context;
	struct rcmoe_ibv_cq *send_cq;
	struct rcmoe_ibv_cq *recv_cq;
	void *srq;
	struct rcmoe_ibv_qp_cap cap;
	int qp_type;
	int sq_sig_all;
};

struct rcmoe_ibv_global_route {
	union rcmoe_ibv_gid dgid;
	uint32_t flow_label;
	uint8_t sgid_index;
	uint8_t hop_limit;
	uint8_t traffic_class;
};

struct rcmoe_ibv_ah_attr {
	struct rcmoe_ibv_global_route grh;
	uint16_t dlid;
	uint8_t sl;
	uint8_t src_path_bits;
	uint8_t static_rate;
	uint8_t is_global;
	uint8_t port_num;
};

struct rcmoe_ibv_qp_attr {
	int qp_state;
	int cur_qp_state;
	int path_mtu;
	int path_mig_state;
	uint32_t qkey;
	uint32_t rq_psn;
	uint32_t sq_psn;
	uint32_t dest_qp_num;
	unsigned int qp_access_flags;
	struct rcmoe_ibv_qp_cap cap;
	struct rcmoe_ibv_ah_attr ah_attr;
	struct rcmoe_ibv_ah_attr alt_ah_attr;
	uint16_t pkey_index;
	uint16_t alt_pkey_index;
	uint8_t en_sqd_async_notify;
	uint8_t sq_draining;
	uint8_t max_rd_atomic;
	uint8_t max_dest_rd_atomic;
	uint8_t min_rnr_timer;
	uint8_t port_num;
	uint8_t timeout;
	uint8_t retry_cnt;
	uint8_t rnr_retry;
	uint8_t alt_port_num;
	uint8_t alt_timeout;
	uint32_t rate_limit;
};

struct rcmoe_ibv_sge {
	uint64_t addr;
	uint32_t length;
	uint32_t lkey;
};

struct rcmoe_ibv_send_wr {
	uint64_t wr_id;
	struct rcmoe_ibv_send_wr *next;
	struct rcmoe_ibv_sge *sg_list;
	int num_sge;
	int opcode;
	unsigned int send_flags;
	uint32_t imm_data; /* big-endian */
	union {
		struct {
			uint64_t remote_addr;
			uint32_t rkey;
		} rdma;
		uint64_t reserved[4]; /* atomic and UD forms: the union's size */
	} wr;
	uint32_t qp_type_reserved; /* the XRC form's remote SRQ number */
	/* The memory-window and TSO forms, unused here: their union's size and alignment. */
	union {
		uint64_t reserved[6];
	} extra;
};

struct rcmoe_ibv_recv_wr {
	uint64_t wr_id;
	struct rcmoe_ibv_recv_wr *next;
	struct rcmoe_ibv_sge *sg_list;
	int num_sge;
};

struct rcmoe_ibv_wc {
	uint64_t wr_id;
	int status;
	int opcode;
	uint32_t vendor_err;
	uint32_t byte_len;
	uint32_t imm_data; /* big-endian */
	uint32_t qp_num;
	uint32_t src_qp;
	unsigned int wc_flags;
	uint16_t pkey_index;
	uint16_t slid;
	uint8_t sl;
	uint8_t dlid_path_bits;
};

/* The data-path verbs, called the way libibverbs' inline wrappers call them. */
static inline int rcmoe_ibv_post_send(struct rcmoe_ibv_qp *qp, struct rcmoe_ibv_send_wr *wr,
				      struct rcmoe_ibv_send_wr **bad)
{
	return qp->context->ops.post_send(qp, wr, bad);
}

static inline int rcmoe_ibv_post_recv(struct rcmoe_ibv_qp *qp, struct rcmoe_ibv_recv_wr *wr,
				      struct rcmoe_ibv_recv_wr **bad)
{
	return qp->context->ops.post_recv(qp, wr, bad);
}

static inline int rcmoe_ibv_poll_cq(struct rcmoe_ibv_cq *cq, int n, struct rcmoe_ibv_wc *wc)
{
	return cq->context->ops.poll_cq(cq, n, wc);
}

#endif
