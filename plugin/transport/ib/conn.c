/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connection setup over the side channel: listen (a TCP socket and a handle carrying its
 * address and a random secret, as the socket transport's), connect and accept (non-blocking
 * state machines, called again until they give a comm).
 *
 *   connector                                   listener
 *   TCP connect; CQ, QPs (INIT), FIFO; hello ->
 *                                               check magic, version and secret (else WARN,
 *                                               close: nothing was created for it); CQ, QPs,
 *                                               entries; QPs to RTS; receive WRs posted
 *                                            <- reply (its QPs, GID, LID, MTU)
 *   QPs to RTR/RTS; ready byte             ->
 *   connect returns the send comm               accept returns the receive comm
 *
 * The receiver writes its first clear-to-send entry only after accept returned, so only after
 * the sender's QPs are ready. Afterwards the side channel stays open and silent: its EOF tells
 * either side that the other is gone (data.c).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rcmoe/log.h"
#include "transport/ib/ib.h"

#define IB_MAX_PENDING 64 /* sockets a listener holds before they authenticate */

struct ib_pending {
	struct ib_pending *next;
	int fd;
	char peer[SOCK_ADDR_STRLEN];
	uint64_t deadline_ns;
	uint8_t hello[IB_HELLO_SIZE];
	size_t hello_off;
	struct ib_comm *comm; /* once the hello was accepted */
	uint8_t reply[IB_HELLO_SIZE];
	size_t reply_off;
};

struct ib_listen {
	int fd;
	int dev;
	union sock_addr addr;
	char addr_str[SOCK_ADDR_STRLEN];
	uint64_t secret;
	struct ib_pending *pending;
	unsigned npending;
};

struct ib_connecting {
	struct ib_connecting *next;
	struct ib_handle h;
	int dev;
	char peer[SOCK_ADDR_STRLEN];
	uint64_t deadline_ns;
	int fd;
	bool connected;
	struct ib_comm *comm; /* its QPs and FIFO, from the first call on */
	uint8_t hello[IB_HELLO_SIZE];
	size_t hello_off;
	uint8_t reply[IB_HELLO_SIZE];
	size_t reply_off;
	uint8_t ready;
	size_t ready_off;
};

static pthread_mutex_t connecting_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ib_connecting *connecting;

void ib_comm_fail(struct ib_comm *c, rcmoe_status_t st, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	if (c->error != RCMOE_OK)
		return;
	c->error = st;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	RCMOE_WARN("IB transport: connection %s %s failed: %s", c->is_send ? "to" : "from", c->peer,
		   why);
	/* A QP in the error state takes no more writes: once the requests report the failure,
	 * the peer's HCA can no longer place bytes in buffers NCCL may free or reuse. */
	for (int i = 0; i < c->nqps; i++) {
		struct rcmoe_ibv_qp_attr a = { .qp_state = RCMOE_IBV_QPS_ERR };
		if (c->qp[i])
			(void)ib_verbs.modify_qp(c->qp[i], &a, RCMOE_IBV_QP_STATE);
	}
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR); /* the peer sees the side channel close */
}

static struct ib_comm *comm_new(bool is_send, int dev, int nqps, const char *peer)
{
	struct ib_comm *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->is_send = is_send;
	c->dev = &ib_global.dev[dev];
	c->nqps = nqps;
	c->fd = -1;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	return c;
}

/* ---- listen ---- */

rcmoe_status_t ib_listen(int dev, void *handle, struct rcmoe_tlisten **out)
{
	rcmoe_status_t st;
	socklen_t alen;
	int err;

	RCMOE_CHECK(ib_check_init());
	if (dev < 0 || dev >= ib_global.ndev || !handle || !out)
		return RCMOE_ERR_INVALID;
	*out = NULL;
	struct ib_listen *l = calloc(1, sizeof(*l));
	if (!l)
		return RCMOE_ERR_NOMEM;
	l->dev = dev;
	RCMOE_CHECK_GOTO(sock_random64(&l->secret), st, free_listen);
	l->addr = ib_global.side_addr;
	l->fd = socket(l->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		err = errno;
		RCMOE_WARN("IB transport: socket() for the side channel failed: %s", strerror(err));
		st = rcmoe_status_from_errno(err);
		goto free_listen;
	}
	alen = sizeof(l->addr);
	if (bind(l->fd, &l->addr.sa, sock_addr_len(&l->addr)) != 0 || listen(l->fd, 256) != 0 ||
	    getsockname(l->fd, &l->addr.sa, &alen) != 0) {
		err = errno;
		RCMOE_WARN("IB transport: cannot listen for side channels: %s", strerror(err));
		st = rcmoe_status_from_errno(err);
		goto close_socket;
	}
	sock_addr_str(&l->addr, l->addr_str, sizeof(l->addr_str));
	struct ib_handle h = { .version = IB_PROTO_VERSION, .addr = l->addr, .secret = l->secret };
	memset(handle, 0, RCMOE_TRANSPORT_HANDLE_SIZE);
	ib_handle_encode(&h, handle);
	RCMOE_INFO(NCCL_NET, "IB transport: listening on %s for device %d", l->addr_str, dev);
	*out = IB_TO(struct rcmoe_tlisten, l);
	return RCMOE_OK;

close_socket:
	close(l->fd);
free_listen:
	free(l);
	return st;
}

