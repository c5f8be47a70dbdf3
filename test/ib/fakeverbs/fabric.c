/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fakeverbs: the fabric. Each QP's inbox is a shared memory ring its peer writes packets into;
 * the process's progress thread plays the HCA for all of its QPs (fv.h).
 *
 * A ring is single-producer (the peer's progress thread) single-consumer (ours): head and tail
 * are byte counters, a packet never wraps. The bytes a packet that does not fit leaves at the
 * end are skipped: by a PAD packet where they hold its header, else (fewer bytes than a header)
 * by both sides knowing that no packet starts that close to the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fv.h"

#define FV_PREFIX "fakeverbs-"

static void inbox_name(char *buf, size_t size, pid_t pid, uint32_t qpn)
{
	snprintf(buf, size, "/" FV_PREFIX "%u-%d-%u", (unsigned)getuid(), (int)pid, qpn);
}

static struct fv_inbox *map_inbox(int fd)
{
	void *p = mmap(NULL, sizeof(struct fv_inbox), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

int fv_inbox_create(struct fv_qp *qp)
{
	inbox_name(qp->inbox_name, sizeof(qp->inbox_name), getpid(), qp->ibv.qp_num);
	int fd = shm_open(qp->inbox_name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		return errno;
	if (ftruncate(fd, sizeof(struct fv_inbox)) != 0) {
		int err = errno;
		close(fd);
		shm_unlink(qp->inbox_name);
		return err;
	}
	qp->inbox = map_inbox(fd);
	if (!qp->inbox) {
		shm_unlink(qp->inbox_name);
		return ENOMEM;
	}
	return 0;
}

void fv_inbox_destroy(struct fv_qp *qp)
{
	if (qp->peer)
		munmap(qp->peer, sizeof(struct fv_inbox));
	munmap(qp->inbox, sizeof(struct fv_inbox));
	shm_unlink(qp->inbox_name);
}

void fv_peer_open(struct fv_qp *qp)
{
	char name[64];
	if (qp->peer || !qp->peer_qpn)
		return;
	inbox_name(name, sizeof(name), qp->peer_pid, qp->peer_qpn);
	int fd = shm_open(name, O_RDWR, 0);
	if (fd >= 0)
		qp->peer = map_inbox(fd);
}

/* Inboxes of processes that ended without destroying their QPs (a test killed them). */
void fv_cleanup_stale(void)
{
	char prefix[64];
	DIR *d = opendir("/dev/shm");
	if (!d)
		return;
	snprintf(prefix, sizeof(prefix), FV_PREFIX "%u-", (unsigned)getuid());
	for (struct dirent *e; (e = readdir(d));) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
			continue;
		int pid = atoi(e->d_name + strlen(prefix));
		if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) {
			char name[300];
			snprintf(name, sizeof(name), "/%s", e->d_name);
			shm_unlink(name);
		}
	}
	closedir(d);
}

/* ---- rings ---- */

static size_t pkt_size(uint32_t len)
{
	return sizeof(struct fv_pkt) + (((size_t)len + 7) & ~(size_t)7);
}

_Static_assert(sizeof(struct fv_pkt) % 8 == 0 && FV_RING % 8 == 0,
	       "packets start 8-aligned, so a gap at the end is a multiple of 8");

/* The bytes from `pos` (a head or tail) to the end of the ring when they are too few for a
 * packet header, else 0. No packet starts there, and the producer writes no PAD there: its
 * header would run past the ring, and its length (the gap less a header) would wrap to about
 * 4 GiB, which is what the consumer would then add to its tail. */
static size_t short_gap(uint64_t pos)
{
	size_t to_end = FV_RING - (size_t)(pos % FV_RING);
	return to_end < sizeof(struct fv_pkt) ? to_end : 0;
}

/* Reserve room for a packet of `len` payload bytes in `ib`; NULL when full. */
static struct fv_pkt *ring_reserve(struct fv_inbox *ib, uint32_t len)
{
	uint64_t head = atomic_load_explicit(&ib->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&ib->tail, memory_order_acquire);
	size_t need = pkt_size(len);
	size_t pos = head % FV_RING;
	size_t to_end = FV_RING - pos;
	if (to_end < need) {
		if (FV_RING - (head - tail) < to_end + need)
			return NULL;
		if (!short_gap(head)) {
			struct fv_pkt *pad = (struct fv_pkt *)(void *)&ib->data[pos];
			pad->type = FV_PAD;
			pad->len = (uint32_t)(to_end - sizeof(struct fv_pkt));
		}
		atomic_store_explicit(&ib->head, head + to_end, memory_order_release);
		head += to_end;
		pos = 0;
	}
	if (FV_RING - (head - tail) < need)
		return NULL;
	return (struct fv_pkt *)(void *)&ib->data[pos];
}

static void ring_publish(struct fv_inbox *ib, const struct fv_pkt *p)
{
	uint64_t head = atomic_load_explicit(&ib->head, memory_order_relaxed);
	atomic_store_explicit(&ib->head, head + pkt_size(p->len), memory_order_release);
}

/* The packet at the consumer's position, or NULL. PAD packets and short gaps at the end are
 * skipped here. */
static struct fv_pkt *ring_peek(struct fv_inbox *ib)
{
	for (;;) {
		uint64_t tail = atomic_load_explicit(&ib->tail, memory_order_relaxed);
		uint64_t head = atomic_load_explicit(&ib->head, memory_order_acquire);
		if (tail == head)
			return NULL;
		/* The producer moved past a gap it could not put a PAD header in (ring_reserve). */
		size_t gap = short_gap(tail);
		if (gap) {
			atomic_store_explicit(&ib->tail, tail + gap, memory_order_release);
			continue;
		}
		struct fv_pkt *p = (struct fv_pkt *)(void *)&ib->data[tail % FV_RING];
		if (p->type != FV_PAD)
			return p;
		atomic_store_explicit(&ib->tail, tail + pkt_size(p->len), memory_order_release);
	}
}

static void ring_pop(struct fv_inbox *ib, const struct fv_pkt *p)
{
	uint64_t tail = atomic_load_explicit(&ib->tail, memory_order_relaxed);
	atomic_store_explicit(&ib->tail, tail + pkt_size(p->len), memory_order_release);
}

/* ---- the requester ---- */

static void complete_send(struct fv_qp *qp, struct fv_swr *w, int status)
{
	struct fv_cq *cq = (struct fv_cq *)(void *)qp->ibv.send_cq;
	if (status != RCMOE_IBV_WC_SUCCESS) {
		fv_qp_error(qp, w, status);
		return;
	}
	if (w->signaled) {
		struct rcmoe_ibv_wc wc = { .wr_id = w->wr_id,
					   .status = status,
					   .opcode = w->opcode == RCMOE_IBV_WR_RDMA_READ
							     ? RCMOE_IBV_WC_RDMA_READ
							     : RCMOE_IBV_WC_RDMA_WRITE,
					   .byte_len = w->len,
					   .qp_num = qp->ibv.qp_num };
		fv_cq_push(cq, &wc);
	}
	qp->sq_tail++;
}

/* Push the packets of posted writes into the peer's inbox while it has room. */
static bool push(struct fv_qp *qp)
{
	bool moved = false;
	while (qp->ibv.state == RCMOE_IBV_QPS_RTS && qp->sq_push != qp->sq_head) {
		struct fv_swr *w = &qp->sq[qp->sq_push % FV_SQ];
		if (w->status) {
			/* Only the oldest may fail: earlier writes are acked first. */
			if (qp->sq_tail != qp->sq_push)
				return moved;
			complete_send(qp, w, w->status);
			return true;
		}
		fv_peer_open(qp);
		if (!qp->peer)
			return moved;
		if (w->opcode ==
		    RCMOE_IBV_WR_RDMA_READ) { /* one request, answered with the bytes */
			struct fv_pkt *p = ring_reserve(qp->peer, 0);
			if (!p)
				return moved;
			*p = (struct fv_pkt){ .type = FV_READ,
					      .raddr = w->raddr,
					      .first_raddr = w->raddr,
					      .total = w->len,
					      .rkey = w->rkey };
			ring_publish(qp->peer, p);
			w->pushed = w->len;
			qp->sq_push++;
			moved = true;
			qp->last_sign_ns = fv_now_ns();
			continue;
		}
		uint32_t n = w->len - w->pushed;
		if (n > FV_MAX_CHUNK)
			n = FV_MAX_CHUNK;
		struct fv_pkt *p = ring_reserve(qp->peer, n);
		if (!p)
			return moved;
		*p = (struct fv_pkt){ .type = FV_WRITE,
				      .raddr = w->raddr + w->pushed,
				      .first_raddr = w->raddr,
				      .total = w->len,
				      .rkey = w->rkey,
				      .imm = w->imm,
				      .len = n };
		if (w->pushed == 0)
			p->flags |= FV_FIRST;
		if (w->pushed + n == w->len)
			p->flags |= FV_LAST;
		if (w->opcode == RCMOE_IBV_WR_RDMA_WRITE_WITH_IMM)
			p->flags |= FV_IMM;
		if (n) /* a 0-byte write may have no buffer at all */
			memcpy(p + 1, w->lhost + w->pushed, n);
		ring_publish(qp->peer, p);
		w->pushed += n;
		moved = true;
		qp->last_sign_ns = fv_now_ns();
		if (w->pushed == w->len)
			qp->sq_push++;
	}
	return moved;
}

/* ---- the responder ---- */

/* May the write starting with packet p land? Its registration goes to qp->rx_mr. */
static bool write_allowed(struct fv_qp *qp, const struct fv_pkt *p)
{
	qp->rx_mr = NULL;
	/* A zero-length write touches no memory: as on real HCAs, its rkey is not checked (a
	 * 0-byte receive may be posted with no registration at all). */
	if (p->total == 0)
		return true;
	for (struct fv_mr *m = fv_mrs; m; m = m->next) {
		uint64_t base = (uint64_t)(uintptr_t)m->ibv.addr;
		if (m->ibv.rkey != p->rkey)
			continue;
		qp->rx_mr = m;
		return (m->access & RCMOE_IBV_ACCESS_REMOTE_WRITE) && p->first_raddr >= base &&
		       p->total <= m->ibv.length &&
		       p->first_raddr - base <= m->ibv.length - p->total;
	}
	return false;
}

/* The registration a read of p may come from (rkey, remote read, bounds), or NULL. */
static const struct fv_mr *read_allowed(const struct fv_pkt *p)
{
	for (const struct fv_mr *m = fv_mrs; m; m = m->next) {
		uint64_t base = (uint64_t)(uintptr_t)m->ibv.addr;
		if (m->ibv.rkey != p->rkey)
			continue;
		if ((m->access & RCMOE_IBV_ACCESS_REMOTE_READ) && p->raddr >= base &&
		    p->total <= m->ibv.length && p->raddr - base <= m->ibv.length - p->total)
			return m;
		return NULL;
	}
	return NULL;
}

/* Answer a READ after every answer owed before it (RC order): the bytes, or a NAK. False when
 * it must wait (earlier answers not sent yet, or no room in the requester's inbox). */
static bool answer_read(struct fv_qp *qp, const struct fv_pkt *p)
{
	if (qp->ack_tail != qp->ack_head)
		return false;
	fv_peer_open(qp);
	if (!qp->peer)
		return false;
	const struct fv_mr *m = p->total ? read_allowed(p) : NULL;
	uint32_t n = m ? (uint32_t)p->total : 0;
	struct fv_pkt *a = ring_reserve(qp->peer, n);
	if (!a)
		return false;
	*a = (struct fv_pkt){ .type = FV_ACK,
			      .len = n,
			      .status = m || !p->total ? RCMOE_IBV_WC_SUCCESS
						       : RCMOE_IBV_WC_REM_ACCESS_ERR };
	if (n)
		memcpy(a + 1, fv_host(m, p->raddr), n);
	ring_publish(qp->peer, a);
	return true;
}

/* Place a packet's payload; stores its last 8 bytes last, as a NIC writes in address order
 * (the transport's clear-to-send entries end with the word that says they are there). */
static void place(const struct fv_qp *qp, const struct fv_pkt *p)
{
	uint8_t *dst = qp->rx_mr ? fv_host(qp->rx_mr, p->raddr) : (uint8_t *)(uintptr_t)p->raddr;
	const uint8_t *src = (const uint8_t *)(p + 1);
	if (p->len <= 8) {
		if (p->len) /* a 0-byte write may name no address */
			memcpy(dst, src, p->len);
		return;
	}
	memcpy(dst, src, p->len - 8);
	atomic_thread_fence(memory_order_release);
	memcpy(dst + p->len - 8, src + p->len - 8, 8);
}

static void owe_ack(struct fv_qp *qp, int status)
{
	qp->acks_owed[qp->ack_head++ % FV_SQ] = (uint32_t)status;
}

/* Drain our inbox: writes from the peer, and its answers to ours. */
static bool drain(struct fv_qp *qp)
{
	bool moved = false;
	struct fv_pkt *p;
	while ((p = ring_peek(qp->inbox))) {
		if (p->type == FV_ACK) {
			qp->last_sign_ns = fv_now_ns();
			if (qp->sq_tail != qp->sq_push) {
				struct fv_swr *w = &qp->sq[qp->sq_tail % FV_SQ];
				/* a read's answer brings its bytes */
				if (w->opcode == RCMOE_IBV_WR_RDMA_READ && p->len &&
				    p->status == RCMOE_IBV_WC_SUCCESS)
					memcpy(w->lhost, p + 1, p->len < w->len ? p->len : w->len);
				complete_send(qp, w, (int)p->status);
			}
		} else if (p->type == FV_READ && qp->ibv.state == RCMOE_IBV_QPS_ERR) {
			/* dropped, as writes are */
		} else if (p->type == FV_READ) {
			if (!answer_read(qp, p))
				break; /* earlier answers first, or no room: later */
		} else if (p->type == FV_WRITE && qp->ibv.state == RCMOE_IBV_QPS_ERR) {
			/* A QP in the error state drops what arrives, unanswered: the
			 * requester's retries run out, as with a real HCA. */
		} else if (p->type == FV_WRITE) {
			if (qp->ack_head - qp->ack_tail == FV_SQ)
				break; /* answers pile up: wait for room to send them */
			if (p->flags & FV_FIRST)
				qp->rx_dropping = !write_allowed(qp, p);
			if ((p->flags & FV_LAST) && (p->flags & FV_IMM) && !qp->rx_dropping &&
			    qp->rq_tail == qp->rq_head)
				break; /* receiver not ready: the sender retries (rnr_retry 7) */
			if (!qp->rx_dropping)
				place(qp, p);
			if (p->flags & FV_LAST) {
				if (qp->rx_dropping) {
					owe_ack(qp, RCMOE_IBV_WC_REM_ACCESS_ERR);
				} else {
					if (p->flags & FV_IMM) {
						struct rcmoe_ibv_wc wc = {
							.wr_id = qp->rq[qp->rq_tail++ % FV_RQ],
							.status = RCMOE_IBV_WC_SUCCESS,
							.opcode = RCMOE_IBV_WC_RECV_RDMA_WITH_IMM,
							.byte_len = (uint32_t)p->total,
							.imm_data = p->imm,
							.qp_num = qp->ibv.qp_num,
							.src_qp = qp->peer_qpn,
							.wc_flags = RCMOE_IBV_WC_WITH_IMM,
						};
						fv_cq_push((struct fv_cq *)(void *)qp->ibv.recv_cq,
							   &wc);
					}
					owe_ack(qp, RCMOE_IBV_WC_SUCCESS);
				}
				qp->rx_dropping = false;
			}
		}
		ring_pop(qp->inbox, p);
		moved = true;
	}
	/* Answers go back through the peer's inbox. */
	while (qp->ack_tail != qp->ack_head) {
		fv_peer_open(qp);
		if (!qp->peer)
			break;
		struct fv_pkt *a = ring_reserve(qp->peer, 0);
		if (!a)
			break;
		*a = (struct fv_pkt){ .type = FV_ACK,
				      .status = qp->acks_owed[qp->ack_tail++ % FV_SQ] };
		ring_publish(qp->peer, a);
		moved = true;
	}
	return moved;
}

/* The oldest outstanding write heard nothing for the QP's retry time: the peer is gone. */
static void check_retry(struct fv_qp *qp, uint64_t now)
{
	if (qp->ibv.state != RCMOE_IBV_QPS_RTS || qp->sq_tail == qp->sq_head) {
		qp->last_sign_ns = now;
		return;
	}
	/* `now` was read before the lock: a post may have restarted the clock since. */
	if (now > qp->last_sign_ns && now - qp->last_sign_ns > qp->retry_ns)
		fv_qp_error(qp, &qp->sq[qp->sq_tail % FV_SQ], RCMOE_IBV_WC_RETRY_EXC_ERR);
}

static void *progress_main(void *arg)
{
	(void)arg;
	unsigned idle_us = 10;
	for (;;) {
		bool moved = false;
		uint64_t now = fv_now_ns();
		pthread_mutex_lock(&fv_lock);
		for (struct fv_qp *qp = fv_qps; qp; qp = qp->next) {
			if (qp->ibv.state == RCMOE_IBV_QPS_RESET)
				continue;
			moved |= drain(qp);
			moved |= push(qp);
			check_retry(qp, now);
		}
		pthread_mutex_unlock(&fv_lock);
		if (moved) {
			idle_us = 10;
			continue;
		}
		usleep(idle_us);
		if (idle_us < 1000)
			idle_us *= 2;
	}
	return NULL;
}

static void start_thread(void)
{
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, progress_main, NULL) != 0)
		abort(); /* a test provider without its HCA is of no use */
	pthread_attr_destroy(&attr);
}

void fv_progress_start(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, start_thread);
}
