/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The IB transport's operations table (contracts in rcmoe/transport.h), memory registration,
 * and closing. needs_posted_dest is 1: the sender writes into the receiver's buffer, so each
 * receive's destination must be known when irecv is posted.
 */

#include "rcmoe/log.h"
#include "transport/ib/ib.h"

static struct ib_comm *comm_of(struct rcmoe_tsend *send, struct rcmoe_trecv *recv)
{
	return send ? IB_TO(struct ib_comm, send) : IB_TO(struct ib_comm, recv);
}

/* Host memory in the protection domain of the comm's HCA, which every QP on it shares, through
 * the HCA's registration cache (mr.c). */
static rcmoe_status_t reg_mr(struct rcmoe_tsend *send, struct rcmoe_trecv *recv, void *buf,
			     size_t len, struct rcmoe_tmr **out)
{
	if (!out || (!send == !recv) || !buf || !len)
		return RCMOE_ERR_INVALID;
	struct ib_comm *c = comm_of(send, recv);
	struct ib_mr *m = NULL;
	RCMOE_CHECK(ib_mr_get(c->dev->hca, buf, len,
			      RCMOE_IBV_ACCESS_LOCAL_WRITE | RCMOE_IBV_ACCESS_REMOTE_WRITE, &m));
	*out = IB_TO(struct rcmoe_tmr, m);
	return RCMOE_OK;
}

/* GPU memory exported as a DMA-BUF, in the same protection domain: the HCA reads and writes it
 * itself (GPUDirect RDMA), the CPU never touches it. Not cached (mr.c). */
static rcmoe_status_t reg_mr_dmabuf(struct rcmoe_tsend *send, struct rcmoe_trecv *recv, void *buf,
				    size_t len, int fd, uint64_t offset, struct rcmoe_tmr **out)
{
	if (!out || (!send == !recv) || !buf || !len || fd < 0)
		return RCMOE_ERR_INVALID;
	struct ib_comm *c = comm_of(send, recv);
	struct ib_mr *m = NULL;
	/* a receiving comm flushes what lands in such memory (flush.c): its QP from now on */
	if (recv)
		RCMOE_CHECK(ib_flush_create(c));
	/* remote read: the flush QP reads it */
	RCMOE_CHECK(ib_mr_get_dmabuf(c->dev->hca, buf, len, fd, offset,
				     RCMOE_IBV_ACCESS_LOCAL_WRITE | RCMOE_IBV_ACCESS_REMOTE_WRITE |
					     RCMOE_IBV_ACCESS_REMOTE_READ,
				     &m));
	*out = IB_TO(struct rcmoe_tmr, m);
	return RCMOE_OK;
}

/* The handle knows its registration's HCA: the comm is not needed (and may be another comm of
 * the same device than the one that registered). */
static rcmoe_status_t dereg_mr(struct rcmoe_tsend *send, struct rcmoe_trecv *recv,
			       struct rcmoe_tmr *mr)
{
	(void)send;
	(void)recv;
	if (!mr)
		return RCMOE_OK;
	return ib_mr_put(IB_TO(struct ib_mr, mr));
}

static void abort_send(struct rcmoe_tsend *comm, rcmoe_status_t st, const char *why)
{
	ib_comm_fail(IB_TO(struct ib_comm, comm), st, "stopped: %s", why);
}

static void abort_recv(struct rcmoe_trecv *comm, rcmoe_status_t st, const char *why)
{
	ib_comm_fail(IB_TO(struct ib_comm, comm), st, "stopped: %s", why);
}

static rcmoe_status_t close_send(struct rcmoe_tsend *comm)
{
	ib_comm_destroy(IB_TO(struct ib_comm, comm));
	return RCMOE_OK;
}

static rcmoe_status_t close_recv(struct rcmoe_trecv *comm)
{
	ib_comm_destroy(IB_TO(struct ib_comm, comm));
	return RCMOE_OK;
}

const struct rcmoe_transport_ops rcmoe_ib_ops = {
	.name = "ib",
	.needs_posted_dest = 1, /* the sender writes into the buffer irecv posted */
	.init = ib_init,
	.device_count = ib_device_count,
	.device_info = ib_device_info,
	.listen = ib_listen,
	.connect = ib_connect,
	.accept = ib_accept,
	.reg_mr = reg_mr,
	.dereg_mr = dereg_mr,
	.reg_mr_dmabuf = reg_mr_dmabuf,
	.iflush = ib_iflush,
	.isend = ib_isend,
	.irecv = ib_irecv,
	.test = ib_test,
	.abort_send = abort_send,
	.abort_recv = abort_recv,
	.close_send = close_send,
	.close_recv = close_recv,
	.close_listen = ib_close_listen,
};