static void pending_drop(struct ib_listen *l, struct ib_pending **pp)
{
	struct ib_pending *p = *pp;
	*pp = p->next;
	l->npending--;
	if (p->comm)
		ib_comm_destroy(p->comm); /* closes the fd too */
	else
		close(p->fd);
	free(p);
}

rcmoe_status_t ib_close_listen(struct rcmoe_tlisten *tl)
{
	struct ib_listen *l = IB_TO(struct ib_listen, tl);
	if (!l)
		return RCMOE_OK;
	while (l->pending)
		pending_drop(l, &l->pending);
	close(l->fd);
	free(l);
	return RCMOE_OK;
}

/* ---- accept ---- */

static void take_new_sockets(struct ib_listen *l)
{
	for (;;) {
		union sock_addr a;
		socklen_t alen = sizeof(a);
		int fd = accept4(l->fd, &a.sa, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN, or nothing this call can fix: the next call retries */
		struct ib_pending *p = calloc(1, sizeof(*p));
		if (!p || l->npending >= IB_MAX_PENDING) {
			free(p);
			close(fd);
			RCMOE_WARN("IB transport: refused a side channel: %u are already waiting",
				   l->npending);
			continue;
		}
		p->fd = fd;
		sock_addr_str(&a, p->peer, sizeof(p->peer));
		p->deadline_ns =
			sock_now_ns() +
			(uint64_t)ib_global.params.socket_handshake_timeout * 1000000000ull;
		p->next = l->pending;
		l->pending = p;
		l->npending++;
	}
}

/* A complete hello: the peer's QPs and FIFO; creates and connects the receive comm. */
static rcmoe_status_t take_hello(struct ib_listen *l, struct ib_pending *p)
{
	struct ib_hello h, reply;
	ib_hello_decode(p->hello, &h);
	if (h.magic != IB_HELLO_MAGIC || h.version != IB_PROTO_VERSION) {
		RCMOE_WARN("IB transport: refused a side channel from %s: not an rcmoe IB hello of "
			   "version %u",
			   p->peer, IB_PROTO_VERSION);
		return RCMOE_ERR_MALFORMED;
	}
	if (h.secret != l->secret) {
		RCMOE_WARN("IB transport: refused a side channel from %s: wrong secret", p->peer);
		return RCMOE_ERR_REMOTE;
	}
	if (h.nqps < 1 || h.nqps > IB_MAX_QPS) {
		RCMOE_WARN("IB transport: refused a side channel from %s: %u QPs", p->peer, h.nqps);
		return RCMOE_ERR_MALFORMED;
	}
	p->comm = comm_new(false, l->dev, (int)h.nqps, p->peer);
	if (!p->comm)
		return RCMOE_ERR_NOMEM;
	p->comm->fd = p->fd;
	RCMOE_CHECK(ib_ep_create(p->comm));
	RCMOE_CHECK(ib_ep_connect(p->comm, &h));
	ib_ep_hello(p->comm, IB_REPLY_MAGIC, 0, &reply);
	ib_hello_encode(&reply, p->reply);
	return RCMOE_OK;
}

/* Move one pending socket on; *ready when its comm is connected. An error drops it. */
static rcmoe_status_t pending_step(struct ib_listen *l, struct ib_pending *p, bool *ready)
{
	enum sock_io_result r;
	*ready = false;
	if (!p->comm) {
		r = sock_io(p->fd, false, p->hello, IB_HELLO_SIZE, &p->hello_off);
		if (r == SOCK_IO_AGAIN)
			return RCMOE_OK;
		if (r != SOCK_IO_DONE)
			return RCMOE_ERR_REMOTE;
		RCMOE_CHECK(take_hello(l, p));
	}
	if (p->reply_off < IB_HELLO_SIZE) {
		r = sock_io(p->fd, true, p->reply, IB_HELLO_SIZE, &p->reply_off);
		if (r == SOCK_IO_AGAIN)
			return RCMOE_OK;
		if (r != SOCK_IO_DONE)
			return RCMOE_ERR_REMOTE;
	}
	uint8_t byte;
	size_t off = 0;
	r = sock_io(p->fd, false, &byte, 1, &off);
	if (r == SOCK_IO_AGAIN)
		return RCMOE_OK;
	if (r != SOCK_IO_DONE || byte != IB_READY_BYTE)
		return RCMOE_ERR_REMOTE;
	*ready = true;
	return RCMOE_OK;
}

rcmoe_status_t ib_accept(struct rcmoe_tlisten *tl, struct rcmoe_trecv **out)
{
	struct ib_listen *l = IB_TO(struct ib_listen, tl);
	RCMOE_CHECK(ib_check_init());
	if (!l || !out)
		return RCMOE_ERR_INVALID;
	*out = NULL;
	take_new_sockets(l);
	uint64_t now = sock_now_ns();
	for (struct ib_pending **pp = &l->pending; *pp;) {
		struct ib_pending *p = *pp;
		bool ready;
		rcmoe_status_t st = pending_step(l, p, &ready);
		if (st == RCMOE_OK && ready) {
			struct ib_comm *c = p->comm;
			*pp = p->next;
			l->npending--;
			free(p);
			c->next_side_ns = 0;
			RCMOE_INFO(NCCL_NET, "IB transport: accepted %s on device %d (%d QPs)",
				   c->peer, l->dev, c->nqps);
			*out = IB_TO(struct rcmoe_trecv, c);
			return RCMOE_OK;
		}
		if (st == RCMOE_OK && now >= p->deadline_ns) {
			RCMOE_WARN("IB transport: refused a side channel from %s: no handshake "
				   "within %lld s",
				   p->peer, (long long)ib_global.params.socket_handshake_timeout);
			st = RCMOE_ERR_REMOTE;
		}
		/* A peer's failure never fails accept: NCCL would end the job. */
		if (st != RCMOE_OK)
			pending_drop(l, pp);
		else
			pp = &p->next;
	}
	return RCMOE_OK;
}

/* ---- connect ---- */

static bool same_target(const struct ib_connecting *e, const struct ib_handle *h, int dev)
{
	return e->dev == dev && e->h.secret == h->secret &&
	       sock_addr_len(&e->h.addr) == sock_addr_len(&h->addr) &&
	       !memcmp(&e->h.addr, &h->addr, sock_addr_len(&h->addr));
}

static void attempt_free(struct ib_connecting *e)
{
	if (e->comm)
		ib_comm_destroy(e->comm); /* closes the fd */
	else if (e->fd >= 0)
		close(e->fd);
	free(e);
}

static rcmoe_status_t attempt_start(int dev, const struct ib_handle *h, struct ib_connecting **out)
{
	rcmoe_status_t st;
	struct ib_connecting *e = calloc(1, sizeof(*e));
	if (!e)
		return RCMOE_ERR_NOMEM;
	e->h = *h;
	e->dev = dev;
	e->ready = IB_READY_BYTE;
	sock_addr_str(&h->addr, e->peer, sizeof(e->peer));
	e->deadline_ns = sock_now_ns() + (uint64_t)ib_global.params.socket_timeout * 1000000000ull;
	e->fd = socket(h->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (e->fd < 0) {
		int err = errno;
		RCMOE_WARN("IB transport: socket() to connect to %s failed: %s", e->peer,
			   strerror(err));
		free(e);
		return rcmoe_status_from_errno(err);
	}
	RCMOE_CHECK_GOTO(sock_set_options(e->fd, (int)ib_global.params.socket_timeout, e->peer), st,
			 free_attempt);
	if (connect(e->fd, &h->addr.sa, sock_addr_len(&h->addr)) == 0) {
		e->connected = true;
	} else if (errno != EINPROGRESS && errno != EINTR) {
		int err = errno;
		RCMOE_WARN("IB transport: cannot connect to %s: %s", e->peer, strerror(err));
		st = rcmoe_status_from_errno(err);
		goto free_attempt;
	}
	int nqps = (int)ib_global.params.ib_qps_per_conn;
	e->comm = comm_new(true, dev, nqps, e->peer);
	if (!e->comm) {
		st = RCMOE_ERR_NOMEM;
		goto free_attempt;
	}
	e->comm->fd = e->fd;
	RCMOE_CHECK_GOTO(ib_ep_create(e->comm), st, free_attempt);
	struct ib_hello hello;
	ib_ep_hello(e->comm, IB_HELLO_MAGIC, h->secret, &hello);
	ib_hello_encode(&hello, e->hello);
	*out = e;
	return RCMOE_OK;

free_attempt:
	attempt_free(e);
	return st;
}

/* Move the attempt on; *done once the send comm is ready. */
static rcmoe_status_t attempt_step(struct ib_connecting *e, bool *done)
{
	enum sock_io_result r;
	*done = false;
	if (!e->connected) {
		struct pollfd pfd = { .fd = e->fd, .events = POLLOUT };
		if (poll(&pfd, 1, 0) <= 0)
			goto check_deadline;
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err) {
			RCMOE_WARN("IB transport: cannot connect to %s: %s", e->peer,
				   strerror(err));
			return rcmoe_status_from_errno(err);
		}
		e->connected = true;
	}
	r = sock_io(e->fd, true, e->hello, IB_HELLO_SIZE, &e->hello_off);
	if (r == SOCK_IO_AGAIN)
		goto check_deadline;
	if (r != SOCK_IO_DONE)
		goto closed;
	if (e->reply_off < IB_HELLO_SIZE) {
		r = sock_io(e->fd, false, e->reply, IB_HELLO_SIZE, &e->reply_off);
		if (r == SOCK_IO_AGAIN)
			goto check_deadline;
		if (r != SOCK_IO_DONE)
			goto closed;
		struct ib_hello reply;
		ib_hello_decode(e->reply, &reply);
		if (reply.magic != IB_REPLY_MAGIC || reply.version != IB_PROTO_VERSION ||
		    reply.nqps != (uint32_t)e->comm->nqps) {
			RCMOE_WARN("IB transport: %s answered with a malformed reply", e->peer);
			return RCMOE_ERR_MALFORMED;
		}
		RCMOE_CHECK(ib_ep_connect(e->comm, &reply));
	}
	r = sock_io(e->fd, true, &e->ready, 1, &e->ready_off);
	if (r == SOCK_IO_AGAIN)
		goto check_deadline;
	if (r != SOCK_IO_DONE)
		goto closed;
	*done = true;
	return RCMOE_OK;

closed:
	/* The listener closes a side channel it refuses (a wrong secret, for instance). */
	RCMOE_WARN("IB transport: %s closed the side channel during the handshake", e->peer);
	return RCMOE_ERR_REMOTE;
check_deadline:
	if (sock_now_ns() >= e->deadline_ns) {
		RCMOE_WARN("IB transport: connecting to %s timed out after %lld s", e->peer,
			   (long long)ib_global.params.socket_timeout);
		return RCMOE_ERR_REMOTE;
	}
	return RCMOE_OK;
}

static void unlink_attempt(struct ib_connecting *e)
{
	for (struct ib_connecting **pp = &connecting; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			return;
		}
	}
}

