/* SPDX-License-Identifier: Apache-2.0 */
/*
 * isend, irecv and test: the caller's side of the data path. Everything here runs on NCCL's
 * proxy thread and never blocks: headers go over the control socket with non-blocking calls,
 * payload pieces are queued for the pool's workers (pool.c), and completion is read from atomics.
 *
 * Also the heartbeats (proto.h, struct sock_live): a waiting receiver asks whether its sender
 * still runs, and the worker of the sender's lane 0 answers (sock_hb_read, sock_ctrl_flush) even
 * when NCCL's proxy thread does not call in; a receiver that holds unread bytes beats
 * (sock_beat_check), and a sender whose send stopped moving listens for that.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "rcmoe/log.h"
#include "transport/socket/socket.h"

static uint64_t timeout_ns(void)
{
	return (uint64_t)sock_global.params.socket_timeout * 1000000000ull;
}

/* A waiting receiver that heard nothing for this long asks; the sender has at least the rest of
 * the timeout to answer. */
static uint64_t ask_after_ns(void)
{
	return timeout_ns() / 4;
}

uint64_t sock_beat_ns(void)
{
	return timeout_ns() / 4;
}

/* hdr_seq is only ever written by one side at a time (the receiving caller, or the holder of
 * ctrl_lock); the release lets the sending caller see which headers are out without the lock. */
static uint32_t hdr_seq(struct sock_comm *c)
{
	return atomic_load_explicit(&c->hdr_seq, memory_order_relaxed);
}

static void hdr_seq_next(struct sock_comm *c)
{
	atomic_store_explicit(&c->hdr_seq, hdr_seq(c) + 1, memory_order_release);
}

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

/* Cut the message into pieces, queue each on its stream and wake the lanes' workers. */
static void queue_pieces(struct sock_comm *c, struct rcmoe_treq *r)
{
	size_t piece;
	unsigned n;
	uint64_t wake = 0; /* one bit per lane, nlanes <= 16 (params.def) */
	sock_plan_pieces(r->len, (unsigned)c->nstreams, c->min_chunk, &piece, &n);
	/* Published to the workers by the release in the tail stores below. */
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
		/* seq_cst: pairs with the worker's `sleeping` store before it looks again. */
		atomic_store(&s->tail, tail + 1);
		wake |= 1ull << (s->index % c->nlanes);
	}
	c->next_stream = (c->next_stream + n) % (unsigned)c->nstreams;
	for (int l = 0; l < c->nlanes; l++)
		if (wake & (1ull << l))
			sock_lane_wake(&c->lanes[l]);
	r->state = SOCK_REQ_MOVING;
}

/* ---- the control socket's write side (ctrl_lock held) ---- */

/* Write our heartbeat frame, or what a full socket left of it. */
static enum sock_io_result frame_write(struct sock_comm *c)
{
	struct sock_hb *hb = &c->hb;
	enum sock_io_result res = sock_io(c->ctrl_fd, true, hb->out, SOCK_HDR_SIZE, &hb->out_off);
	if (res == SOCK_IO_DONE)
		hb->out_off = 0;
	return res;
}

/* Finish a frame that a full socket cut short: nothing may come between its bytes. */
static enum sock_io_result frame_finish(struct sock_comm *c)
{
	return c->hb.out_off ? frame_write(c) : SOCK_IO_DONE;
}

/* Start a frame; we are between two frames (and messages) here. It is under way (to be finished
 * before anything else) unless the result is SOCK_IO_AGAIN with nothing written. */
static enum sock_io_result frame_start(struct sock_comm *c, uint32_t kind, uint32_t id)
{
	sock_heartbeat_encode(kind, id, c->hb.out);
	c->hb.out_off = 0;
	return frame_write(c);
}

static bool frame_went(struct sock_comm *c, enum sock_io_result res)
{
	return res == SOCK_IO_DONE || (res == SOCK_IO_AGAIN && c->hb.out_off);
}

/* Start the answer owed, if any. */
static enum sock_io_result pong_start(struct sock_comm *c)
{
	struct sock_hb *hb = &c->hb;
	if (!hb->pong_owed)
		return SOCK_IO_DONE;
	enum sock_io_result res = frame_start(c, SOCK_WIRE_PONG, hb->pong_id);
	/* When nothing went, try again later, with the newest number then. */
	hb->pong_owed = !frame_went(c, res) && res == SOCK_IO_AGAIN;
	return res;
}

