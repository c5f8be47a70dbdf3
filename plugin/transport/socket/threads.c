/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helper threads: each owns some data streams of one comm and moves the pieces queued on them,
 * directly between the user's buffer and the socket. Sockets are non-blocking and one poll()
 * waits for all of a thread's streams at once, so a thread with several streams keeps them all
 * busy; its eventfd in the same poll brings new work, a failure or close.
 *
 * Pieces go out and come in, per stream, in the order the caller queued them (the message
 * order), on both sides; that is what keeps the two ends of a stream in step.
 *
 * Thread 0 also keeps the heartbeats going (data.c, proto.h) whether or not NCCL's proxy thread
 * calls in, so that a peer that is merely busy or late is never taken for a stopped one: on a
 * send comm it reads the receiver's pings and beats and answers the pings; on a receive comm it
 * beats every quarter of RCMOE_SOCKET_TIMEOUT while the connection holds unread bytes.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>

#include "rcmoe/log.h"
#include "transport/socket/socket.h"

enum turn { TURN_IDLE, TURN_WAIT, TURN_FAILED };

static struct sock_piece *queue_front(struct sock_stream *s)
{
	uint32_t head = atomic_load_explicit(&s->head, memory_order_relaxed); /* ours */
	uint32_t tail = atomic_load_explicit(&s->tail, memory_order_acquire);
	return head == tail ? NULL : &s->q[head % SOCK_MAX_REQS];
}

static bool queue_empty_now(struct sock_stream *s)
{
	/* seq_cst: pairs with the caller's publication of `tail` before it reads `sleeping`. */
	return atomic_load(&s->head) == atomic_load(&s->tail);
}

/* Receive a piece whose message had no destination (the placement failed): the bytes must still
 * leave the stream so the next message starts where it should. */
static enum sock_io_result discard(struct sock_thread *th, struct sock_stream *s, size_t len)
{
	while (s->off < len) {
		size_t chunk = len - s->off < SOCK_SCRATCH_SIZE ? len - s->off : SOCK_SCRATCH_SIZE;
		size_t got = 0;
		enum sock_io_result r = sock_io(s->fd, false, th->scratch, chunk, &got);
		s->off += got;
		if (r != SOCK_IO_DONE)
			return r;
	}
	return SOCK_IO_DONE;
}

static void report(struct sock_comm *c, struct sock_stream *s, struct sock_piece *p,
		   enum sock_io_result r, int err)
{
	struct rcmoe_treq *req = p->req;
	size_t done = atomic_load_explicit(&req->bytes_done, memory_order_relaxed);
	if (r == SOCK_IO_EOF) {
		sock_comm_fail(c, RCMOE_ERR_REMOTE,
			       "peer closed the connection after %zu of %zu bytes of message %u "
			       "(data stream %d)",
			       done, req->len, req->seq, s->index);
		return;
	}
	rcmoe_status_t st = rcmoe_status_from_errno(err);
	sock_comm_fail(c, st == RCMOE_ERR_SYSTEM ? st : RCMOE_ERR_REMOTE,
		       "%s on data stream %d after %zu of %zu bytes of message %u%s", strerror(err),
		       s->index, done, req->len, req->seq,
		       err == ETIMEDOUT ? " (the peer's host stopped answering TCP)" : "");
}

/* Bytes moved per call before the counters are updated: the side that is slower never sees
 * EAGAIN, and a piece may be large (a message / nstreams), so without a step the heartbeats'
 * progress counters (sock_live) could stand still for as long as a whole piece takes. */
#define STREAM_STEP (1u << 20)

/* Move the stream's queued pieces until it is empty or would block. */
static enum turn stream_turn(struct sock_thread *th, struct sock_stream *s, short *events)
{
	struct sock_comm *c = th->comm;
	struct sock_piece *p;
	while ((p = queue_front(s)) != NULL) {
		size_t before = s->off;
		size_t end = p->len - s->off > STREAM_STEP ? s->off + STREAM_STEP : p->len;
		enum sock_io_result r;
		if (p->buf)
			r = sock_io(s->fd, c->is_send, p->buf, end, &s->off);
		else
			r = discard(th, s, end);
		if (s->off > before) {
			atomic_fetch_add_explicit(&p->req->bytes_done, s->off - before,
						  memory_order_relaxed);
			/* Only this thread writes it: no read-modify-write needed. */
			atomic_store_explicit(
				&th->moved,
				atomic_load_explicit(&th->moved, memory_order_relaxed) + s->off -
					before,
				memory_order_relaxed);
		}
		if (r == SOCK_IO_AGAIN) {
			*events = c->is_send ? POLLOUT : POLLIN;
			return TURN_WAIT;
		}
		if (r != SOCK_IO_DONE) {
			report(c, s, p, r, errno);
			return TURN_FAILED;
		}
		if (s->off < p->len)
			continue; /* the next step of the same piece */
		/* Free the queue slot before counting the piece done: once the request is
		 * complete the caller may reuse both. */
		struct rcmoe_treq *req = p->req;
		s->off = 0;
		atomic_store_explicit(&s->head,
				      atomic_load_explicit(&s->head, memory_order_relaxed) + 1,
				      memory_order_release);
		atomic_fetch_sub_explicit(&req->pieces_left, 1, memory_order_release);
	}
	return TURN_IDLE;
}

