/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fakeverbs: a verbs provider for tests, a shared library exporting the libibverbs entry points
 * the IB transport uses (rcmoe/ibv_abi.h gives the layouts), so the transport is tested through
 * the same dlopen path it takes with the real libibverbs.so.1 (RCMOE_IB_LIBRARY names this
 * library instead). No kernel module and no hardware: reliable-connected QPs of one or several
 * processes exchange packets through shared memory.
 *
 * The fabric (fabric.c): every QP owns an inbox, a ring of packets in a POSIX shared memory
 * object named after its process and QP number. The peer of a QP is found from the RTR
 * attributes: the destination QP number, and the process id, which is the last 4 bytes of every
 * GID this provider hands out (index 0 fe80::<pid>, index 1 ::ffff:<pid>, RoCE style). One
 * progress thread per process (the "HCA") moves data: it pushes the packets of posted writes
 * into the peer's inbox, drains its own QPs' inboxes (placing writes in registered memory after
 * checking rkey, bounds and access, consuming a receive WR for each write with immediate), and
 * answers each write with an ack or a NAK, which completes the requester's WR. An RDMA read
 * (at most 256 KiB) is a READ packet answered, in order with the acks, by an ack carrying the
 * bytes, which the requester places in its local buffer; a QP may be connected to itself (its
 * own QP number and GID), as NCCL's flush QP is.
 *
 * Faults, as real RC QPs show them: an rkey that is unknown, lacks remote write, or does not
 * cover the target gives the requester IBV_WC_REM_ACCESS_ERR; an lkey that does not cover the
 * source gives IBV_WC_LOC_PROT_ERR; a peer that does not answer (its process died or stopped)
 * gives IBV_WC_RETRY_EXC_ERR after 4.096 us x 2^timeout x (retry_cnt + 1), from the QP's RTS
 * attributes. The first error, or ibv_modify_qp to IBV_QPS_ERR, puts the QP in the error
 * state: every outstanding and later WR completes with IBV_WC_WR_FLUSH_ERR, and writes that
 * arrive for it are dropped unanswered.
 *
 * Environment (read when a device is opened, except FAKEVERBS_FAIL_SEND, read at each post):
 *   FAKEVERBS_NDEV=n            devices fake0..fake<n-1>, one port each (default 1, at most 8)
 *   FAKEVERBS_PORT_DOWN=a,b     these devices' ports are down
 *   FAKEVERBS_FAIL_SEND=N:S     the N-th send WR this process posts (from 1) completes with
 *                               status S (a number: 12 retry exceeded, 10 remote access...)
 *   FAKEVERBS_NO_DMABUF=1       ibv_reg_dmabuf_mr fails with EOPNOTSUPP, as on a device or
 *                               kernel without DMA-BUF support
 *
 * DMA-BUF: ibv_reg_dmabuf_mr takes any file a process can mmap (the tests use a memfd as the
 * stand-in for GPU memory) and registers it at the iova the caller gives, which need not be
 * mapped at all: the provider moves its bytes through its own mapping of the fd, so a caller
 * that touched the iova from the CPU would crash, as it would with GPU memory.
 *
 * Test-only query, not a verb (tests find it with dlsym on the handle the transport opened,
 * ib_verbs.lib, or on their own dlopen of this library):
 *   void fakeverbs_mr_counts(uint64_t *regs, uint64_t *deregs, uint64_t *live)
 *     the ibv_reg_mr and ibv_dereg_mr calls of this process that succeeded so far, and the
 *     memory regions registered now (any pointer may be NULL). Lets a test see how often the
 *     transport really registers, for example that its registration cache reuses a region.
 */
#ifndef FAKEVERBS_FV_H
#define FAKEVERBS_FV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "rcmoe/ibv_abi.h"

#define FV_EXPORT __attribute__((visibility("default")))

#define FV_MAX_DEV   8
#define FV_RING      (4u << 20)   /* bytes of an inbox's ring */
#define FV_MAX_CHUNK (256u << 10) /* payload bytes per packet */
#define FV_SQ        256          /* send WRs a QP holds */
#define FV_RQ        256          /* receive WRs a QP holds */

struct fv_device {
	char name[16];
	int index;
	bool port_up;
};

struct fv_context {
	struct rcmoe_ibv_context ibv; /* first: the caller sees this */
	struct fv_device *dev;
};

