/* SPDX-License-Identifier: Apache-2.0 */
/*
 * isend, irecv and test: the caller's side of the data path. Everything here runs on NCCL's
 * proxy thread and never blocks: headers go over the control socket with non-blocking calls,
 * payload pieces are queued for the helper threads, and completion is read from atomics.
 */
#include <errno.h>
#include <string.h>

#include "rcmoe/log.h"
#include "transport/socket/socket.h"

static struct rcmoe_treq *alloc_req(struct sock_comm *c)
{
	/* Slots are released in any order but reused in FIFO order, so a slot is free again
	 * only when every older request was released too. */
	if (c->head - c->tail >= SOCK_MAX_REQS)
		return NULL;
	struct rcmoe_treq *r = &c->reqs[c->head % SOCK_MAX_REQS];
	r->comm = c;
	r->state = SOCK_REQ_POSTED;
	r->seq = c->head++;
	r->buf = NULL;
	r->len = 0;
	r->flags = 0;
	r->inline_payload = false;
	r->tag = 0;
	r->status = RCMOE_OK;
	r->max_len = 0;
	r->place = NULL;
	r->place_arg = NULL;
	atomic_store_explicit(&r->pieces_left, 0, memory_order_relaxed);
	atomic_store_explicit(&r->bytes_done, 0, memory_order_relaxed);
	return r;
}

static void release_req(struct sock_comm *c, struct rcmoe_treq *r)
{
	r->state = SOCK_REQ_FREE;
	while (c->tail != c->head && c->reqs[c->tail % SOCK_MAX_REQS].state == SOCK_REQ_FREE)
		c->tail++;
}

/* Cut the message into pieces, queue each on its stream and wake the threads concerned. */
static void queue_pieces(struct sock_comm *c, struct rcmoe_treq *r)
{
	size_t piece;
	unsigned n;
	uint32_t wake = 0; /* one bit per thread, nthreads <= 16 */
	sock_plan_pieces(r->len, (unsigned)c->nstreams, c->min_chunk, &piece, &n);
	/* Published to the threads by the release in the tail stores below. */
	atomic_store_explicit(&r->pieces_left, n, memory_order_relaxed);
	for (unsigned i = 0; i < n; i++) {
		struct sock_stream *s = &c->streams[(c->next_stream + i) % (unsigned)c->nstreams];
		size_t off = (size_t)i * piece;
		uint32_t tail = atomic_load_explicit(&s->tail, memory_order_relaxed); /* ours */
		/* At most one piece per message per stream and SOCK_MAX_REQS messages unreleased
		 * (a request is released only after its pieces left the queues): never full. */
		s->q[tail % SOCK_MAX_REQS] = (struct sock_piece){
		    .req = r,
		    .buf = r->buf ? r->buf + off : NULL,
		    .len = r->len - off < piece ? r->len - off : piece,
		};
		/* seq_cst: pairs with the thread's `sleeping` store before it looks again. */
		atomic_store(&s->tail, tail + 1);
		wake |= 1u << (s->index % c->nthreads);
	}
	c->next_stream = (c->next_stream + n) % (unsigned)c->nstreams;
	for (int t = 0; t < c->nthreads; t++)
		if (wake & (1u << t))
			sock_thread_wake(&c->threads[t]);
	r->state = SOCK_REQ_MOVING;
}

/* Write the pending headers (each with its inline payload), oldest first, as far as the socket
 * takes them. */
static void send_headers(struct sock_comm *c)
{
	while (c->hdr_seq != c->head && !atomic_load_explicit(&c->failing, memory_order_relaxed)) {
		struct rcmoe_treq *r = &c->reqs[c->hdr_seq % SOCK_MAX_REQS];
		size_t inl = r->inline_payload ? r->len : 0;
		enum sock_io_result res =
		    sock_send2(c->ctrl_fd, r->hdr, SOCK_HDR_SIZE, r->buf, inl, &c->hdr_off);
		if (res == SOCK_IO_AGAIN)
			return;
		if (res != SOCK_IO_DONE) {
			int err = errno;
			sock_comm_fail(
			    c, RCMOE_ERR_REMOTE,
			    "%s on the control socket after %zu of %zu bytes of message %u "
			    "(header and inline payload)",
			    strerror(err), c->hdr_off, SOCK_HDR_SIZE + inl, r->seq);
			return;
		}
		c->hdr_seq++;
		c->hdr_off = 0;
	}
}

