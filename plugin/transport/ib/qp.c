/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The verbs objects of one comm: a completion queue shared by its QPs, the RC QPs, and the
 * registered memory of the clear-to-send exchange (the sender's FIFO, the receiver's entries),
 * taken from RESET to RTS the way rc_pingpong and NCCL do; and their teardown, in reverse.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rcmoe/log.h"
#include "transport/ib/ib.h"

#define IB_CTS_BYTES (IB_MAX_REQS * sizeof(struct ib_cts))

_Static_assert(sizeof(struct ib_cts) == 32, "a FIFO entry is 32 bytes, its seq1 last");

/* `qp` of the connection, named `what` in the WARN ("QP 1", "the flush QP"), to state `to`. */
static rcmoe_status_t modify(const struct ib_comm *c, struct rcmoe_ibv_qp *qp, const char *what,
			     struct rcmoe_ibv_qp_attr *a, int mask, const char *to)
{
	int err = ib_verbs.modify_qp(qp, a, mask);
	if (err) {
		RCMOE_WARN("IB transport: %s of the connection with %s cannot go to %s: %s", what,
			   c->peer, to, strerror(err));
		return RCMOE_ERR_SYSTEM;
	}
	return RCMOE_OK;
}

rcmoe_status_t ib_qp_init(const struct ib_comm *c, struct rcmoe_ibv_qp *qp, const char *what,
			  int access)
{
	struct rcmoe_ibv_qp_attr a = {
		.qp_state = RCMOE_IBV_QPS_INIT,
		.pkey_index = 0,
		.port_num = c->dev->port,
		.qp_access_flags = access,
	};
	return modify(c, qp, what, &a,
		      RCMOE_IBV_QP_STATE | RCMOE_IBV_QP_PKEY_INDEX | RCMOE_IBV_QP_PORT |
			      RCMOE_IBV_QP_ACCESS_FLAGS,
		      "INIT");
}

rcmoe_status_t ib_qp_connect(const struct ib_comm *c, struct rcmoe_ibv_qp *qp, const char *what,
			     uint32_t dest_qpn, const union rcmoe_ibv_gid *gid, uint16_t lid,
			     int mtu)
{
	const struct ib_dev *d = c->dev;
	struct rcmoe_ibv_qp_attr a = {
		.qp_state = RCMOE_IBV_QPS_RTR,
		.path_mtu = mtu,
		.dest_qp_num = dest_qpn,
		.rq_psn = 0,
		.max_dest_rd_atomic = 1,
		.min_rnr_timer = 12,
		.ah_attr = { .dlid = lid, .port_num = d->port },
	};
	/* RoCE, and InfiniBand across subnets, route by GID. */
	if (d->link_layer == RCMOE_IBV_LINK_LAYER_ETHERNET || lid == 0) {
		a.ah_attr.is_global = 1;
		a.ah_attr.grh.dgid = *gid;
		a.ah_attr.grh.sgid_index = (uint8_t)d->gid_index;
		a.ah_attr.grh.hop_limit = 255;
	}
	RCMOE_CHECK(modify(c, qp, what, &a,
			   RCMOE_IBV_QP_STATE | RCMOE_IBV_QP_AV | RCMOE_IBV_QP_PATH_MTU |
				   RCMOE_IBV_QP_DEST_QPN | RCMOE_IBV_QP_RQ_PSN |
				   RCMOE_IBV_QP_MAX_DEST_RD_ATOMIC | RCMOE_IBV_QP_MIN_RNR_TIMER,
			   "RTR"));
	struct rcmoe_ibv_qp_attr r = {
		.qp_state = RCMOE_IBV_QPS_RTS,
		.timeout = (uint8_t)ib_global.params.ib_timeout,
		.retry_cnt = 7,
		.rnr_retry = 7, /* 7: retry for ever while the receiver has no WR posted */
		.sq_psn = 0,
		.max_rd_atomic = 1,
	};
	return modify(c, qp, what, &r,
		      RCMOE_IBV_QP_STATE | RCMOE_IBV_QP_TIMEOUT | RCMOE_IBV_QP_RETRY_CNT |
			      RCMOE_IBV_QP_RNR_RETRY | RCMOE_IBV_QP_SQ_PSN |
			      RCMOE_IBV_QP_MAX_QP_RD_ATOMIC,
		      "RTS");
}

/* "QP i", for WARNs. */
static const char *qp_name(char *buf, size_t size, int i)
{
	snprintf(buf, size, "QP %d", i);
	return buf;
}

