/* SPDX-License-Identifier: Apache-2.0 */
/*
 * accept: take incoming sockets off the listener without blocking, read each one's hello, refuse
 * the ones that are not ours (wrong magic, version or secret, nonsense stream numbers, a hello
 * that does not arrive in time) with a WARN, and group the rest by the connect's nonce. A group
 * with its control socket and all its data streams becomes a receive comm.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rcmoe/log.h"
#include "transport/socket/socket.h"

#define SOCK_MIN_CHUNK_LO 4096u
#define SOCK_MIN_CHUNK_HI (1u << 30)

struct sock_pending {
	struct sock_pending *next;
	int fd;
	size_t got;
	uint8_t buf[SOCK_HELLO_SIZE];
	uint64_t deadline_ns;
	char peer[SOCK_ADDR_STRLEN];
};

struct sock_group {
	struct sock_group *next;
	uint64_t nonce;
	unsigned count; /* data streams */
	uint32_t min_chunk;
	unsigned have;
	uint64_t deadline_ns;
	char peer[SOCK_ADDR_STRLEN];
	int fds[SOCK_MAX_STREAMS + 1];
};

static uint64_t timeout_ns(void)
{
	return (uint64_t)sock_global.params.socket_timeout * 1000000000ull;
}

/* Take every connection waiting in the backlog. */
static rcmoe_status_t take_new(struct rcmoe_tlisten *l)
{
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return RCMOE_OK;
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			int err = errno;
			RCMOE_WARN("accept on %s failed: %s", l->addr_str, strerror(err));
			return rcmoe_status_from_errno(err);
		}
		struct sock_pending *p = calloc(1, sizeof(*p));
		if (!p) {
			close(fd);
			return RCMOE_ERR_NOMEM;
		}
		p->fd = fd;
		sock_peer_str(fd, p->peer, sizeof(p->peer));
		if (sock_set_options(fd, (int)sock_global.params.socket_timeout, p->peer) !=
		    RCMOE_OK) {
			/* Already warned; this one connection is lost, the listener keeps going. */
			close(fd);
			free(p);
			continue;
		}
		p->deadline_ns = sock_now_ns() + timeout_ns();
		p->next = l->pending;
		l->pending = p;
	}
}

/* Why `h` is not acceptable, or NULL. */
static const char *hello_problem(const struct rcmoe_tlisten *l, const struct sock_hello *h,
				 char *why, size_t size)
{
	if (h->magic != SOCK_HELLO_MAGIC) {
		snprintf(why, size, "bad magic 0x%016llx (not an rcmoe socket peer)",
			 (unsigned long long)h->magic);
	} else if (h->version != SOCK_PROTO_VERSION) {
		snprintf(why, size, "protocol version %u, this side speaks %u", h->version,
			 SOCK_PROTO_VERSION);
	} else if (h->secret != l->secret) {
		snprintf(why, size, "wrong secret (not made from this listener's handle)");
	} else if (h->count < 1 || h->count > SOCK_MAX_STREAMS) {
		snprintf(why, size, "stream count %u outside [1, %d]", h->count, SOCK_MAX_STREAMS);
	} else if (h->index > h->count) {
		snprintf(why, size, "stream index %u outside [0, %u]", h->index, h->count);
	} else if (h->min_chunk < SOCK_MIN_CHUNK_LO || h->min_chunk > SOCK_MIN_CHUNK_HI) {
		snprintf(why, size, "piece size %u outside [%u, %u]", h->min_chunk,
			 SOCK_MIN_CHUNK_LO, SOCK_MIN_CHUNK_HI);
	} else {
		return NULL;
	}
	return why;
}

static void refuse(const struct rcmoe_tlisten *l, int fd, const char *peer, const char *why)
{
	RCMOE_WARN("refused a connection from %s to %s: %s", peer, l->addr_str, why);
	close(fd);
}

static struct sock_group *find_group(struct rcmoe_tlisten *l, uint64_t nonce)
{
	for (struct sock_group *g = l->groups; g; g = g->next)
		if (g->nonce == nonce)
			return g;
	return NULL;
}