/* Write the published headers (each with its inline payload), oldest first, as far as the
 * socket takes them. */
static enum sock_io_result write_headers(struct sock_comm *c)
{
	uint32_t end = atomic_load_explicit(&c->hdr_end, memory_order_acquire);
	while (hdr_seq(c) != end) {
		struct rcmoe_treq *r = &c->reqs[hdr_seq(c) % SOCK_MAX_REQS];
		size_t inl = r->inline_payload ? r->len : 0;
		size_t before = c->hdr_off;
		enum sock_io_result res =
			sock_send2(c->ctrl_fd, r->hdr, SOCK_HDR_SIZE, r->buf, inl, &c->hdr_off);
		atomic_fetch_add_explicit(&c->ctrl_out, c->hdr_off - before, memory_order_relaxed);
		if (res == SOCK_IO_ERROR) {
			int err = errno;
			sock_comm_fail(
				c, RCMOE_ERR_REMOTE,
				"%s on the control socket after %zu of %zu bytes of message %u "
				"(header and inline payload)",
				strerror(err), c->hdr_off, SOCK_HDR_SIZE + inl, r->seq);
		}
		if (res != SOCK_IO_DONE)
			return res;
		c->hdr_off = 0;
		hdr_seq_next(c);
	}
	return SOCK_IO_DONE;
}

/* Everything the sender's control socket owes, in an order that keeps each header, inline
 * payload and answer whole: an answer under way, the headers, then a new answer. */
static void send_flush_locked(struct sock_comm *c)
{
	if (atomic_load_explicit(&c->failing, memory_order_relaxed))
		return;
	enum sock_io_result res = frame_finish(c);
	if (res == SOCK_IO_DONE) {
		res = write_headers(c);
		if (res != SOCK_IO_DONE)
			return; /* write_headers reported an error itself */
		res = pong_start(c);
	}
	if (res == SOCK_IO_ERROR) {
		int err = errno;
		sock_comm_fail(c, RCMOE_ERR_REMOTE,
			       "%s on the control socket while answering a heartbeat",
			       strerror(err));
	}
}

/* What the receiver's control socket owes (its reverse direction): a frame under way, the
 * caller's newest ping, then a beat. A write error only closes this direction (out_closed):
 * lane 0's beats go whether or not anybody waits, and the end of every job closes
 * connections; the caller reports it when a receive waits. */
static void recv_flush_locked(struct sock_comm *c)
{
	struct sock_hb *hb = &c->hb;
	if (hb->out_closed || atomic_load_explicit(&c->failing, memory_order_relaxed))
		return;
	enum sock_io_result res = frame_finish(c);
	uint32_t want = atomic_load_explicit(&hb->ping_want, memory_order_acquire);
	if (res == SOCK_IO_DONE && want != hb->ping_sent) {
		res = frame_start(c, SOCK_WIRE_PING, want - 1);
		if (frame_went(c, res))
			hb->ping_sent = want;
	}
	if (res == SOCK_IO_DONE && hb->beat_owed) {
		res = frame_start(c, SOCK_WIRE_BEAT, hb->beat_id);
		if (frame_went(c, res)) {
			hb->beat_owed = false;
			hb->beat_id++;
		}
	}
	if (res == SOCK_IO_ERROR) {
		hb->out_closed = true;
		hb->out_err = errno;
	}
}

static void ctrl_flush_locked(struct sock_comm *c)
{
	if (c->is_send)
		send_flush_locked(c);
	else
		recv_flush_locked(c);
}

/* The sending caller's writes. Lane 0's worker may hold the lock for a moment to answer a ping
 * (writing our headers too): the caller never waits for it, it comes back in its next test. */
static void send_headers(struct sock_comm *c)
{
	if (pthread_mutex_trylock(&c->ctrl_lock) != 0)
		return;
	ctrl_flush_locked(c);
	pthread_mutex_unlock(&c->ctrl_lock);
}