/* Check a received header against its posted receive; fails the comm when it does not fit. */
static bool header_ok(struct sock_comm *c, struct rcmoe_treq *r, const struct sock_msg_hdr *h)
{
	if (h->magic != SOCK_MSG_MAGIC) {
		r->status = RCMOE_ERR_MALFORMED;
		sock_comm_fail(c, r->status, "bad message header (magic 0x%08x) for message %u",
			       h->magic, r->seq);
	} else if (h->seq != r->seq) {
		r->status = RCMOE_ERR_MALFORMED;
		sock_comm_fail(c, r->status, "header of message %u arrived when %u was expected",
			       h->seq, r->seq);
	} else if (h->tag != r->tag) {
		r->status = RCMOE_ERR_MALFORMED;
		sock_comm_fail(c, r->status,
			       "message %u has tag %d, the receive was posted with %d", r->seq,
			       h->tag, r->tag);
	} else if ((h->wire_flags & ~SOCK_WIRE_INLINE) ||
		   ((h->wire_flags & SOCK_WIRE_INLINE) && h->len > SOCK_INLINE_MAX)) {
		r->status = RCMOE_ERR_MALFORMED;
		sock_comm_fail(
		    c, r->status,
		    "message %u has transport flags 0x%x for %llu bytes (inline at most %u)",
		    r->seq, h->wire_flags, (unsigned long long)h->len, SOCK_INLINE_MAX);
	} else if (h->len > r->max_len) {
		r->status = RCMOE_ERR_OVERFLOW;
		sock_comm_fail(c, r->status,
			       "message %u is %llu bytes, more than the %zu the receive allows",
			       r->seq, (unsigned long long)h->len, r->max_len);
	}
	return r->status == RCMOE_OK;
}

/* Read one header from the control socket and act on it: ask the message's destination, then
 * queue its pieces or wait for its inline payload. False when the caller should stop for now. */
static bool recv_header(struct sock_comm *c, struct rcmoe_treq *r)
{
	enum sock_io_result res = sock_io(c->ctrl_fd, false, c->rx_hdr, SOCK_HDR_SIZE, &c->hdr_off);
	if (res == SOCK_IO_AGAIN)
		return false;
	if (res != SOCK_IO_DONE) {
		int err = res == SOCK_IO_EOF ? 0 : errno;
		sock_comm_fail(
		    c, RCMOE_ERR_REMOTE,
		    "%s while waiting for the header of message %u (%zu of %d bytes read)",
		    err ? strerror(err) : "peer closed the connection", r->seq, c->hdr_off,
		    SOCK_HDR_SIZE);
		return false;
	}
	struct sock_msg_hdr h;
	sock_hdr_decode(c->rx_hdr, &h);
	c->hdr_off = 0;
	if (!header_ok(c, r, &h))
		return false;

	void *dest = NULL;
	r->len = (size_t)h.len;
	r->flags = h.flags;
	rcmoe_status_t st = r->place(r->place_arg, r->len, r->flags, &dest);
	if (st == RCMOE_OK && !dest && r->len)
		st = RCMOE_ERR_INTERNAL;
	if (st != RCMOE_OK) {
		/* Only this message is lost: its payload is read and dropped so the connection
		 * stays in step, and test reports `st` when that is done. */
		RCMOE_INFO(NCCL_NET, "no destination for message %u (%zu bytes) from %s: %s",
			   r->seq, r->len, c->peer, rcmoe_status_str(st));
		r->status = st;
		dest = NULL;
	}
	r->buf = dest;
	if (h.wire_flags & SOCK_WIRE_INLINE) {
		r->state = SOCK_REQ_INLINE;
		c->rx_off = 0;
	} else {
		queue_pieces(c, r);
		c->hdr_seq++;
	}
	return true;
}

/* Read a message's inline payload from the control socket into its destination (or drop it). */
static bool recv_inline(struct sock_comm *c, struct rcmoe_treq *r)
{
	enum sock_io_result res = SOCK_IO_DONE;
	if (r->buf) {
		res = sock_io(c->ctrl_fd, false, r->buf, r->len, &c->rx_off);
	} else {
		uint8_t sink[4096];
		while (res == SOCK_IO_DONE && c->rx_off < r->len) {
			size_t got = 0, n = r->len - c->rx_off;
			res = sock_io(c->ctrl_fd, false, sink, n < sizeof(sink) ? n : sizeof(sink),
				      &got);
			c->rx_off += got;
		}
	}
	if (res == SOCK_IO_AGAIN)
		return false;
	if (res != SOCK_IO_DONE) {
		int err = res == SOCK_IO_EOF ? 0 : errno;
		sock_comm_fail(
		    c, RCMOE_ERR_REMOTE, "%s after %zu of %zu bytes of message %u (inline)",
		    err ? strerror(err) : "peer closed the connection", c->rx_off, r->len, r->seq);
		return false;
	}
	r->state = SOCK_REQ_MOVING;
	c->hdr_seq++;
	return true;
}

