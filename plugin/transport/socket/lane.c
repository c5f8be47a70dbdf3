/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lanes: a lane is the share of one comm's work that one worker of the pool (pool.c) does: the
 * comm's data streams s with s % nlanes == lane index, and for lane 0 the control socket's
 * heartbeat duties. A worker runs sock_lane_turn for each of its lanes, which moves the pieces
 * queued on the lane's streams directly between the user's buffer and the socket without
 * blocking and says which descriptors to wait for; one poll() then waits for all of the
 * worker's lanes at once.
 *
 * Pieces go out and come in, per stream, in the order the caller queued them (the message
 * order), on both sides; that is what keeps the two ends of a stream in step.
 *
 * Lane 0 also keeps the heartbeats going (data.c, proto.h) whether or not NCCL's proxy thread
 * calls in, so that a peer that is merely busy or late is never taken for a stopped one: on a
 * send comm it reads the receiver's pings and beats and answers the pings; on a receive comm it
 * beats every quarter of RCMOE_SOCKET_TIMEOUT while the connection holds unread bytes.
 *
 * Every function here runs on the lane's worker with the worker's lock held, so a lane is never
 * touched by two workers, nor after sock_pool_detach.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "rcmoe/log.h"
#include "transport/socket/socket.h"

/* TURN_BUSY: the stream used its share of this round and has more to move at once. */
enum turn { TURN_IDLE, TURN_WAIT, TURN_BUSY, TURN_FAILED };

/* Bytes one stream may move in one round of its worker before the worker turns to its other
 * lanes: a fast peer must not let one large message starve the other connections the worker
 * serves. Large against the syscall cost, small against a message. */
#define ROUND_SHARE (4u << 20)

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
static enum sock_io_result discard(struct sock_lane *lane, struct sock_stream *s, size_t len)
{
	while (s->off < len) {
		size_t chunk = len - s->off < SOCK_SCRATCH_SIZE ? len - s->off : SOCK_SCRATCH_SIZE;
		size_t got = 0;
		enum sock_io_result r = sock_io(s->fd, false, lane->scratch, chunk, &got);
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

/* Move the stream's queued pieces until it is empty, would block or used its round's share. */
static enum turn stream_turn(struct sock_lane *lane, struct sock_stream *s, short *events)
{
	struct sock_comm *c = lane->comm;
	struct sock_piece *p;
	size_t moved = 0;
	while ((p = queue_front(s)) != NULL) {
		if (moved >= ROUND_SHARE)
			return TURN_BUSY;
		size_t before = s->off;
		size_t end = p->len - s->off > STREAM_STEP ? s->off + STREAM_STEP : p->len;
		enum sock_io_result r;
		if (p->buf)
			r = sock_io(s->fd, c->is_send, p->buf, end, &s->off);
		else
			r = discard(lane, s, end);
		if (s->off > before) {
			moved += s->off - before;
			atomic_fetch_add_explicit(&p->req->bytes_done, s->off - before,
						  memory_order_relaxed);
			/* Only the lane's worker writes it: no read-modify-write needed. */
			atomic_store_explicit(
				&lane->moved,
				atomic_load_explicit(&lane->moved, memory_order_relaxed) + s->off -
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

/* The control socket's events lane 0 waits for: the receiver's heartbeats (send comms; the
 * caller reads a receive comm's), and room to write a frame that did not fit. 0: none. */
static short ctrl_events(struct sock_comm *c, bool want_out)
{
	bool in = c->is_send && !c->hb.in_closed;
	return (short)((in ? POLLIN : 0) | (want_out ? POLLOUT : 0));
}

/* Receive comms, lane 0: every sock_beat_ns, beat if bytes wait unread. Returns the poll
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

/* Room for one more descriptor to wait for; without room (the worker could not grow its set)
 * the caller looks again in a millisecond instead. */
static void wait_for(struct sock_pollset *ps, int *timeout_ms, struct sock_lane *lane, int fd,
		     short events, bool ctrl)
{
	if (ps->n >= ps->cap) {
		if (*timeout_ms < 0 || *timeout_ms > 1)
			*timeout_ms = 1;
		return;
	}
	ps->pfd[ps->n] = (struct pollfd){ .fd = fd, .events = events };
	ps->owner[ps->n] = lane;
	ps->is_ctrl[ps->n] = ctrl;
	ps->n++;
}

static void lower_timeout(int *timeout_ms, int t)
{
	if (*timeout_ms < 0 || t < *timeout_ms)
		*timeout_ms = t;
}

void sock_lane_turn(struct sock_lane *lane, struct sock_pollset *ps, int *timeout_ms)
{
	struct sock_comm *c = lane->comm;
	lane->idle = 0;
	if (atomic_load_explicit(&c->stop, memory_order_acquire) || lane->quiesced)
		return; /* closing, or failed: sock_pool_detach comes next */
	if (atomic_load_explicit(&c->error, memory_order_acquire) != RCMOE_OK) {
		/* Promise never to touch a request again: the caller reports the failure
		 * once every lane of the comm has (data.c, sock_test). */
		lane->quiesced = true;
		atomic_fetch_add_explicit(&c->quiesced, 1, memory_order_release);
		return;
	}
	if (!c->is_send && lane->index == 0)
		lower_timeout(timeout_ms, beat_turn(c, &lane->next_beat_ns, &lane->want_out));
	if (lane->index == 0 && ctrl_events(c, lane->want_out))
		wait_for(ps, timeout_ms, lane, c->ctrl_fd, ctrl_events(c, lane->want_out), true);
	for (int s = lane->index; s < c->nstreams; s += c->nlanes) {
		short ev = 0;
		switch (stream_turn(lane, &c->streams[s], &ev)) {
		case TURN_IDLE: lane->idle |= 1ull << s; break;
		case TURN_WAIT: wait_for(ps, timeout_ms, lane, c->streams[s].fd, ev, false); break;
		case TURN_BUSY:
		case TURN_FAILED: /* the next round moves on, or sees the error */
			lower_timeout(timeout_ms, 0);
			break;
		}
	}
}

bool sock_lane_has_work(struct sock_lane *lane)
{
	struct sock_comm *c = lane->comm;
	if (atomic_load_explicit(&c->stop, memory_order_acquire) || lane->quiesced)
		return false;
	if (atomic_load_explicit(&c->error, memory_order_acquire) != RCMOE_OK)
		return true; /* to quiesce */
	for (int s = lane->index; s < c->nstreams; s += c->nlanes)
		if ((lane->idle & (1ull << s)) && !queue_empty_now(&c->streams[s]))
			return true;
	return false;
}

void sock_lane_ctrl_ready(struct sock_lane *lane)
{
	struct sock_comm *c = lane->comm;
	if (atomic_load_explicit(&c->stop, memory_order_acquire) || lane->quiesced)
		return;
	if (c->is_send)
		sock_hb_read(c);
	sock_ctrl_flush(c, &lane->want_out);
}