void sock_ctrl_flush(struct sock_comm *c, bool *want_out)
{
	struct sock_hb *hb = &c->hb;
	pthread_mutex_lock(&c->ctrl_lock);
	ctrl_flush_locked(c);
	bool owed;
	if (c->is_send)
		owed = hb->pong_owed;
	else
		owed = !hb->out_closed &&
		       (hb->beat_owed ||
			atomic_load_explicit(&hb->ping_want, memory_order_relaxed) !=
				hb->ping_sent);
	*want_out =
		!atomic_load_explicit(&c->failing, memory_order_relaxed) && (owed || hb->out_off);
	pthread_mutex_unlock(&c->ctrl_lock);
}

void sock_hb_read(struct sock_comm *c)
{
	struct sock_hb *hb = &c->hb;
	bool owed = false;
	uint32_t id = 0, seen = 0;
	while (!hb->in_closed) {
		enum sock_io_result res =
			sock_io(c->ctrl_fd, false, hb->in, SOCK_HDR_SIZE, &hb->in_off);
		if (res == SOCK_IO_AGAIN)
			break;
		if (res != SOCK_IO_DONE) {
			/* The receiver closed (or reset) the connection. No news on its own: it is
			 * how every job ends, and a send in flight reports it where it writes. */
			hb->in_closed = true;
			break;
		}
		struct sock_msg_hdr h;
		sock_hdr_decode(hb->in, &h);
		hb->in_off = 0;
		if (!sock_heartbeat_ok(&h, SOCK_WIRE_PING | SOCK_WIRE_BEAT)) {
			sock_comm_fail(
				c, RCMOE_ERR_MALFORMED,
				"the receiver sent something other than a heartbeat (ping or "
				"beat: magic 0x%08x, transport flags 0x%x, %llu bytes)",
				h.magic, h.wire_flags, (unsigned long long)h.len);
			hb->in_closed = true;
			return;
		}
		seen++;
		if (h.wire_flags == SOCK_WIRE_PING) {
			/* Answer the newest only: one answer shows as much as several. */
			owed = true;
			id = h.seq;
		}
	}
	if (seen)
		atomic_fetch_add_explicit(&hb->in_count, seen, memory_order_relaxed);
	if (owed) {
		pthread_mutex_lock(&c->ctrl_lock);
		hb->pong_owed = true;
		hb->pong_id = id;
		pthread_mutex_unlock(&c->ctrl_lock);
	}
}