/* After a failure: promise never to touch a request again, then wait for close. */
static void quiesce(struct sock_thread *th)
{
	struct sock_comm *c = th->comm;
	struct pollfd pfd = { .fd = th->efd, .events = POLLIN };
	atomic_fetch_add_explicit(&c->quiesced, 1, memory_order_release);
	while (!atomic_load_explicit(&c->stop, memory_order_acquire)) {
		eventfd_t v;
		poll(&pfd, 1, -1);
		eventfd_read(th->efd, &v);
	}
}

/* The control socket's events thread 0 waits for: the receiver's heartbeats (send comms; the
 * caller reads a receive comm's), and room to write a frame that did not fit. 0: none. */
static short ctrl_events(struct sock_comm *c, bool want_out)
{
	bool in = c->is_send && !c->hb.in_closed;
	return (short)((in ? POLLIN : 0) | (want_out ? POLLOUT : 0));
}

/* Receive comms, thread 0: every sock_beat_ns, beat if bytes wait unread. Returns the poll
 * timeout until the next look, in ms. */
static int beat_turn(struct sock_comm *c, uint64_t *next_ns, bool *want_out)
{
	uint64_t now = sock_now_ns();
	if (now >= *next_ns) {
		sock_beat_check(c);
		sock_ctrl_flush(c, want_out); /* also what the caller's ping left unwritten */
		*next_ns = now + sock_beat_ns();
	}
	return (int)((*next_ns - now + 999999) / 1000000);
}

void *sock_thread_main(void *arg)
{
	struct sock_thread *th = arg;
	struct sock_comm *c = th->comm;
	struct pollfd pfd[SOCK_MAX_STREAMS + 2];
	int idle[SOCK_MAX_STREAMS];
	bool watch_ctrl = th->index == 0;
	bool beats = !c->is_send && th->index == 0;
	bool want_out = false;
	uint64_t next_beat_ns = sock_now_ns() + sock_beat_ns();

	for (;;) {
		if (atomic_load_explicit(&c->stop, memory_order_acquire))
			break;
		if (atomic_load_explicit(&c->error, memory_order_acquire) != RCMOE_OK) {
			quiesce(th);
			break;
		}
		int npfd = 1, nidle = 0, ctrl = -1, timeout = -1;
		bool failed = false;
		if (beats)
			timeout = beat_turn(c, &next_beat_ns, &want_out);
		pfd[0] = (struct pollfd){ .fd = th->efd, .events = POLLIN };
		if (watch_ctrl && ctrl_events(c, want_out)) {
			ctrl = npfd;
			pfd[npfd++] = (struct pollfd){ .fd = c->ctrl_fd,
						       .events = ctrl_events(c, want_out) };
		}
		for (int s = th->index; s < c->nstreams; s += c->nthreads) {
			short ev = 0;
			switch (stream_turn(th, &c->streams[s], &ev)) {
			case TURN_IDLE: idle[nidle++] = s; break;
			case TURN_WAIT:
				pfd[npfd++] =
					(struct pollfd){ .fd = c->streams[s].fd, .events = ev };
				break;
			case TURN_FAILED: failed = true; break;
			}
		}
		if (failed)
			continue; /* the top of the loop sees the error */

		/* Announce the sleep, then look once more: a poster that queued work before
		 * seeing the flag is caught here, one that queued after it writes the eventfd. */
		atomic_store(&th->sleeping, 1);
		bool more = false;
		for (int i = 0; i < nidle && !more; i++)
			more = !queue_empty_now(&c->streams[idle[i]]);
		if (!more && poll(pfd, (nfds_t)npfd, timeout) < 0 && errno != EINTR) {
			int err = errno;
			sock_comm_fail(c, RCMOE_ERR_SYSTEM, "poll in a helper thread failed: %s",
				       strerror(err));
		}
		atomic_store(&th->sleeping, 0);
		if (ctrl >= 0 && pfd[ctrl].revents) {
			if (c->is_send)
				sock_hb_read(c);
			sock_ctrl_flush(c, &want_out);
		}
		if (pfd[0].revents & POLLIN) {
			eventfd_t v;
			eventfd_read(th->efd, &v);
		}
		pfd[0].revents = 0;
	}
	return NULL;
}
