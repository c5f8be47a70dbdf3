/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data path (ib.h explains the exchange): isend, irecv and test, and everything they drive
 * from NCCL's proxy thread: the completion queue, the clear-to-send FIFO, the side channel.
 * Nothing here blocks.
 *
 * Work request ids: bits 0-7 the request slot, bits 8-15 the QP, bit 16 set for a receiver's
 * clear-to-send write (whose completion frees its entry), bit 17 for a receive WR.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>

#include "rcmoe/log.h"
#include "transport/ib/ib.h"

#define WR_CTS  (1u << 16)
#define WR_RECV (1u << 17)
/* How often test looks at the side channel, and how long after its EOF a request may still
 * complete (its completion can trail the peer's last word). */
#define IB_SIDE_CHECK_NS 200000ull
#define IB_EOF_GRACE_NS  200000000ull

static uint64_t wr_id(unsigned slot, int qp, unsigned kind)
{
	return (uint64_t)(slot | ((unsigned)qp << 8) | kind);
}

rcmoe_status_t ib_post_recvs(struct ib_comm *c, int qp, int n)
{
	for (int i = 0; i < n; i++) {
		/* RDMA writes with immediate consume a receive WR but place nothing through it. */
		struct rcmoe_ibv_recv_wr wr = { .wr_id = wr_id(0, qp, WR_RECV) };
		struct rcmoe_ibv_recv_wr *bad = NULL;
		int err = rcmoe_ibv_post_recv(c->qp[qp], &wr, &bad);
		if (err) {
			ib_comm_fail(c, RCMOE_ERR_SYSTEM, "posting a receive WR on QP %d: %s", qp,
				     strerror(err));
			return RCMOE_ERR_SYSTEM;
		}
	}
	return RCMOE_OK;
}

/* ---- sender ---- */

/* The receiver's entry for message `seq`, or NULL while it has not arrived. */
static const struct ib_cts *cts_arrived(struct ib_comm *c, uint32_t seq)
{
	struct ib_cts *e = &c->fifo[seq % IB_MAX_REQS];
	/* The NIC writes the entry in memory order; seq1 is its last word. */
	uint32_t seq1 = atomic_load_explicit((_Atomic uint32_t *)&e->seq1, memory_order_acquire);
	return seq1 == seq + 1 ? e : NULL;
}

/* Write message `r` into the destination of its entry: one stripe per QP. */
static rcmoe_status_t write_message(struct ib_comm *c, struct ib_req *r, const struct ib_cts *e)
{
	if (r->len > e->size || r->tag != e->tag) {
		ib_comm_fail(c, RCMOE_ERR_OVERFLOW,
			     "message %u of %zu bytes with tag %d does not match its receive (at "
			     "most %llu bytes, tag %d)",
			     r->seq, r->len, r->tag, (unsigned long long)e->size, e->tag);
		return RCMOE_ERR_OVERFLOW;
	}
	size_t stripe = (r->len + (size_t)c->nqps - 1) / (size_t)c->nqps;
	stripe = (stripe + 4095) & ~(size_t)4095;
	if (stripe > IB_IMM_LEN) {
		ib_comm_fail(c, RCMOE_ERR_INVALID, "message %u of %zu bytes is too long", r->seq,
			     r->len);
		return RCMOE_ERR_INVALID;
	}
	unsigned slot = r->seq % IB_MAX_REQS;
	r->pending = c->nqps;
	for (int i = 0; i < c->nqps; i++) {
		size_t off = (size_t)i * stripe;
		size_t n = off < r->len ? r->len - off : 0;
		if (n > stripe)
			n = stripe;
		struct rcmoe_ibv_sge sge = { .addr = (uint64_t)(uintptr_t)(r->buf + (n ? off : 0)),
					     .length = (uint32_t)n,
					     .lkey = r->lkey };
		struct rcmoe_ibv_send_wr wr = {
			.wr_id = wr_id(slot, i, 0),
			.sg_list = n ? &sge : NULL,
			.num_sge = n ? 1 : 0,
			.opcode = RCMOE_IBV_WR_RDMA_WRITE_WITH_IMM,
			.send_flags = RCMOE_IBV_SEND_SIGNALED,
			.imm_data = htonl((uint32_t)n |
					  ((r->flags & RCMOE_MSG_ENCODED) ? IB_IMM_ENCODED : 0)),
		};
		wr.wr.rdma.remote_addr = e->addr + (n ? off : 0);
		wr.wr.rdma.rkey = e->rkey;
		struct rcmoe_ibv_send_wr *bad = NULL;
		int err = rcmoe_ibv_post_send(c->qp[i], &wr, &bad);
		if (err) {
			ib_comm_fail(c, RCMOE_ERR_SYSTEM, "posting a write on QP %d: %s", i,
				     strerror(err));
			return RCMOE_ERR_SYSTEM;
		}
	}
	r->state = IB_REQ_POSTED;
	return RCMOE_OK;
}