/* Whether the socket holds bytes that nobody read yet. */
static bool unread(int fd)
{
	int n = 0;
	return ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

void sock_beat_check(struct sock_comm *c)
{
	bool any = unread(c->ctrl_fd);
	for (int s = 0; s < c->nstreams && !any; s++)
		any = unread(c->streams[s].fd);
	if (!any)
		return;
	pthread_mutex_lock(&c->ctrl_lock);
	c->hb.beat_owed = true;
	pthread_mutex_unlock(&c->ctrl_lock);
}

/* ---- receiving: headers ---- */

/* What any header must be, whether its receive is posted yet or not. */
static bool wire_ok(struct sock_comm *c, const struct sock_msg_hdr *h)
{
	if (h->magic != SOCK_MSG_MAGIC) {
		sock_comm_fail(c, RCMOE_ERR_MALFORMED,
			       "bad message header (magic 0x%08x) for message %u", h->magic,
			       hdr_seq(c));
		return false;
	}
	if ((h->wire_flags & ~SOCK_WIRE_INLINE) ||
	    ((h->wire_flags & SOCK_WIRE_INLINE) && h->len > SOCK_INLINE_MAX)) {
		sock_comm_fail(
			c, RCMOE_ERR_MALFORMED,
			"message %u has transport flags 0x%x for %llu bytes (inline at most %u)",
			hdr_seq(c), h->wire_flags, (unsigned long long)h->len, SOCK_INLINE_MAX);
		return false;
	}
	return true;
}

/* Check a header against its posted receive; fails the comm when it does not fit. */
static bool header_ok(struct sock_comm *c, struct rcmoe_treq *r, const struct sock_msg_hdr *h)
{
	if (h->seq != r->seq) {
		r->status = RCMOE_ERR_MALFORMED;
		sock_comm_fail(c, r->status, "header of message %u arrived when %u was expected",
			       h->seq, r->seq);
	} else if (h->tag != r->tag) {
		r->status = RCMOE_ERR_MALFORMED;
		sock_comm_fail(c, r->status,
			       "message %u has tag %d, the receive was posted with %d", r->seq,
			       h->tag, r->tag);
	} else if (h->len > r->max_len) {
		r->status = RCMOE_ERR_OVERFLOW;
		sock_comm_fail(c, r->status,
			       "message %u is %llu bytes, more than the %zu the receive allows",
			       r->seq, (unsigned long long)h->len, r->max_len);
	}
	return r->status == RCMOE_OK;
}

/* A heartbeat on the sender's direction: only a pong (an answer to our pings) may come there.
 * It shows that the sender runs only if it answers the open question: an older one was sent
 * before the question and may have waited unread (behind a parked header) for a long time. */
static bool take_answer(struct sock_comm *c, const struct sock_msg_hdr *h)
{
	struct sock_live *lv = &c->live;
	if (!sock_heartbeat_ok(h, SOCK_WIRE_PONG) || (int32_t)(lv->next_id - h->seq) <= 0) {
		sock_comm_fail(
			c, RCMOE_ERR_MALFORMED,
			"bad heartbeat answer (magic 0x%08x, transport flags 0x%x, %llu bytes, "
			"number %u while %u were sent)",
			h->magic, h->wire_flags, (unsigned long long)h->len, h->seq, lv->next_id);
		return false;
	}
	if (lv->asking && (int32_t)(h->seq - lv->ask_id) >= 0) {
		lv->asking = false;
		lv->ev_ns = sock_now_ns();
	}
	return true;
}

/* Read the control socket up to the next message header, taking the heartbeats on the way.
 * True with a complete, plausible header in rx_hdr: it stays there (parked) until its receive
 * is posted, and nothing behind it is read meanwhile. False when nothing more can be read now
 * or the comm failed. */
static bool next_header(struct sock_comm *c)
{
	while (c->hdr_off < SOCK_HDR_SIZE) {
		enum sock_io_result res =
			sock_io(c->ctrl_fd, false, c->rx_hdr, SOCK_HDR_SIZE, &c->hdr_off);
		if (res == SOCK_IO_AGAIN)
			return false;
		if (res != SOCK_IO_DONE) {
			int err = res == SOCK_IO_EOF ? 0 : errno;
			sock_comm_fail(c, RCMOE_ERR_REMOTE,
				       "%s while waiting for the header of message %u (%zu of %d "
				       "bytes read)",
				       err ? strerror(err) : "peer closed the connection",
				       hdr_seq(c), c->hdr_off, SOCK_HDR_SIZE);
			return false;
		}
		struct sock_msg_hdr h;
		sock_hdr_decode(c->rx_hdr, &h);
		if (sock_hdr_is_heartbeat(&h)) {
			c->hdr_off = 0;
			if (!take_answer(c, &h))
				return false;
			continue;
		}
		c->live.ctrl_in += SOCK_HDR_SIZE;
		if (!wire_ok(c, &h))
			return false;
	}
	return true;
}

/* Act on the header in rx_hdr for its posted receive: ask the message's destination, then
 * queue its pieces or wait for its inline payload. False when the caller should stop. */
static bool start_message(struct sock_comm *c, struct rcmoe_treq *r)
{
	struct sock_msg_hdr h;
	sock_hdr_decode(c->rx_hdr, &h);
	c->hdr_off = 0;
	if (!header_ok(c, r, &h))
		return false;

	void *dest = NULL;
	struct rcmoe_tmr *mr = NULL; /* TCP needs no registration (ops.c) */
	r->len = (size_t)h.len;
	r->flags = h.flags;
	rcmoe_status_t st = r->place(r->place_arg, r->len, r->flags, &dest, &mr);
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
		hdr_seq_next(c);
	}
	return true;
}