/* Progress the posted receives, oldest first, as far as the control socket allows. A header is
 * read only once its receive is posted, so a bad one never meets a buffer. */
static void recv_headers(struct sock_comm *c)
{
	/* After a failure the socket may still hold bytes, but they mean nothing any more. */
	while (c->hdr_seq != c->head && !atomic_load_explicit(&c->failing, memory_order_relaxed)) {
		struct rcmoe_treq *r = &c->reqs[c->hdr_seq % SOCK_MAX_REQS];
		bool more = r->state == SOCK_REQ_INLINE ? recv_inline(c, r) : recv_header(c, r);
		if (!more)
			return;
	}
}

rcmoe_status_t sock_isend(struct rcmoe_tsend *comm, const void *buf, size_t len, int tag,
			  uint32_t flags, struct rcmoe_treq **req)
{
	struct sock_comm *c = sock_send_comm(comm);
	if (!c || !req || (len && !buf))
		return RCMOE_ERR_INVALID;
	*req = NULL;
	int err = atomic_load_explicit(&c->error, memory_order_acquire);
	if (err != RCMOE_OK)
		return (rcmoe_status_t)err;
	struct rcmoe_treq *r = alloc_req(c);
	if (!r)
		return RCMOE_OK;
	r->buf = (uint8_t *)(uintptr_t)buf; /* only read from */
	r->len = len;
	r->tag = tag;
	r->flags = flags;
	/* A message that would be one piece rides on the control socket: it loses no
	 * parallelism and needs no helper-thread wakeup on either side. */
	r->inline_payload = len <= c->min_chunk && len <= SOCK_INLINE_MAX;
	struct sock_msg_hdr h = {.magic = SOCK_MSG_MAGIC,
				 .seq = r->seq,
				 .tag = tag,
				 .flags = flags,
				 .len = len,
				 .wire_flags = r->inline_payload ? SOCK_WIRE_INLINE : 0};
	sock_hdr_encode(&h, r->hdr);
	if (r->inline_payload)
		r->state = SOCK_REQ_MOVING;
	else
		queue_pieces(c, r);
	send_headers(c);
	*req = r;
	return RCMOE_OK;
}

rcmoe_status_t sock_irecv(struct rcmoe_trecv *comm, size_t max_len, int tag, rcmoe_place_fn place,
			  void *place_arg, struct rcmoe_treq **req)
{
	struct sock_comm *c = sock_recv_comm(comm);
	if (!c || !req || !place)
		return RCMOE_ERR_INVALID;
	*req = NULL;
	int err = atomic_load_explicit(&c->error, memory_order_acquire);
	if (err != RCMOE_OK)
		return (rcmoe_status_t)err;
	struct rcmoe_treq *r = alloc_req(c);
	if (!r)
		return RCMOE_OK;
	r->max_len = max_len;
	r->tag = tag;
	r->place = place;
	r->place_arg = place_arg;
	/* The header is read in test: the placement callback is only ever called from test. */
	*req = r;
	return RCMOE_OK;
}

rcmoe_status_t sock_test(struct rcmoe_treq *req, int *done, size_t *len, uint32_t *flags)
{
	if (!req || !done || req->state == SOCK_REQ_FREE)
		return RCMOE_ERR_INVALID;
	struct sock_comm *c = req->comm;
	rcmoe_status_t st;
	bool header_done;
	*done = 0;
	if (c->is_send) {
		send_headers(c);
		header_done = (int32_t)(c->hdr_seq - req->seq) > 0;
	} else {
		recv_headers(c);
		header_done = req->state == SOCK_REQ_MOVING;
	}
	if (header_done && atomic_load_explicit(&req->pieces_left, memory_order_acquire) == 0) {
		st = req->status;
		if (st == RCMOE_OK) {
			*done = 1;
			if (len)
				*len = req->len;
			if (flags)
				*flags = req->flags;
		}
		release_req(c, req);
		return st;
	}
	int err = atomic_load_explicit(&c->error, memory_order_acquire);
	if (err == RCMOE_OK)
		return RCMOE_OK;
	/* The comm failed. Report it only once no helper thread can touch this request's
	 * buffer any more (they are woken and let go within microseconds). */
	if (atomic_load_explicit(&c->quiesced, memory_order_acquire) < c->nthreads)
		return RCMOE_OK;
	st = req->status != RCMOE_OK ? req->status : (rcmoe_status_t)err;
	release_req(c, req);
	return st;
}
