/* SPDX-License-Identifier: Apache-2.0 */
/* fakeverbs: completion queues, queue pairs and the verbs that post and poll (fv.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fv.h"

struct fv_qp *fv_qps;
static uint32_t next_qpn = 0x100;
static _Atomic long sends_posted;

uint64_t fv_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- completion queues ---- */

FV_EXPORT struct rcmoe_ibv_cq *ibv_create_cq(struct rcmoe_ibv_context *ctx, int cqe,
					     void *cq_context, void *channel, int vector)
{
	(void)channel;
	(void)vector;
	struct fv_cq *cq = calloc(1, sizeof(*cq));
	if (!cq || cqe < 1) {
		free(cq);
		errno = cqe < 1 ? EINVAL : ENOMEM;
		return NULL;
	}
	cq->cap = cqe;
	cq->ring = calloc((size_t)cq->cap, sizeof(*cq->ring));
	if (!cq->ring) {
		free(cq);
		errno = ENOMEM;
		return NULL;
	}
	cq->ibv.context = ctx;
	cq->ibv.cq_context = cq_context;
	cq->ibv.cqe = cqe;
	return &cq->ibv;
}

FV_EXPORT int ibv_destroy_cq(struct rcmoe_ibv_cq *ibv)
{
	struct fv_cq *cq = (struct fv_cq *)(void *)ibv;
	free(cq->ring);
	free(cq);
	return 0;
}

/* Called with fv_lock held. A full queue grows (a real one would overrun: the caller sized it
 * too small, which the transport's own sizing avoids). */
void fv_cq_push(struct fv_cq *cq, const struct rcmoe_ibv_wc *wc)
{
	if (cq->count == cq->cap) {
		struct rcmoe_ibv_wc *ring = calloc((size_t)cq->cap * 2, sizeof(*ring));
		if (!ring)
			abort();
		for (int i = 0; i < cq->count; i++)
			ring[i] = cq->ring[(cq->head + i) % cq->cap];
		free(cq->ring);
		cq->ring = ring;
		cq->head = 0;
		cq->cap *= 2;
	}
	cq->ring[(cq->head + cq->count) % cq->cap] = *wc;
	cq->count++;
}

int fv_poll_cq(struct rcmoe_ibv_cq *ibv, int n, struct rcmoe_ibv_wc *wc)
{
	struct fv_cq *cq = (struct fv_cq *)(void *)ibv;
	int got = 0;
	pthread_mutex_lock(&fv_lock);
	while (got < n && cq->count > 0) {
		wc[got++] = cq->ring[cq->head];
		cq->head = (cq->head + 1) % cq->cap;
		cq->count--;
	}
	pthread_mutex_unlock(&fv_lock);
	return got;
}

/* ---- queue pairs ---- */

FV_EXPORT struct rcmoe_ibv_qp *ibv_create_qp(struct rcmoe_ibv_pd *pd,
					     struct rcmoe_ibv_qp_init_attr *a)
{
	if (!pd || !a || a->qp_type != RCMOE_IBV_QPT_RC || !a->send_cq || !a->recv_cq ||
	    a->cap.max_send_wr > FV_SQ || a->cap.max_recv_wr > FV_RQ || a->cap.max_send_sge > 1 ||
	    a->cap.max_recv_sge > 1) {
		errno = EINVAL;
		return NULL;
	}
	struct fv_qp *qp = calloc(1, sizeof(*qp));
	if (!qp) {
		errno = ENOMEM;
		return NULL;
	}
	qp->ibv.context = pd->context;
	qp->ibv.qp_context = a->qp_context;
	qp->ibv.pd = pd;
	qp->ibv.send_cq = a->send_cq;
	qp->ibv.recv_cq = a->recv_cq;
	qp->ibv.qp_type = RCMOE_IBV_QPT_RC;
	qp->ibv.state = RCMOE_IBV_QPS_RESET;
	pthread_mutex_lock(&fv_lock);
	qp->ibv.qp_num = next_qpn++ & 0xffffff;
	int err = fv_inbox_create(qp);
	if (err) {
		pthread_mutex_unlock(&fv_lock);
		free(qp);
		errno = err;
		return NULL;
	}
	qp->next = fv_qps;
	fv_qps = qp;
	pthread_mutex_unlock(&fv_lock);
	fv_progress_start();
	return &qp->ibv;
}