/* Write every message, in order, whose entry has arrived. */
static void send_progress(struct ib_comm *c)
{
	while (c->error == RCMOE_OK && c->next_write != c->head) {
		struct ib_req *r = &c->reqs[c->next_write % IB_MAX_REQS];
		const struct ib_cts *e = cts_arrived(c, c->next_write);
		if (!e)
			return;
		if (write_message(c, r, e) != RCMOE_OK)
			return;
		c->next_write++;
	}
}

rcmoe_status_t ib_isend(struct rcmoe_tsend *comm, const void *buf, size_t len, struct rcmoe_tmr *mr,
			int tag, uint32_t flags, struct rcmoe_treq **req)
{
	struct ib_comm *c = IB_TO(struct ib_comm, comm);
	struct ib_mr *m = IB_TO(struct ib_mr, mr);
	if (!c || !req || (len && (!buf || !m)))
		return RCMOE_ERR_INVALID;
	*req = NULL;
	if (c->error != RCMOE_OK)
		return c->error;
	if (len && !ib_mr_covers(m, buf, len)) {
		RCMOE_WARN("IB transport: a send of %zu bytes to %s lies outside its registration",
			   len, c->peer);
		return RCMOE_ERR_INVALID;
	}
	struct ib_req *r = &c->reqs[c->head % IB_MAX_REQS];
	if (r->state != IB_REQ_FREE)
		return RCMOE_OK; /* all slots taken: the caller retries */
	*r = (struct ib_req){ .comm = c,
			      .state = IB_REQ_WAIT_CTS,
			      .seq = c->head,
			      .buf = buf,
			      .len = len,
			      .lkey = m ? m->mr->lkey : 0,
			      .tag = tag,
			      .flags = flags };
	c->head++;
	send_progress(c);
	*req = IB_TO(struct rcmoe_treq, r);
	return RCMOE_OK;
}

/* ---- receiver ---- */

static void poll_cq(struct ib_comm *c);

rcmoe_status_t ib_irecv(struct rcmoe_trecv *comm, size_t max_len, int tag, rcmoe_place_fn place,
			void *place_arg, struct rcmoe_treq **req)
{
	struct ib_comm *c = IB_TO(struct ib_comm, comm);
	if (!c || !req || !place)
		return RCMOE_ERR_INVALID;
	*req = NULL;
	if (c->error != RCMOE_OK)
		return c->error;
	unsigned slot = c->head % IB_MAX_REQS;
	struct ib_req *r = &c->reqs[slot];
	/* The slot's entry is written from c->cts[slot]: not while its last write is in flight.
	 * Only a completion says it is done, and with no receive left to test nothing else polls
	 * this comm's completions: look here, or the caller retries forever. */
	if (r->state == IB_REQ_FREE && c->cts_busy[slot])
		poll_cq(c);
	if (r->state != IB_REQ_FREE || c->cts_busy[slot])
		return RCMOE_OK;
	void *dest = NULL;
	struct rcmoe_tmr *tmr = NULL;
	RCMOE_CHECK(place(place_arg, max_len, RCMOE_PLACE_ANY, &dest, &tmr));
	struct ib_mr *m = IB_TO(struct ib_mr, tmr);
	if (max_len && (!dest || !ib_mr_covers(m, dest, max_len))) {
		RCMOE_WARN("IB transport: a receive of %zu bytes from %s is not inside a "
			   "registration",
			   max_len, c->peer);
		return RCMOE_ERR_INVALID;
	}
	*r = (struct ib_req){
		.comm = c, .state = IB_REQ_POSTED, .seq = c->head, .tag = tag, .pending = c->nqps
	};
	struct ib_cts *e = &c->cts[slot];
	*e = (struct ib_cts){ .addr = (uint64_t)(uintptr_t)dest,
			      .size = max_len,
			      .rkey = m ? m->mr->rkey : 0,
			      .tag = tag,
			      .seq1 = c->head + 1 };
	struct rcmoe_ibv_sge sge = { .addr = (uint64_t)(uintptr_t)e,
				     .length = sizeof(*e),
				     .lkey = c->cts_mr->lkey };
	struct rcmoe_ibv_send_wr wr = { .wr_id = wr_id(slot, 0, WR_CTS),
					.sg_list = &sge,
					.num_sge = 1,
					.opcode = RCMOE_IBV_WR_RDMA_WRITE,
					.send_flags = RCMOE_IBV_SEND_SIGNALED };
	wr.wr.rdma.remote_addr = c->peer_fifo_addr + slot * sizeof(struct ib_cts);
	wr.wr.rdma.rkey = c->peer_fifo_rkey;
	struct rcmoe_ibv_send_wr *bad = NULL;
	int err = rcmoe_ibv_post_send(c->qp[0], &wr, &bad);
	if (err) {
		r->state = IB_REQ_FREE;
		ib_comm_fail(c, RCMOE_ERR_SYSTEM, "posting a clear-to-send write: %s",
			     strerror(err));
		return RCMOE_ERR_SYSTEM;
	}
	c->cts_busy[slot] = true;
	c->head++;
	*req = IB_TO(struct rcmoe_treq, r);
	return RCMOE_OK;
}