/* Read a message's inline payload from the control socket into its destination (or drop it). */
static bool recv_inline(struct sock_comm *c, struct rcmoe_treq *r)
{
	enum sock_io_result res = SOCK_IO_DONE;
	size_t before = c->rx_off;
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
	c->live.ctrl_in += c->rx_off - before;
	if (res == SOCK_IO_AGAIN)
		return false;
	if (res != SOCK_IO_DONE) {
		int err = res == SOCK_IO_EOF ? 0 : errno;
		sock_comm_fail(c, RCMOE_ERR_REMOTE,
			       "%s after %zu of %zu bytes of message %u (inline)",
			       err ? strerror(err) : "peer closed the connection", c->rx_off,
			       r->len, r->seq);
		return false;
	}
	r->state = SOCK_REQ_MOVING;
	hdr_seq_next(c);
	return true;
}

/* Progress the posted receives, oldest first, as far as the control socket allows. A header is
 * acted on only once its receive is posted, so a bad one never meets a buffer. */
static void recv_headers(struct sock_comm *c)
{
	/* After a failure the socket may still hold bytes, but they mean nothing any more. */
	while (!atomic_load_explicit(&c->failing, memory_order_relaxed)) {
		if (hdr_seq(c) == c->head) {
			/* Every posted receive has its header. Read on only to hear an answer
			 * to our heartbeat, which may come while payload is outstanding; a
			 * header met on the way is parked. */
			if (c->live.asking)
				next_header(c);
			return;
		}
		struct rcmoe_treq *r = &c->reqs[hdr_seq(c) % SOCK_MAX_REQS];
		bool more = r->state == SOCK_REQ_INLINE ? recv_inline(c, r)
							: next_header(c) && start_message(c, r);
		if (!more)
			return;
	}
}

/* ---- receiving: is the sender still there? ---- */

/* The oldest receive whose header came but whose payload has not all arrived. */
static struct rcmoe_treq *oldest_started(struct sock_comm *c)
{
	for (uint32_t seq = c->tail; seq != c->head; seq++) {
		struct rcmoe_treq *r = &c->reqs[seq % SOCK_MAX_REQS];
		if (r->state == SOCK_REQ_INLINE)
			return r;
		if (r->state == SOCK_REQ_MOVING &&
		    atomic_load_explicit(&r->pieces_left, memory_order_acquire) > 0)
			return r;
	}
	return NULL;
}

/* The oldest posted receive that still waits for bytes from the sender (a complete one only
 * waits for its test), or NULL. */
static struct rcmoe_treq *oldest_waiting(struct sock_comm *c)
{
	struct rcmoe_treq *r = oldest_started(c);
	if (!r && hdr_seq(c) != c->head)
		r = &c->reqs[hdr_seq(c) % SOCK_MAX_REQS];
	return r;
}

/* Header and payload bytes received so far, by the caller and the lanes' workers. */
static uint64_t bytes_in(struct sock_comm *c)
{
	uint64_t n = c->live.ctrl_in;
	for (int l = 0; l < c->nlanes; l++)
		n += atomic_load_explicit(&c->lanes[l].moved, memory_order_relaxed);
	return n;
}

/* What shows a send moving or its receiver running: the bytes our kernel took (headers, inline
 * and streamed payload) and the pings and beats that came from the receiver. */
static uint64_t send_progress(struct sock_comm *c)
{
	uint64_t n = atomic_load_explicit(&c->ctrl_out, memory_order_relaxed) +
		     atomic_load_explicit(&c->hb.in_count, memory_order_relaxed);
	for (int l = 0; l < c->nlanes; l++)
		n += atomic_load_explicit(&c->lanes[l].moved, memory_order_relaxed);
	return n;
}

static void live_restart(struct sock_comm *c, uint64_t now)
{
	struct sock_live *lv = &c->live;
	lv->ev_ns = now;
	lv->data_ns = now;
	lv->call_ns = now;
	lv->asking = false;
	lv->seen = c->is_send ? send_progress(c) : bytes_in(c);
}

/* Write what the receiver's control socket owes (our ping first), unless lane 0's worker is at
 * it right now: then it writes our ping too, or we do in the next test. */
static void recv_flush(struct sock_comm *c)
{
	if (pthread_mutex_trylock(&c->ctrl_lock) != 0)
		return;
	recv_flush_locked(c);
	bool closed = c->hb.out_closed;
	int err = c->hb.out_err;
	pthread_mutex_unlock(&c->ctrl_lock);
	if (closed)
		sock_comm_fail(c, RCMOE_ERR_REMOTE,
			       "%s on the control socket while sending a heartbeat", strerror(err));
}