FV_EXPORT int ibv_modify_qp(struct rcmoe_ibv_qp *ibv, struct rcmoe_ibv_qp_attr *a, int mask)
{
	struct fv_qp *qp = (struct fv_qp *)(void *)ibv;
	if (!(mask & RCMOE_IBV_QP_STATE))
		return EINVAL;
	pthread_mutex_lock(&fv_lock);
	int from = qp->ibv.state, to = a->qp_state;
	int err = 0;
	if (to == RCMOE_IBV_QPS_INIT && from != RCMOE_IBV_QPS_RESET)
		err = EINVAL;
	if (to == RCMOE_IBV_QPS_RTR) {
		uint8_t *g = a->ah_attr.grh.dgid.raw;
		if (from != RCMOE_IBV_QPS_INIT || !a->ah_attr.is_global ||
		    !(mask & RCMOE_IBV_QP_DEST_QPN)) {
			err = EINVAL;
		} else {
			qp->peer_pid = (pid_t)((uint32_t)g[12] << 24 | (uint32_t)g[13] << 16 |
					       (uint32_t)g[14] << 8 | g[15]);
			qp->peer_qpn = a->dest_qp_num;
			fv_peer_open(qp); /* may fail for now: the progress thread retries */
		}
	}
	if (to == RCMOE_IBV_QPS_RTS) {
		if (from != RCMOE_IBV_QPS_RTR || !(mask & RCMOE_IBV_QP_TIMEOUT)) {
			err = EINVAL;
		} else {
			/* 4.096 us x 2^timeout per try, retry_cnt retries after the first. */
			double t = 4096.0 * (double)(1ull << (a->timeout & 31)) *
				   (double)((a->retry_cnt & 7) + 1);
			qp->retry_ns = (uint64_t)t;
		}
	}
	if (to == RCMOE_IBV_QPS_ERR && !err)
		fv_qp_error(qp, NULL, 0); /* flushes every outstanding WR, as an HCA does */
	else if (!err)
		qp->ibv.state = to;
	pthread_mutex_unlock(&fv_lock);
	return err;
}

FV_EXPORT int ibv_destroy_qp(struct rcmoe_ibv_qp *ibv)
{
	struct fv_qp *qp = (struct fv_qp *)(void *)ibv;
	pthread_mutex_lock(&fv_lock);
	for (struct fv_qp **pp = &fv_qps; *pp; pp = &(*pp)->next) {
		if (*pp == qp) {
			*pp = qp->next;
			break;
		}
	}
	fv_inbox_destroy(qp);
	pthread_mutex_unlock(&fv_lock);
	free(qp);
	return 0;
}

static struct fv_mr *find_mr(uint32_t key, uint64_t addr, uint64_t len, int access)
{
	for (struct fv_mr *m = fv_mrs; m; m = m->next) {
		uint64_t base = (uint64_t)(uintptr_t)m->ibv.addr;
		if (m->ibv.lkey != key)
			continue;
		if (addr < base || len > m->ibv.length || addr - base > m->ibv.length - len ||
		    (m->access & access) != access)
			return NULL;
		return m;
	}
	return NULL;
}

/* Called with fv_lock held. */
void fv_qp_error(struct fv_qp *qp, struct fv_swr *wr, int status)
{
	struct fv_cq *cq = (struct fv_cq *)(void *)qp->ibv.send_cq;
	qp->ibv.state = RCMOE_IBV_QPS_ERR;
	for (unsigned i = qp->sq_tail; i != qp->sq_head; i++) {
		struct fv_swr *w = &qp->sq[i % FV_SQ];
		struct rcmoe_ibv_wc wc = { .wr_id = w->wr_id,
					   .status = w == wr ? status : RCMOE_IBV_WC_WR_FLUSH_ERR,
					   .opcode = RCMOE_IBV_WC_RDMA_WRITE,
					   .qp_num = qp->ibv.qp_num };
		fv_cq_push(cq, &wc);
	}
	qp->sq_tail = qp->sq_push = qp->sq_head;
	struct fv_cq *rcq = (struct fv_cq *)(void *)qp->ibv.recv_cq;
	for (unsigned i = qp->rq_tail; i != qp->rq_head; i++) {
		struct rcmoe_ibv_wc wc = { .wr_id = qp->rq[i % FV_RQ],
					   .status = RCMOE_IBV_WC_WR_FLUSH_ERR,
					   .opcode = RCMOE_IBV_WC_RECV,
					   .qp_num = qp->ibv.qp_num };
		fv_cq_push(rcq, &wc);
	}
	qp->rq_tail = qp->rq_head;
}