rcmoe_status_t ib_connect(int dev, const void *handle, struct rcmoe_tsend **out)
{
	struct ib_handle h;
	struct ib_connecting *e;
	rcmoe_status_t st;
	bool done = false;

	RCMOE_CHECK(ib_check_init());
	if (dev < 0 || dev >= ib_global.ndev || !handle || !out)
		return RCMOE_ERR_INVALID;
	*out = NULL;
	if (ib_handle_decode(handle, &h) != RCMOE_OK || h.version != IB_PROTO_VERSION) {
		RCMOE_WARN("IB transport: connect: the handle is not an IB transport handle of "
			   "version %u",
			   IB_PROTO_VERSION);
		return RCMOE_ERR_INVALID;
	}
	pthread_mutex_lock(&connecting_lock);
	for (e = connecting; e; e = e->next)
		if (same_target(e, &h, dev))
			break;
	if (!e) {
		RCMOE_CHECK_GOTO(attempt_start(dev, &h, &e), st, unlock);
		e->next = connecting;
		connecting = e;
	}
	st = attempt_step(e, &done);
	if (st != RCMOE_OK || done)
		unlink_attempt(e);
	pthread_mutex_unlock(&connecting_lock);
	if (st != RCMOE_OK) {
		attempt_free(e);
		return st;
	}
	if (done) {
		struct ib_comm *c = e->comm;
		e->comm = NULL;
		free(e);
		RCMOE_INFO(NCCL_NET, "IB transport: connected to %s from device %d (%d QPs)",
			   c->peer, dev, c->nqps);
		*out = IB_TO(struct rcmoe_tsend, c);
	}
	return RCMOE_OK;

unlock:
	pthread_mutex_unlock(&connecting_lock);
	return st;
}