static void ask(struct sock_comm *c, uint64_t now)
{
	struct sock_live *lv = &c->live;
	lv->asking = true;
	lv->ask_id = lv->next_id++;
	lv->ask_ns = now;
	atomic_store_explicit(&c->hb.ping_want, lv->ask_id + 1, memory_order_release);
}

static void fail_stalled(struct sock_comm *c, struct rcmoe_treq *r)
{
	size_t got = r->state == SOCK_REQ_INLINE
			     ? c->rx_off
			     : atomic_load_explicit(&r->bytes_done, memory_order_relaxed);
	sock_comm_fail(c, RCMOE_ERR_REMOTE,
		       "no payload for %lld s (RCMOE_SOCKET_TIMEOUT) after %zu of %zu bytes of "
		       "message %u: the sender is stopped or hung, or the network is down",
		       (long long)sock_global.params.socket_timeout, got, r->len, r->seq);
}

static void fail_silent(struct sock_comm *c, struct rcmoe_treq *r)
{
	sock_comm_fail(c, RCMOE_ERR_REMOTE,
		       "nothing (no header, payload or heartbeat) for %lld s "
		       "(RCMOE_SOCKET_TIMEOUT) while waiting for message %u: the sender is "
		       "stopped or hung, or the network is down",
		       (long long)sock_global.params.socket_timeout, r->seq);
}

/* Called by each receive test: note what arrived, ask after a quiet spell, and fail the
 * connection when a started message stopped moving or the sender stopped answering. */
static void recv_check_live(struct sock_comm *c)
{
	struct sock_live *lv = &c->live;
	uint64_t now = sock_now_ns();
	uint64_t seen = bytes_in(c);
	if (now - lv->call_ns > ask_after_ns()) {
		/* We were not looking (our own process stopped or starved, or the proxy thread
		 * was away): judge only what happens from now on. */
		live_restart(c, now);
		return;
	}
	lv->call_ns = now;
	if (seen != lv->seen) {
		lv->seen = seen;
		lv->ev_ns = now;
		lv->data_ns = now;
		lv->asking = false;
	}
	/* Payload of a started message comes from the sender's workers whatever its
	 * caller does: when none came for the timeout, the sender (or the network) hangs. */
	struct rcmoe_treq *r;
	if (now - lv->data_ns > timeout_ns() && (r = oldest_started(c)) != NULL) {
		fail_stalled(c, r);
		return;
	}
	if (!lv->asking && now - lv->ev_ns >= ask_after_ns() && oldest_waiting(c))
		ask(c, now);
	if (lv->asking)
		recv_flush(c);
	if (!lv->asking || atomic_load_explicit(&c->failing, memory_order_relaxed))
		return;
	if (now - lv->ev_ns > timeout_ns() && now - lv->ask_ns >= timeout_ns() - ask_after_ns()) {
		if ((r = oldest_waiting(c)) != NULL)
			fail_silent(c, r);
		else
			lv->asking = false;
	}
}

/* ---- sending: is the receiver still there? ---- */

/* The oldest send not all handed to the kernel yet (header, inline or streamed payload), or
 * NULL. */
static struct rcmoe_treq *oldest_unsent(struct sock_comm *c)
{
	uint32_t out = atomic_load_explicit(&c->hdr_seq, memory_order_acquire);
	for (uint32_t seq = c->tail; seq != c->head; seq++) {
		struct rcmoe_treq *r = &c->reqs[seq % SOCK_MAX_REQS];
		if (r->state != SOCK_REQ_MOVING)
			continue;
		if ((int32_t)(out - r->seq) <= 0 ||
		    atomic_load_explicit(&r->pieces_left, memory_order_acquire) > 0)
			return r;
	}
	return NULL;
}

