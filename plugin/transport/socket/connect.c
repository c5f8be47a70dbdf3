/* SPDX-License-Identifier: Apache-2.0 */
/*
 * connect: open the control socket and the data streams to a listener with non-blocking
 * connects, send each one's hello, and return the send comm once every hello is out.
 *
 * transport.h hands connect a const handle, so the state between calls cannot live in it (as
 * NCCL's own transports keep it): it lives in a process-wide list keyed by the handle's
 * address and secret, which are unique per listen. An attempt is removed from the list when it
 * completes or fails.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rcmoe/log.h"
#include "transport/socket/socket.h"

struct sock_conn_socket {
	int fd;
	bool connected;
	size_t sent;
	uint8_t hello[SOCK_HELLO_SIZE];
};

struct sock_connecting {
	struct sock_connecting *next;
	struct sock_handle h;
	char peer[SOCK_ADDR_STRLEN];
	int nsock; /* control + data streams */
	uint64_t deadline_ns;
	struct sock_conn_socket s[SOCK_MAX_STREAMS + 1];
};

static pthread_mutex_t connecting_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sock_connecting *connecting;

static bool same_target(const struct sock_handle *a, const struct sock_handle *b)
{
	if (a->secret != b->secret || a->addr.sa.sa_family != b->addr.sa.sa_family)
		return false;
	if (a->addr.sa.sa_family == AF_INET6)
		return a->addr.in6.sin6_port == b->addr.in6.sin6_port &&
		       !memcmp(&a->addr.in6.sin6_addr, &b->addr.in6.sin6_addr, 16);
	return a->addr.in.sin_port == b->addr.in.sin_port &&
	       a->addr.in.sin_addr.s_addr == b->addr.in.sin_addr.s_addr;
}

static void close_sockets(struct sock_connecting *e)
{
	for (int i = 0; i < e->nsock; i++)
		if (e->s[i].fd >= 0)
			close(e->s[i].fd);
}

/* Start the non-blocking connects of one attempt. */
static rcmoe_status_t start(const struct sock_handle *h, struct sock_connecting **out)
{
	const struct rcmoe_params *p = &sock_global.params;
	rcmoe_status_t st;
	struct sock_hello hello = {
		.magic = SOCK_HELLO_MAGIC,
		.version = SOCK_PROTO_VERSION,
		.count = (uint16_t)p->socket_nstreams,
		.secret = h->secret,
		.min_chunk = (uint32_t)p->socket_min_chunk,
	};
	struct sock_connecting *e = calloc(1, sizeof(*e));
	if (!e)
		return RCMOE_ERR_NOMEM;
	e->h = *h;
	sock_addr_str(&h->addr, e->peer, sizeof(e->peer));
	e->nsock = (int)p->socket_nstreams + 1;
	e->deadline_ns = sock_now_ns() + (uint64_t)p->socket_timeout * 1000000000ull;
	for (int i = 0; i < e->nsock; i++)
		e->s[i].fd = -1;
	RCMOE_CHECK_GOTO(sock_random64(&hello.nonce), st, free_attempt);

	for (int i = 0; i < e->nsock; i++) {
		struct sock_conn_socket *s = &e->s[i];
		s->fd = socket(h->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (s->fd < 0) {
			int err = errno;
			RCMOE_WARN("socket() to connect to %s failed: %s", e->peer, strerror(err));
			st = rcmoe_status_from_errno(err);
			goto close_sockets;
		}
		RCMOE_CHECK_GOTO(sock_set_options(s->fd, (int)p->socket_timeout, e->peer), st,
				 close_sockets);
		if (connect(s->fd, &h->addr.sa, sock_addr_len(&h->addr)) == 0) {
			s->connected = true;
		} else if (errno != EINPROGRESS && errno != EINTR) {
			int err = errno;
			RCMOE_WARN("cannot connect to %s: %s", e->peer, strerror(err));
			st = rcmoe_status_from_errno(err);
			goto close_sockets;
		}
		hello.index = (uint16_t)i;
		sock_hello_encode(&hello, s->hello);
	}
	*out = e;
	return RCMOE_OK;

close_sockets:
	close_sockets(e);
free_attempt:
	free(e);
	return st;
}

/* Check the pending connects without waiting; send hellos on the connected sockets. *done once
 * every hello is out. */
static rcmoe_status_t progress(struct sock_connecting *e, bool *done)
{
	struct pollfd pfd[SOCK_MAX_STREAMS + 1];
	int idx[SOCK_MAX_STREAMS + 1];
	int n = 0;
	*done = false;
	for (int i = 0; i < e->nsock; i++) {
		if (!e->s[i].connected) {
			pfd[n] = (struct pollfd){ .fd = e->s[i].fd, .events = POLLOUT };
			idx[n++] = i;
		}
	}
	if (n > 0 && poll(pfd, (nfds_t)n, 0) < 0 && errno != EINTR) {
		int err = errno;
		RCMOE_WARN("poll while connecting to %s failed: %s", e->peer, strerror(err));
		return rcmoe_status_from_errno(err);
	}
	for (int k = 0; k < n; k++) {
		if (!pfd[k].revents)
			continue;
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(pfd[k].fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err) {
			RCMOE_WARN("cannot connect to %s: %s", e->peer, strerror(err));
			return rcmoe_status_from_errno(err);
		}
		e->s[idx[k]].connected = true;
	}

	bool all = true;
	for (int i = 0; i < e->nsock; i++) {
		struct sock_conn_socket *s = &e->s[i];
		if (!s->connected) {
			all = false;
			continue;
		}
		enum sock_io_result r = sock_io(s->fd, true, s->hello, SOCK_HELLO_SIZE, &s->sent);
		if (r == SOCK_IO_AGAIN) {
			all = false;
		} else if (r != SOCK_IO_DONE) {
			int err = errno;
			RCMOE_WARN("sending the hello to %s failed: %s", e->peer, strerror(err));
			return rcmoe_status_from_errno(err);
		}
	}
	if (!all && sock_now_ns() >= e->deadline_ns) {
		RCMOE_WARN("connecting to %s timed out after %lld s", e->peer,
			   (long long)sock_global.params.socket_timeout);
		return RCMOE_ERR_REMOTE;
	}
	*done = all;
	return RCMOE_OK;
}

static void unlink_attempt(struct sock_connecting *e)
{
	for (struct sock_connecting **pp = &connecting; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			return;
		}
	}
}