/* The injected failure of FAKEVERBS_FAIL_SEND for the send WR numbered `n`, or 0. */
static int injected(long n)
{
	const char *v = getenv("FAKEVERBS_FAIL_SEND");
	char *end;
	if (!v || !*v)
		return 0;
	long which = strtol(v, &end, 10);
	if (*end != ':' || which != n)
		return 0;
	return atoi(end + 1);
}

int fv_post_send(struct rcmoe_ibv_qp *ibv, struct rcmoe_ibv_send_wr *wr,
		 struct rcmoe_ibv_send_wr **bad)
{
	struct fv_qp *qp = (struct fv_qp *)(void *)ibv;
	int err = 0;
	pthread_mutex_lock(&fv_lock);
	for (; wr; wr = wr->next) {
		if (qp->ibv.state != RCMOE_IBV_QPS_RTS && qp->ibv.state != RCMOE_IBV_QPS_ERR) {
			err = EINVAL;
			break;
		}
		bool read = wr->opcode == RCMOE_IBV_WR_RDMA_READ;
		if ((wr->opcode != RCMOE_IBV_WR_RDMA_WRITE &&
		     wr->opcode != RCMOE_IBV_WR_RDMA_WRITE_WITH_IMM && !read) ||
		    wr->num_sge > 1 || wr->num_sge < 0 ||
		    (read && wr->num_sge == 1 && wr->sg_list[0].length > FV_MAX_CHUNK)) {
			err = EINVAL;
			break;
		}
		if (qp->sq_head - qp->sq_tail == FV_SQ) {
			err = ENOMEM;
			break;
		}
		struct fv_swr *w = &qp->sq[qp->sq_head % FV_SQ];
		if (qp->sq_tail == qp->sq_head)
			qp->last_sign_ns = fv_now_ns(); /* the retry clock starts now */
		memset(w, 0, sizeof(*w));
		w->wr_id = wr->wr_id;
		w->opcode = wr->opcode;
		w->signaled = (wr->send_flags & RCMOE_IBV_SEND_SIGNALED) != 0;
		w->imm = wr->imm_data;
		w->raddr = wr->wr.rdma.remote_addr;
		w->rkey = wr->wr.rdma.rkey;
		if (wr->num_sge == 1) {
			w->laddr = wr->sg_list[0].addr;
			w->len = wr->sg_list[0].length;
			/* a read writes its local buffer */
			const struct fv_mr *m =
				w->len ? find_mr(wr->sg_list[0].lkey, w->laddr, w->len,
						 read ? RCMOE_IBV_ACCESS_LOCAL_WRITE : 0)
				       : NULL;
			if (w->len && !m)
				w->status = RCMOE_IBV_WC_LOC_PROT_ERR;
			else if (m)
				w->lhost = fv_host(m, w->laddr);
		}
		if (!w->status)
			w->status = injected(atomic_fetch_add(&sends_posted, 1) + 1);
		qp->sq_head++;
		if (qp->ibv.state == RCMOE_IBV_QPS_ERR)
			fv_qp_error(qp, NULL, 0); /* flushed at once */
	}
	pthread_mutex_unlock(&fv_lock);
	if (err && bad)
		*bad = wr;
	return err;
}

int fv_post_recv(struct rcmoe_ibv_qp *ibv, struct rcmoe_ibv_recv_wr *wr,
		 struct rcmoe_ibv_recv_wr **bad)
{
	struct fv_qp *qp = (struct fv_qp *)(void *)ibv;
	int err = 0;
	pthread_mutex_lock(&fv_lock);
	for (; wr; wr = wr->next) {
		if (qp->ibv.state == RCMOE_IBV_QPS_RESET || wr->num_sge > 1 ||
		    qp->rq_head - qp->rq_tail == FV_RQ) {
			err = qp->rq_head - qp->rq_tail == FV_RQ ? ENOMEM : EINVAL;
			break;
		}
		qp->rq[qp->rq_head++ % FV_RQ] = wr->wr_id;
		if (qp->ibv.state == RCMOE_IBV_QPS_ERR)
			fv_qp_error(qp, NULL, 0);
	}
	pthread_mutex_unlock(&fv_lock);
	if (err && bad)
		*bad = wr;
	return err;
}