/* A stripe of a message arrived on QP `qp`: the k-th on a QP belongs to message k. */
static void stripe_arrived(struct ib_comm *c, int qp, uint32_t imm)
{
	uint32_t seq = c->qp_msgs[qp]++;
	struct ib_req *r = &c->reqs[seq % IB_MAX_REQS];
	if ((int32_t)(c->head - seq) <= 0 || r->state != IB_REQ_POSTED || r->seq != seq) {
		ib_comm_fail(c, RCMOE_ERR_REMOTE, "data for message %u, which was not posted", seq);
		return;
	}
	r->len += imm & IB_IMM_LEN;
	if (imm & IB_IMM_ENCODED)
		r->flags |= RCMOE_MSG_ENCODED;
	if (--r->pending == 0)
		r->state = IB_REQ_DONE;
	ib_post_recvs(c, qp, 1);
}

/* ---- completions and the side channel ---- */

static int qp_index(const struct ib_comm *c, uint32_t qp_num)
{
	for (int i = 0; i < c->nqps; i++)
		if (c->qp[i]->qp_num == qp_num)
			return i;
	return -1;
}

static void completion(struct ib_comm *c, const struct rcmoe_ibv_wc *wc)
{
	unsigned slot = (unsigned)(wc->wr_id & 0xff);
	int qp = (int)((wc->wr_id >> 8) & 0xff);
	if (wc->status != RCMOE_IBV_WC_SUCCESS) {
		int i = qp_index(c, wc->qp_num);
		/* Flushes follow the first error: only that one says what happened. */
		ib_comm_fail(c, RCMOE_ERR_REMOTE,
			     "QP %d: verbs status %s (%d: %s, vendor error %u)", i < 0 ? qp : i,
			     ib_wc_status_str(wc->status), wc->status,
			     ib_verbs.wc_status_str ? ib_verbs.wc_status_str(wc->status) : "?",
			     wc->vendor_err);
		return;
	}
	if (wc->wr_id & WR_RECV) {
		int i = qp_index(c, wc->qp_num);
		if (i < 0 || c->is_send || !(wc->wc_flags & RCMOE_IBV_WC_WITH_IMM)) {
			ib_comm_fail(c, RCMOE_ERR_REMOTE, "an unexpected receive completion");
			return;
		}
		stripe_arrived(c, i, ntohl(wc->imm_data));
	} else if (wc->wr_id & WR_CTS) {
		c->cts_busy[slot % IB_MAX_REQS] = false;
	} else {
		struct ib_req *r = &c->reqs[slot % IB_MAX_REQS];
		if (r->state == IB_REQ_POSTED && --r->pending == 0)
			r->state = IB_REQ_DONE;
	}
}

static void poll_cq(struct ib_comm *c)
{
	struct rcmoe_ibv_wc wc[16];
	for (;;) {
		int n = rcmoe_ibv_poll_cq(c->cq, 16, wc);
		if (n < 0) {
			ib_comm_fail(c, RCMOE_ERR_SYSTEM, "polling the completion queue failed");
			return;
		}
		for (int i = 0; i < n; i++)
			completion(c, &wc[i]);
		if (n < 16)
			return;
	}
}

/* Is the peer still there? Its side channel says nothing until it closes. */
static void side_check(struct ib_comm *c, uint64_t now)
{
	if (c->eof_ns || now < c->next_side_ns)
		return;
	c->next_side_ns = now + IB_SIDE_CHECK_NS;
	char byte;
	ssize_t n = recv(c->fd, &byte, 1, MSG_DONTWAIT | MSG_PEEK);
	if (n > 0) {
		ib_comm_fail(c, RCMOE_ERR_MALFORMED, "unexpected bytes on the side channel");
	} else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
		c->eof_ns = now;
	}
}

static void progress(struct ib_comm *c)
{
	uint64_t now = sock_now_ns();
	if (c->error != RCMOE_OK)
		return;
	poll_cq(c);
	if (c->is_send)
		send_progress(c);
	side_check(c, now);
	if (c->eof_ns && c->error == RCMOE_OK && now - c->eof_ns >= IB_EOF_GRACE_NS)
		ib_comm_fail(c, RCMOE_ERR_REMOTE,
			     "the peer closed its side of the connection (its process ended, or "
			     "it closed or failed the connection)");
}

rcmoe_status_t ib_test(struct rcmoe_treq *treq, int *done, size_t *len, uint32_t *flags)
{
	struct ib_req *r = IB_TO(struct ib_req, treq);
	if (!r || !done || r->state == IB_REQ_FREE)
		return RCMOE_ERR_INVALID;
	struct ib_comm *c = r->comm;
	*done = 0;
	if (r->state == IB_REQ_FLUSHING)
		ib_flush_test(r);
	else if (r->state != IB_REQ_DONE)
		progress(c);
	if (r->state == IB_REQ_DONE) {
		*done = 1;
		if (len)
			*len = r->len;
		if (flags)
			*flags = r->flags;
		r->state = IB_REQ_FREE;
		return RCMOE_OK;
	}
	if (c->error != RCMOE_OK) {
		r->state = IB_REQ_FREE;
		return c->error;
	}
	return RCMOE_OK;
}