rcmoe_status_t sock_connect(int dev, const void *handle, struct rcmoe_tsend **out)
{
	struct sock_handle h;
	struct sock_connecting *e;
	struct sock_comm *c;
	rcmoe_status_t st;
	bool done;

	RCMOE_CHECK(sock_check_init());
	if (dev != 0 || !handle || !out)
		return RCMOE_ERR_INVALID;
	*out = NULL;
	if (sock_handle_decode(handle, &h) != RCMOE_OK || h.version != SOCK_PROTO_VERSION) {
		RCMOE_WARN("connect: the handle is not a socket transport handle of protocol "
			   "version %u",
			   SOCK_PROTO_VERSION);
		return RCMOE_ERR_INVALID;
	}

	pthread_mutex_lock(&connecting_lock);
	for (e = connecting; e; e = e->next)
		if (same_target(&e->h, &h))
			break;
	if (!e) {
		RCMOE_CHECK_GOTO(start(&h, &e), st, unlock);
		e->next = connecting;
		connecting = e;
	}
	RCMOE_CHECK_GOTO(progress(e, &done), st, drop_attempt);
	if (!done) {
		st = RCMOE_OK;
		goto unlock;
	}
	unlink_attempt(e);
	pthread_mutex_unlock(&connecting_lock);

	int fds[SOCK_MAX_STREAMS + 1];
	for (int i = 0; i < e->nsock; i++)
		fds[i] = e->s[i].fd;
	/* The comm takes the fds, also when it fails. */
	st = sock_comm_create(true, fds, e->nsock - 1, (size_t)sock_global.params.socket_min_chunk,
			      e->peer, &c);
	free(e);
	RCMOE_CHECK(st);
	RCMOE_INFO(NCCL_NET, "connected to %s (%d streams)", c->peer, c->nstreams);
	*out = (struct rcmoe_tsend *)(void *)c;
	return RCMOE_OK;

drop_attempt:
	unlink_attempt(e);
	close_sockets(e);
	free(e);
unlock:
	pthread_mutex_unlock(&connecting_lock);
	return st;
}