rcmoe_status_t ib_ep_create(struct ib_comm *c)
{
	struct ib_hca *hca = c->dev->hca;
	rcmoe_status_t st = RCMOE_ERR_SYSTEM;
	int cqe = c->nqps * (IB_RECV_DEPTH + 2 * IB_MAX_REQS) + 64;

	c->cq = ib_verbs.create_cq(hca->ctx, cqe, NULL, NULL, 0);
	if (!c->cq) {
		RCMOE_WARN("IB transport: cannot create a CQ of %d entries on %s", cqe, hca->name);
		return RCMOE_ERR_SYSTEM;
	}
	for (int i = 0; i < c->nqps; i++) {
		struct rcmoe_ibv_qp_init_attr ia = {
			.send_cq = c->cq,
			.recv_cq = c->cq,
			.cap = { .max_send_wr = 2 * IB_MAX_REQS,
				 .max_recv_wr = IB_RECV_DEPTH,
				 .max_send_sge = 1,
				 .max_recv_sge = 1 },
			.qp_type = RCMOE_IBV_QPT_RC,
		};
		c->qp[i] = ib_verbs.create_qp(hca->pd, &ia);
		if (!c->qp[i]) {
			RCMOE_WARN("IB transport: cannot create QP %d on %s", i, hca->name);
			goto destroy_qps;
		}
		char name[16];
		RCMOE_CHECK_GOTO(
			ib_qp_init(c, c->qp[i], qp_name(name, sizeof(name), i),
				   RCMOE_IBV_ACCESS_LOCAL_WRITE | RCMOE_IBV_ACCESS_REMOTE_WRITE),
			st, destroy_qps);
	}
	/* The FIFO is written by the peer; the entries are only read by our own QP. */
	void *mem = aligned_alloc(4096, 4096);
	if (!mem) {
		st = RCMOE_ERR_NOMEM;
		goto destroy_qps;
	}
	memset(mem, 0, 4096);
	int access = c->is_send ? RCMOE_IBV_ACCESS_LOCAL_WRITE | RCMOE_IBV_ACCESS_REMOTE_WRITE
				: RCMOE_IBV_ACCESS_LOCAL_WRITE;
	struct rcmoe_ibv_mr *mr = ib_verbs.reg_mr(hca->pd, mem, IB_CTS_BYTES, access);
	if (!mr) {
		RCMOE_WARN("IB transport: cannot register the clear-to-send memory on %s",
			   hca->name);
		st = RCMOE_ERR_SYSTEM;
		goto free_mem;
	}
	if (c->is_send) {
		c->fifo = mem;
		c->fifo_mr = mr;
	} else {
		c->cts = mem;
		c->cts_mr = mr;
	}
	return RCMOE_OK;

free_mem:
	free(mem);
destroy_qps:
	for (int i = 0; i < c->nqps; i++)
		if (c->qp[i])
			ib_verbs.destroy_qp(c->qp[i]);
	memset(c->qp, 0, sizeof(c->qp));
	ib_verbs.destroy_cq(c->cq);
	c->cq = NULL;
	return st;
}

void ib_ep_hello(const struct ib_comm *c, uint64_t magic, uint64_t secret, struct ib_hello *h)
{
	memset(h, 0, sizeof(*h));
	h->magic = magic;
	h->version = IB_PROTO_VERSION;
	h->nqps = (uint32_t)c->nqps;
	h->secret = secret;
	h->gid = c->dev->gid;
	h->lid = c->dev->lid;
	h->mtu = (uint8_t)c->dev->mtu;
	if (c->is_send) {
		h->fifo_addr = (uint64_t)(uintptr_t)c->fifo;
		h->fifo_rkey = c->fifo_mr->rkey;
	}
	for (int i = 0; i < c->nqps; i++)
		h->qpn[i] = c->qp[i]->qp_num;
}

rcmoe_status_t ib_ep_connect(struct ib_comm *c, const struct ib_hello *peer)
{
	const struct ib_dev *d = c->dev;
	int mtu = peer->mtu < d->mtu ? peer->mtu : d->mtu;
	for (int i = 0; i < c->nqps; i++) {
		char name[16];
		RCMOE_CHECK(ib_qp_connect(c, c->qp[i], qp_name(name, sizeof(name), i), peer->qpn[i],
					  &peer->gid, peer->lid, mtu));
		if (!c->is_send)
			RCMOE_CHECK(ib_post_recvs(c, i, IB_RECV_DEPTH));
	}
	if (!c->is_send) {
		c->peer_fifo_addr = peer->fifo_addr;
		c->peer_fifo_rkey = peer->fifo_rkey;
	}
	return RCMOE_OK;
}

void ib_comm_destroy(struct ib_comm *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->nqps; i++)
		if (c->qp[i])
			ib_verbs.destroy_qp(c->qp[i]);
	if (c->cq)
		ib_verbs.destroy_cq(c->cq);
	ib_flush_destroy(c);
	if (c->fifo_mr)
		ib_verbs.dereg_mr(c->fifo_mr);
	if (c->cts_mr)
		ib_verbs.dereg_mr(c->cts_mr);
	free(c->fifo);
	free(c->cts);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}
