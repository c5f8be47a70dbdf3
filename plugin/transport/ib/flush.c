/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Flushing received GPU memory (iflush). When the HCA writes into GPU memory (DMA-BUF, GPUDirect
 * RDMA), its completion says the data left the HCA, not that the GPU will see it before its own
 * later reads: the PCIe writes may still be on their way. A read by the same HCA of that memory
 * is ordered after them, so once an RDMA read of a few bytes of the buffer completes, the
 * earlier writes have landed. The read goes through a QP of the receiving comm connected to
 * itself (loopback: its own QP number and GID), made at the comm's first DMA-BUF registration
 * on NCCL's service thread, never on the data path; the bytes read land in a word of host
 * memory that nobody looks at.
 */
#include <stdlib.h>
#include <string.h>

#include "rcmoe/log.h"
#include "transport/ib/ib.h"

#define IB_FLUSH_BYTES 4u /* read: what NCCL's own flush reads too */

/* INIT -> RTR -> RTS, towards itself (qp.c's transitions, as for the data QPs). */
static rcmoe_status_t flush_connect(struct ib_comm *c)
{
	const struct ib_dev *d = c->dev;
	RCMOE_CHECK(ib_qp_init(c, c->flush_qp, "the flush QP",
			       RCMOE_IBV_ACCESS_LOCAL_WRITE | RCMOE_IBV_ACCESS_REMOTE_READ));
	return ib_qp_connect(c, c->flush_qp, "the flush QP", c->flush_qp->qp_num, &d->gid, d->lid,
			     d->mtu);
}

rcmoe_status_t ib_flush_create(struct ib_comm *c)
{
	struct ib_hca *hca = c->dev->hca;
	rcmoe_status_t st = RCMOE_ERR_SYSTEM;
	if (c->flush_qp)
		return RCMOE_OK;
	c->flush_cq = ib_verbs.create_cq(hca->ctx, IB_MAX_REQS + 8, NULL, NULL, 0);
	if (!c->flush_cq) {
		RCMOE_WARN("IB transport: cannot create the flush CQ on %s", hca->name);
		return RCMOE_ERR_SYSTEM;
	}
	struct rcmoe_ibv_qp_init_attr ia = {
		.send_cq = c->flush_cq,
		.recv_cq = c->flush_cq,
		.cap = { .max_send_wr = IB_MAX_REQS,
			 .max_recv_wr = 1,
			 .max_send_sge = 1,
			 .max_recv_sge = 1 },
		.qp_type = RCMOE_IBV_QPT_RC,
	};
	c->flush_qp = ib_verbs.create_qp(hca->pd, &ia);
	if (!c->flush_qp) {
		RCMOE_WARN("IB transport: cannot create the flush QP on %s", hca->name);
		goto destroy_cq;
	}
	c->flush_buf = calloc(1, 64);
	if (!c->flush_buf) {
		st = RCMOE_ERR_NOMEM;
		goto destroy_qp;
	}
	c->flush_mr = ib_verbs.reg_mr(hca->pd, c->flush_buf, 64, RCMOE_IBV_ACCESS_LOCAL_WRITE);
	if (!c->flush_mr) {
		RCMOE_WARN("IB transport: cannot register the flush word on %s", hca->name);
		goto free_buf;
	}
	RCMOE_CHECK_GOTO(flush_connect(c), st, dereg);
	return RCMOE_OK;

dereg:
	ib_verbs.dereg_mr(c->flush_mr);
	c->flush_mr = NULL;
free_buf:
	free(c->flush_buf);
	c->flush_buf = NULL;
destroy_qp:
	ib_verbs.destroy_qp(c->flush_qp);
	c->flush_qp = NULL;
destroy_cq:
	ib_verbs.destroy_cq(c->flush_cq);
	c->flush_cq = NULL;
	return st;
}

void ib_flush_destroy(struct ib_comm *c)
{
	if (c->flush_qp)
		ib_verbs.destroy_qp(c->flush_qp);
	if (c->flush_cq)
		ib_verbs.destroy_cq(c->flush_cq);
	if (c->flush_mr)
		ib_verbs.dereg_mr(c->flush_mr);
	free(c->flush_buf);
}

rcmoe_status_t ib_iflush(struct rcmoe_trecv *comm, void *buf, size_t len, struct rcmoe_tmr *mr,
			 struct rcmoe_treq **req)
{
	struct ib_comm *c = IB_TO(struct ib_comm, comm);
	struct ib_mr *m = IB_TO(struct ib_mr, mr);
	if (!c || !req || c->is_send)
		return RCMOE_ERR_INVALID;
	*req = NULL;
	if (c->error != RCMOE_OK)
		return c->error;
	if (!len || !m || m->entry)
		return RCMOE_OK; /* nothing landed, or host memory: nothing to flush */
	if (!ib_mr_covers(m, buf, len) || !c->flush_qp) {
		RCMOE_WARN("IB transport: a flush of %zu bytes from %s is not inside a DMA-BUF "
			   "registration of this connection",
			   len, c->peer);
		return RCMOE_ERR_INVALID;
	}
	struct ib_req *r = &c->flush_reqs[c->flush_head % IB_MAX_REQS];
	if (r->state != IB_REQ_FREE)
		return RCMOE_OK; /* all taken: the caller retries */
	struct rcmoe_ibv_sge sge = { .addr = (uint64_t)(uintptr_t)c->flush_buf,
				     .length =
					     len < IB_FLUSH_BYTES ? (uint32_t)len : IB_FLUSH_BYTES,
				     .lkey = c->flush_mr->lkey };
	struct rcmoe_ibv_send_wr wr = { .wr_id = (uint64_t)(r - c->flush_reqs),
					.sg_list = &sge,
					.num_sge = 1,
					.opcode = RCMOE_IBV_WR_RDMA_READ,
					.send_flags = RCMOE_IBV_SEND_SIGNALED };
	wr.wr.rdma.remote_addr = (uint64_t)(uintptr_t)buf;
	wr.wr.rdma.rkey = m->mr->rkey;
	struct rcmoe_ibv_send_wr *bad = NULL;
	int err = rcmoe_ibv_post_send(c->flush_qp, &wr, &bad);
	if (err) {
		ib_comm_fail(c, RCMOE_ERR_SYSTEM, "posting a flush read failed: %s", strerror(err));
		return c->error;
	}
	*r = (struct ib_req){ .comm = c, .state = IB_REQ_FLUSHING, .seq = c->flush_head };
	c->flush_head++;
	*req = IB_TO(struct rcmoe_treq, r);
	return RCMOE_OK;
}

void ib_flush_test(struct ib_req *r)
{
	struct ib_comm *c = r->comm;
	struct rcmoe_ibv_wc wc[8];
	int n = rcmoe_ibv_poll_cq(c->flush_cq, 8, wc);
	if (n < 0) {
		ib_comm_fail(c, RCMOE_ERR_SYSTEM, "polling the flush completion queue failed");
		return;
	}
	for (int i = 0; i < n; i++) {
		if (wc[i].status != RCMOE_IBV_WC_SUCCESS) {
			ib_comm_fail(c, RCMOE_ERR_SYSTEM, "a flush read failed: %s",
				     ib_wc_status_str(wc[i].status));
			return;
		}
		if (wc[i].wr_id < IB_MAX_REQS &&
		    c->flush_reqs[wc[i].wr_id].state == IB_REQ_FLUSHING)
			c->flush_reqs[wc[i].wr_id].state = IB_REQ_DONE;
	}
}