struct fv_mr {
	struct rcmoe_ibv_mr ibv;
	int access;
	/* DMA-BUF (ibv_reg_dmabuf_mr): ibv.addr is the iova the caller names the memory by, which
	 * the CPU must not touch (GPU memory); the provider reaches it through a mapping of the
	 * fd, `host` being where ibv.addr lies in it. NULL for ibv_reg_mr: the address itself. */
	uint8_t *host;
	void *map;
	size_t map_len;
	struct fv_mr *next;
};

/* Where the provider reads or writes address `a` of registration m. */
static inline uint8_t *fv_host(const struct fv_mr *m, uint64_t a)
{
	return m->host ? m->host + (a - (uint64_t)(uintptr_t)m->ibv.addr) : (uint8_t *)(uintptr_t)a;
}

struct fv_cq {
	struct rcmoe_ibv_cq ibv;
	struct rcmoe_ibv_wc *ring;
	int cap, head, count;
};

/* A packet in an inbox; `len` payload bytes follow, padded to 8. */
enum { FV_PAD = 1, FV_WRITE, FV_ACK, FV_READ };
enum { FV_FIRST = 1, FV_LAST = 2, FV_IMM = 4 };

struct fv_pkt {
	uint32_t type;
	uint32_t flags;
	uint64_t raddr; /* WRITE: where this packet's payload goes */
	uint64_t total; /* WRITE: the whole write's length (first packet) */
	uint64_t first_raddr;
	uint32_t rkey;
	uint32_t imm;
	uint32_t len;
	uint32_t status; /* ACK (the answer to a READ carries the bytes read) */
};

struct fv_inbox {
	_Atomic uint64_t head; /* bytes produced by the peer */
	_Atomic uint64_t tail; /* bytes consumed by the owner */
	uint8_t data[FV_RING];
};

struct fv_swr {
	uint64_t wr_id;
	int opcode;
	bool signaled;
	uint32_t imm; /* as posted (network order) */
	uint64_t raddr;
	uint32_t rkey;
	uint64_t laddr;
	uint8_t *lhost; /* where the provider reads laddr (fv_host of its registration) */
	uint32_t len;
	int status;      /* injected or found at post: completes with it instead of moving */
	uint32_t pushed; /* payload bytes pushed */
	bool all_pushed;
};

struct fv_qp {
	struct rcmoe_ibv_qp ibv;
	struct fv_qp *next;
	pid_t peer_pid;
	uint32_t peer_qpn;
	uint64_t retry_ns; /* no answer for this long: retry exceeded */
	struct fv_inbox *inbox;
	struct fv_inbox *peer;
	char inbox_name[64];
	struct fv_swr sq[FV_SQ];
	unsigned sq_tail, sq_push, sq_head; /* oldest unacked, next to push, next free */
	uint64_t rq[FV_RQ];
	unsigned rq_tail, rq_head;
	uint64_t last_sign_ns; /* the requester's last progress or answer */
	bool rx_dropping;      /* the write being received was refused: skip to its last packet */
	const struct fv_mr *rx_mr; /* the registration the write being received lands in */
	uint32_t acks_owed[FV_SQ]; /* statuses to send back, in order */
	unsigned ack_tail, ack_head;
};

/* Everything of the provider is guarded by this one lock (the progress thread holds it per
 * pass; the verbs take it). */
extern pthread_mutex_t fv_lock;
extern struct fv_qp *fv_qps;
extern struct fv_mr *fv_mrs;

uint64_t fv_now_ns(void);
void fv_cq_push(struct fv_cq *cq, const struct rcmoe_ibv_wc *wc);
/* The QP failed: complete `wr` (if any) with `status`, flush the rest, state ERR. */
void fv_qp_error(struct fv_qp *qp, struct fv_swr *wr, int status);

/* device.c: the test-only query described above */
FV_EXPORT void fakeverbs_mr_counts(uint64_t *regs, uint64_t *deregs, uint64_t *live);

/* fabric.c */
int fv_inbox_create(struct fv_qp *qp);
void fv_inbox_destroy(struct fv_qp *qp);
void fv_peer_open(struct fv_qp *qp);
void fv_progress_start(void);
void fv_cleanup_stale(void);

#endif