static void fail_unread(struct sock_comm *c, struct rcmoe_treq *r)
{
	bool hdr_out =
		(int32_t)(atomic_load_explicit(&c->hdr_seq, memory_order_relaxed) - r->seq) > 0;
	size_t sent = r->inline_payload
			      ? (hdr_out ? r->len : 0)
			      : atomic_load_explicit(&r->bytes_done, memory_order_relaxed);
	sock_comm_fail(c, RCMOE_ERR_REMOTE,
		       "no progress for %lld s (RCMOE_SOCKET_TIMEOUT) with %zu of %zu bytes of "
		       "message %u sent, and no sign of life from the receiver: it is stopped or "
		       "hung, or the network is down",
		       (long long)sock_global.params.socket_timeout, sent, r->len, r->seq);
}

/* Called by each send test: a send that stopped moving is fine as long as its receiver beats
 * (it is only late to read it); without either for the timeout, the receiver is gone. */
static void send_check_live(struct sock_comm *c)
{
	struct sock_live *lv = &c->live;
	uint64_t now = sock_now_ns();
	if (now - lv->call_ns > ask_after_ns()) {
		live_restart(c, now); /* we were not looking: see recv_check_live */
		return;
	}
	lv->call_ns = now;
	uint64_t seen = send_progress(c);
	if (seen != lv->seen) {
		lv->seen = seen;
		lv->ev_ns = now;
		return;
	}
	struct rcmoe_treq *r;
	if (now - lv->ev_ns > timeout_ns() && (r = oldest_unsent(c)) != NULL)
		fail_unread(c, r);
}

/* ---- the ops ---- */

rcmoe_status_t sock_isend(struct rcmoe_tsend *comm, const void *buf, size_t len,
			  struct rcmoe_tmr *mr, int tag, uint32_t flags, struct rcmoe_treq **req)
{
	(void)mr; /* TCP needs no registration (ops.c) */
	struct sock_comm *c = sock_send_comm(comm);
	if (!c || !req || (len && !buf))
		return RCMOE_ERR_INVALID;
	*req = NULL;
	int err = atomic_load_explicit(&c->error, memory_order_acquire);
	if (err != RCMOE_OK)
		return (rcmoe_status_t)err;
	/* A wait starts: the receiver is judged from now on (see sock_irecv). */
	bool was_waiting = oldest_unsent(c) != NULL;
	struct rcmoe_treq *r = alloc_req(c);
	if (!r)
		return RCMOE_OK;
	if (!was_waiting)
		live_restart(c, sock_now_ns());
	r->buf = (uint8_t *)(uintptr_t)buf; /* only read from */
	r->len = len;
	r->tag = tag;
	r->flags = flags;
	/* A message that would be one piece rides on the control socket: it loses no
	 * parallelism and needs no worker wakeup on either side. */
	r->inline_payload = len <= c->min_chunk && len <= SOCK_INLINE_MAX;
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC,
				  .seq = r->seq,
				  .tag = tag,
				  .flags = flags,
				  .len = len,
				  .wire_flags = r->inline_payload ? SOCK_WIRE_INLINE : 0 };
	sock_hdr_encode(&h, r->hdr);
	if (r->inline_payload)
		r->state = SOCK_REQ_MOVING;
	else
		queue_pieces(c, r);
	/* From here lane 0's worker may write the header (and read the request) too. */
	atomic_store_explicit(&c->hdr_end, c->head, memory_order_release);
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
	/* A wait starts: the sender is judged from now on, not by how quiet the connection was
	 * while nobody waited (it sends nothing then). */
	bool was_waiting = oldest_waiting(c) != NULL;
	struct rcmoe_treq *r = alloc_req(c);
	if (!r)
		return RCMOE_OK;
	if (!was_waiting)
		live_restart(c, sock_now_ns());
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
		if (!atomic_load_explicit(&c->failing, memory_order_relaxed))
			send_check_live(c);
		header_done = (int32_t)(atomic_load_explicit(&c->hdr_seq, memory_order_acquire) -
					req->seq) > 0;
	} else {
		recv_headers(c);
		if (!atomic_load_explicit(&c->failing, memory_order_relaxed))
			recv_check_live(c);
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
	/* The comm failed. Report it only once no worker can touch this request's
	 * buffer any more (they are woken and let go within microseconds). */
	if (atomic_load_explicit(&c->quiesced, memory_order_acquire) < c->nlanes)
		return RCMOE_OK;
	st = req->status != RCMOE_OK ? req->status : (rcmoe_status_t)err;
	release_req(c, req);
	return st;
}