/* Put a socket with a valid hello into its connection's group (the group takes the fd). */
static rcmoe_status_t join_group(struct rcmoe_tlisten *l, int fd, const char *peer,
				 const struct sock_hello *h)
{
	struct sock_group *g = find_group(l, h->nonce);
	if (!g) {
		g = calloc(1, sizeof(*g));
		if (!g) {
			close(fd);
			return RCMOE_ERR_NOMEM;
		}
		g->nonce = h->nonce;
		g->count = h->count;
		g->min_chunk = h->min_chunk;
		g->deadline_ns = sock_now_ns() + timeout_ns();
		for (int i = 0; i <= SOCK_MAX_STREAMS; i++)
			g->fds[i] = -1;
		snprintf(g->peer, sizeof(g->peer), "%s", peer);
		g->next = l->groups;
		l->groups = g;
	} else if (g->count != h->count || g->min_chunk != h->min_chunk) {
		refuse(l, fd, peer,
		       "its stream count or piece size disagrees with its connection's");
		return RCMOE_OK;
	} else if (g->fds[h->index] >= 0) {
		refuse(l, fd, peer, "duplicate stream index");
		return RCMOE_OK;
	}
	g->fds[h->index] = fd;
	g->have++;
	if (h->index == 0) /* name the connection by its control socket */
		snprintf(g->peer, sizeof(g->peer), "%s", peer);
	return RCMOE_OK;
}

/* Read hellos; each complete one either joins a group or is refused. Gives up on sockets whose
 * hello did not arrive in time. */
static rcmoe_status_t read_hellos(struct rcmoe_tlisten *l)
{
	uint64_t now = sock_now_ns();
	struct sock_pending **pp = &l->pending;
	rcmoe_status_t st = RCMOE_OK;
	while (*pp) {
		struct sock_pending *p = *pp;
		enum sock_io_result r = sock_io(p->fd, false, p->buf, SOCK_HELLO_SIZE, &p->got);
		char why[160];
		if (r == SOCK_IO_AGAIN && now < p->deadline_ns) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		if (r == SOCK_IO_DONE) {
			struct sock_hello h;
			sock_hello_decode(p->buf, &h);
			if (hello_problem(l, &h, why, sizeof(why)))
				refuse(l, p->fd, p->peer, why);
			else if (st == RCMOE_OK)
				st = join_group(l, p->fd, p->peer, &h);
			else
				close(p->fd);
		} else {
			if (r == SOCK_IO_AGAIN)
				snprintf(why, sizeof(why),
					 "only %zu of %d hello bytes within %lld s", p->got,
					 SOCK_HELLO_SIZE,
					 (long long)sock_global.params.socket_timeout);
			else if (r == SOCK_IO_EOF)
				snprintf(why, sizeof(why), "closed after %zu of %d hello bytes",
					 p->got, SOCK_HELLO_SIZE);
			else
				snprintf(why, sizeof(why), "%s after %zu of %d hello bytes",
					 strerror(errno), p->got, SOCK_HELLO_SIZE);
			refuse(l, p->fd, p->peer, why);
		}
		free(p);
	}
	return st;
}

static void free_group(struct sock_group *g)
{
	for (int i = 0; i <= SOCK_MAX_STREAMS; i++)
		if (g->fds[i] >= 0)
			close(g->fds[i]);
	free(g);
}

/* Drop connections whose sockets did not all arrive in time; return a complete one, if any,
 * unlinked from the list. */
static struct sock_group *take_complete(struct rcmoe_tlisten *l)
{
	uint64_t now = sock_now_ns();
	struct sock_group **gp = &l->groups;
	while (*gp) {
		struct sock_group *g = *gp;
		if (g->have == g->count + 1) {
			*gp = g->next;
			return g;
		}
		if (now >= g->deadline_ns) {
			RCMOE_WARN("refused a connection from %s to %s: only %u of its %u sockets "
				   "arrived within %lld s",
				   g->peer, l->addr_str, g->have, g->count + 1,
				   (long long)sock_global.params.socket_timeout);
			*gp = g->next;
			free_group(g);
			continue;
		}
		gp = &g->next;
	}
	return NULL;
}

rcmoe_status_t sock_accept(struct rcmoe_tlisten *l, struct rcmoe_trecv **out)
{
	struct sock_comm *c;
	if (!l || !out)
		return RCMOE_ERR_INVALID;
	*out = NULL;
	RCMOE_CHECK(take_new(l));
	RCMOE_CHECK(read_hellos(l));
	struct sock_group *g = take_complete(l);
	if (!g)
		return RCMOE_OK;
	/* The comm takes the fds, also when it fails. */
	rcmoe_status_t st =
	    sock_comm_create(false, g->fds, (int)g->count, g->min_chunk, g->peer, &c);
	free(g);
	RCMOE_CHECK(st);
	RCMOE_INFO(NCCL_NET, "accepted a connection from %s on %s (%d streams)", c->peer,
		   l->addr_str, c->nstreams);
	*out = (struct rcmoe_trecv *)(void *)c;
	return RCMOE_OK;
}

void sock_listen_drop_all(struct rcmoe_tlisten *l)
{
	while (l->pending) {
		struct sock_pending *p = l->pending;
		l->pending = p->next;
		close(p->fd);
		free(p);
	}
	while (l->groups) {
		struct sock_group *g = l->groups;
		l->groups = g->next;
		free_group(g);
	}
}
