/* SPDX-License-Identifier: Apache-2.0 */
/*
 * accept: take incoming sockets off the listener without blocking, read each one's hello, refuse
 * the ones that are not ours (wrong magic, version or secret, nonsense stream numbers, a hello
 * that does not arrive in time), and group the rest by the connect's nonce. A group with its
 * control socket and all its data streams becomes a receive comm.
 *
 * Anyone who reaches the port can open sockets, and each costs a descriptor while it is held.
 * So a socket that has not authenticated yet (its hello is incomplete, or its group is) is held
 * briefly and in bounded numbers:
 *  - it has the handshake deadline (RCMOE_SOCKET_HANDSHAKE_TIMEOUT, at most RCMOE_SOCKET_TIMEOUT)
 *    to send its whole hello; a group must gain a socket within it too;
 *  - a listener holds at most max_unauth such sockets; a new one closes the oldest waiting for
 *    its hello. A real peer sends its hello as soon as it is connected, so by the time a flood
 *    has pushed its socket to the front the hello is there, and the socket is taken, not closed;
 *  - out of descriptors (EMFILE, ENFILE), the listener closes its own oldest unauthenticated
 *    socket, or else gives up a spare descriptor to accept a waiting connection and close it, so
 *    the backlog drains instead of stalling. accept never returns an error for what a peer did:
 *    NCCL would end the job;
 *  - expired sockets are reaped on every accept call, whatever the backlog does.
 * Refusals are WARNed one by one for the first few of each listener, then summed up at most
 * every SOCK_REFUSE_SUMMARY_S seconds, so a flood cannot flood the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rcmoe/log.h"
#include "transport/socket/socket.h"

#define SOCK_MIN_CHUNK_LO 4096u
#define SOCK_MIN_CHUNK_HI (1u << 30)

/* Unauthenticated sockets per listener: at most this many, and at most a quarter of the
 * process's descriptor limit, but always room for the largest connection to assemble. */
#define SOCK_MAX_UNAUTH 256u
#define SOCK_MIN_UNAUTH (SOCK_MAX_STREAMS + 1u)
/* Connections taken off the backlog per accept call: a flood cannot keep the caller (NCCL's
 * proxy thread) in one call, and a socket accepted in one call is not pushed out by the rest of
 * the backlog before its hello could be read in the next. */
#define SOCK_ACCEPT_BATCH 64

#define SOCK_REFUSE_WARN_FIRST 5
#define SOCK_REFUSE_SUMMARY_S  10

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
	uint64_t first_ns; /* when its first socket joined */
	uint64_t deadline_ns;
	char peer[SOCK_ADDR_STRLEN];
	int fds[SOCK_MAX_STREAMS + 1];
};

static uint64_t secs_ns(int64_t s)
{
	return (uint64_t)s * 1000000000ull;
}

/* Seconds a socket has to authenticate: never longer than the data timeout. */
static int64_t handshake_s(void)
{
	const struct rcmoe_params *p = &sock_global.params;
	return p->socket_handshake_timeout < p->socket_timeout ? p->socket_handshake_timeout
							       : p->socket_timeout;
}

/* Read at every accept call, so that a limit changed after listen counts. */
static unsigned max_unauth(void)
{
	struct rlimit r;
	if (getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY ||
	    r.rlim_cur / 4 >= SOCK_MAX_UNAUTH)
		return SOCK_MAX_UNAUTH;
	return r.rlim_cur / 4 > SOCK_MIN_UNAUTH ? (unsigned)(r.rlim_cur / 4) : SOCK_MIN_UNAUTH;
}

/* ---- refusals, logged with a rate limit ---- */

static void note_refusal(struct rcmoe_tlisten *l, const char *peer, const char *why)
{
	struct sock_refusals *r = &l->refused;
	r->total++;
	if (r->total <= SOCK_REFUSE_WARN_FIRST) {
		char more[80] = "";
		if (r->total == SOCK_REFUSE_WARN_FIRST)
			snprintf(more, sizeof(more),
				 " (further refusals on this listener are summed up every %d s)",
				 SOCK_REFUSE_SUMMARY_S);
		RCMOE_WARN("refused a connection from %s to %s: %s%s", peer, l->addr_str, why,
			   more);
		r->last_warn_ns = sock_now_ns();
		return;
	}
	r->unlogged++;
	snprintf(r->last_peer, sizeof(r->last_peer), "%s", peer);
	snprintf(r->last_why, sizeof(r->last_why), "%s", why);
}

/* One WARN for the refusals not yet logged, once the last WARN is SOCK_REFUSE_SUMMARY_S old
 * (or at once with `now_anyway`). */
static void log_refusals(struct rcmoe_tlisten *l, bool now_anyway)
{
	struct sock_refusals *r = &l->refused;
	uint64_t now = sock_now_ns();
	if (!r->unlogged || (!now_anyway && now - r->last_warn_ns < secs_ns(SOCK_REFUSE_SUMMARY_S)))
		return;
	RCMOE_WARN("refused %llu more connections to %s in the last %.1f s, %llu since it listens "
		   "(last from %s: %s)",
		   (unsigned long long)r->unlogged, l->addr_str,
		   (double)(now - r->last_warn_ns) * 1e-9, (unsigned long long)r->total,
		   r->last_peer, r->last_why);
	r->unlogged = 0;
	r->last_warn_ns = now;
}

/* Close a socket that did not become (part of) a connection. */
static void close_unauth(struct rcmoe_tlisten *l, int fd, const char *peer, const char *why)
{
	close(fd);
	l->nunauth--;
	note_refusal(l, peer, why);
}

/* ---- hellos and groups ---- */

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

static struct sock_group *find_group(struct rcmoe_tlisten *l, uint64_t nonce)
{
	for (struct sock_group *g = l->groups; g; g = g->next)
		if (g->nonce == nonce)
			return g;
	return NULL;
}

static struct sock_group *new_group(struct rcmoe_tlisten *l, const struct sock_hello *h,
				    uint64_t now)
{
	struct sock_group *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->nonce = h->nonce;
	g->count = h->count;
	g->min_chunk = h->min_chunk;
	g->first_ns = now;
	for (int i = 0; i <= SOCK_MAX_STREAMS; i++)
		g->fds[i] = -1;
	g->next = l->groups;
	l->groups = g;
	return g;
}

/* Put a socket with a valid hello into its connection's group (the group takes the fd). */
static void join_group(struct rcmoe_tlisten *l, int fd, const char *peer,
		       const struct sock_hello *h)
{
	uint64_t now = sock_now_ns();
	struct sock_group *g = find_group(l, h->nonce);
	if (g && (g->count != h->count || g->min_chunk != h->min_chunk)) {
		close_unauth(l, fd, peer,
			     "its stream count or piece size disagrees with its connection's");
		return;
	}
	if (g && g->fds[h->index] >= 0) {
		close_unauth(l, fd, peer, "duplicate stream index");
		return;
	}
	/* Only now, for a socket of ours: an unauthenticated one costs no setsockopt calls. */
	if (sock_set_options(fd, (int)sock_global.params.socket_timeout, peer) != RCMOE_OK) {
		close_unauth(l, fd, peer, "cannot set its socket options");
		return;
	}
	if (!g && !(g = new_group(l, h, now))) {
		close_unauth(l, fd, peer, "out of memory for its connection");
		return;
	}
	g->fds[h->index] = fd;
	g->have++;
	if (h->index == 0 || g->have == 1) /* name the connection by its control socket */
		snprintf(g->peer, sizeof(g->peer), "%s", peer);
	/* Each socket that joins gives the rest another handshake deadline (behind a full
	 * backlog a connect's SYNs may be retried), within the data timeout for the whole. */
	uint64_t last = g->first_ns + secs_ns(sock_global.params.socket_timeout);
	g->deadline_ns = now + secs_ns(handshake_s());
	if (g->deadline_ns > last)
		g->deadline_ns = last;
}

static void free_group(struct sock_group *g)
{
	for (int i = 0; i <= SOCK_MAX_STREAMS; i++)
		if (g->fds[i] >= 0)
			close(g->fds[i]);
	free(g);
}

/* ---- sockets waiting for their hello, oldest first ---- */

static void pending_append(struct rcmoe_tlisten *l, struct sock_pending *p)
{
	p->next = NULL;
	if (l->pending_last)
		l->pending_last->next = p;
	else
		l->pending = p;
	l->pending_last = p;
	l->nunauth++;
}

/* Unlink `p`, which follows `prev` (NULL: p is the first). */
static void pending_unlink(struct rcmoe_tlisten *l, struct sock_pending *prev,
			   struct sock_pending *p)
{
	if (prev)
		prev->next = p->next;
	else
		l->pending = p->next;
	if (l->pending_last == p)
		l->pending_last = prev;
}

static enum sock_io_result read_hello(struct sock_pending *p, int *err)
{
	enum sock_io_result r = sock_io(p->fd, false, p->buf, SOCK_HELLO_SIZE, &p->got);
	*err = errno;
	return r;
}

/* Done waiting for an unlinked pending socket whose last read gave `r` (with `err`): its hello
 * joins a group or is refused; an incomplete one is refused, `late` saying why it is not waited
 * for any longer. Frees p. */
static void settle(struct rcmoe_tlisten *l, struct sock_pending *p, enum sock_io_result r, int err,
		   const char *late)
{
	char why[224];
	if (r == SOCK_IO_DONE) {
		struct sock_hello h;
		sock_hello_decode(p->buf, &h);
		if (hello_problem(l, &h, why, sizeof(why)))
			close_unauth(l, p->fd, p->peer, why);
		else
			join_group(l, p->fd, p->peer, &h);
	} else {
		if (r == SOCK_IO_AGAIN)
			snprintf(why, sizeof(why), "only %zu of %d hello bytes %s", p->got,
				 SOCK_HELLO_SIZE, late);
		else if (r == SOCK_IO_EOF)
			snprintf(why, sizeof(why), "closed after %zu of %d hello bytes", p->got,
				 SOCK_HELLO_SIZE);
		else
			snprintf(why, sizeof(why), "%s after %zu of %d hello bytes", strerror(err),
				 p->got, SOCK_HELLO_SIZE);
		close_unauth(l, p->fd, p->peer, why);
	}
	free(p);
}

/* Read hellos; each complete one joins a group or is refused. Gives up on sockets whose hello
 * did not arrive by their deadline. */
static void read_hellos(struct rcmoe_tlisten *l)
{
	uint64_t now = sock_now_ns();
	char late[64];
	snprintf(late, sizeof(late), "within the %lld s handshake deadline",
		 (long long)handshake_s());
	struct sock_pending *prev = NULL, *p = l->pending;
	while (p) {
		struct sock_pending *next = p->next;
		int err;
		enum sock_io_result r = read_hello(p, &err);
		if (r == SOCK_IO_AGAIN && now < p->deadline_ns) {
			prev = p;
		} else {
			pending_unlink(l, prev, p);
			settle(l, p, r, err, late);
		}
		p = next;
	}
}

/* Close the oldest socket waiting for its hello to make room, unless its hello has come by now
 * (it is then taken, and the next oldest tried). Returns whether a descriptor was freed. */
static bool evict_oldest(struct rcmoe_tlisten *l, const char *late)
{
	while (l->pending) {
		struct sock_pending *p = l->pending;
		unsigned before = l->nunauth;
		int err;
		enum sock_io_result r = read_hello(p, &err);
		pending_unlink(l, NULL, p);
		settle(l, p, r, err, late);
		if (l->nunauth < before)
			return true;
	}
	return false;
}

/* ---- taking connections off the backlog ---- */

/* Hold a newly accepted socket until its hello comes, first making room at the cap. */
static void hold_new(struct rcmoe_tlisten *l, int fd, const union sock_addr *a)
{
	char peer[SOCK_ADDR_STRLEN];
	sock_addr_str(a, peer, sizeof(peer));
	if (l->nunauth >= l->max_unauth) {
		char late[96];
		snprintf(late, sizeof(late),
			 "when closed as the oldest of %u unauthenticated "
			 "sockets",
			 l->max_unauth);
		if (!evict_oldest(l, late)) {
			/* Every socket held is in an incomplete group, i.e. has authenticated;
			 * this one has not. */
			close(fd);
			note_refusal(l, peer, "the listener is full of incomplete connections");
			return;
		}
	}
	struct sock_pending *p = calloc(1, sizeof(*p));
	if (!p) {
		close(fd);
		note_refusal(l, peer, "out of memory");
		return;
	}
	p->fd = fd;
	snprintf(p->peer, sizeof(p->peer), "%s", peer);
	p->deadline_ns = sock_now_ns() + secs_ns(handshake_s());
	pending_append(l, p);
}

/* Out of descriptors with none of the listener's own to give back: give up the spare to accept
 * one waiting connection and close it, so the backlog drains rather than stalls. Returns
 * whether one was taken. */
static bool drop_with_spare(struct rcmoe_tlisten *l, int err)
{
	union sock_addr a;
	socklen_t alen = sizeof(a);
	char peer[SOCK_ADDR_STRLEN];
	char why[96];
	if (l->spare_fd < 0)
		return false;
	close(l->spare_fd);
	memset(&a, 0, sizeof(a));
	int fd = accept4(l->fd, &a.sa, &alen, SOCK_CLOEXEC);
	if (fd >= 0)
		close(fd);
	l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	sock_addr_str(&a, peer, sizeof(peer));
	snprintf(why, sizeof(why), "the process is out of file descriptors (%s)", strerror(err));
	note_refusal(l, peer, why);
	return true;
}

/* Out of descriptors (`err`): make room for a waiting connection. Returns whether accept may
 * be tried again. */
static bool room_for_waiting(struct rcmoe_tlisten *l, int err)
{
	/* accept fails for want of a descriptor before it looks at the backlog: free one only
	 * for a connection that is there. */
	struct pollfd pfd = { .fd = l->fd, .events = POLLIN };
	if (poll(&pfd, 1, 0) <= 0)
		return false;
	return evict_oldest(l, "when closed as the oldest unauthenticated socket: the process "
			       "is out of file descriptors") ||
	       drop_with_spare(l, err);
}

/* accept failures that belong to one connection (accept(2): pending network errors, a
 * firewall): the listener goes on with the next. */
static bool one_connection_error(int err)
{
	switch (err) {
	case EINTR:
	case ECONNABORTED:
	case EPROTO:
	case EPERM:
	case ENETDOWN:
	case ENOPROTOOPT:
	case EHOSTDOWN:
	case ENONET:
	case EHOSTUNREACH:
	case EOPNOTSUPP:
	case ENETUNREACH:
	case ETIMEDOUT: return true;
	default: return false;
	}
}

/* Take up to SOCK_ACCEPT_BATCH connections waiting in the backlog. Errors only for a broken
 * listener, never for what a peer did or for running out of descriptors or memory. */
static rcmoe_status_t take_new(struct rcmoe_tlisten *l)
{
	for (int i = 0; i < SOCK_ACCEPT_BATCH; i++) {
		union sock_addr a;
		socklen_t alen = sizeof(a);
		memset(&a, 0, sizeof(a));
		int fd = accept4(l->fd, &a.sa, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			hold_new(l, fd, &a);
			continue;
		}
		int err = errno;
		if (err == EAGAIN || err == EWOULDBLOCK)
			return RCMOE_OK;
		if (one_connection_error(err))
			continue;
		if (err == EMFILE || err == ENFILE) {
			if (room_for_waiting(l, err))
				continue;
			return RCMOE_OK;
		}
		if (err == ENOMEM || err == ENOBUFS) /* the connection waits for the next call */
			return RCMOE_OK;
		RCMOE_WARN("accept on %s failed: %s", l->addr_str, strerror(err));
		return rcmoe_status_from_errno(err);
	}
	return RCMOE_OK;
}

/* Drop connections whose sockets did not all arrive in time; with `take`, return a complete
 * one, if any, unlinked from the list. */
static struct sock_group *take_complete(struct rcmoe_tlisten *l, bool take)
{
	uint64_t now = sock_now_ns();
	struct sock_group **gp = &l->groups;
	while (*gp) {
		struct sock_group *g = *gp;
		if (take && g->have == g->count + 1) {
			*gp = g->next;
			l->nunauth -= g->have;
			return g;
		}
		if (now >= g->deadline_ns && g->have < g->count + 1) {
			char why[160];
			snprintf(why, sizeof(why),
				 "only %u of its %u sockets arrived in time (handshake deadline "
				 "%lld s)",
				 g->have, g->count + 1, (long long)handshake_s());
			*gp = g->next;
			l->nunauth -= g->have;
			note_refusal(l, g->peer, why);
			free_group(g);
			continue;
		}
		gp = &g->next;
	}
	return NULL;
}

/* A new comm may need a descriptor of its own (the eventfd of a worker the pool starts for its
 * lanes). When unauthenticated sockets hold the last ones, free one, the oldest, so that the
 * connection that proved itself is not the one to fail. */
static void make_room(struct rcmoe_tlisten *l)
{
	for (;;) {
		int fd = fcntl(l->fd, F_DUPFD_CLOEXEC, 0);
		if (fd >= 0) {
			close(fd);
			return;
		}
		if ((errno != EMFILE && errno != ENFILE) ||
		    !evict_oldest(l, "when closed to make room for an authenticated connection: "
				     "the process is out of file descriptors"))
			return;
	}
}

rcmoe_status_t sock_accept(struct rcmoe_tlisten *l, struct rcmoe_trecv **out)
{
	struct sock_comm *c;
	if (!l || !out)
		return RCMOE_ERR_INVALID;
	*out = NULL;
	if (l->spare_fd < 0) /* given up when descriptors ran out, or never opened */
		l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	l->max_unauth = max_unauth();
	rcmoe_status_t st = take_new(l);
	/* Reaped whatever the backlog did: a listener out of descriptors must not stay locked
	 * out by sockets it could close. */
	read_hellos(l);
	struct sock_group *g = take_complete(l, st == RCMOE_OK);
	log_refusals(l, false);
	if (!g)
		return st;
	make_room(l);
	/* The comm takes the fds, also when it fails. */
	st = sock_comm_create(false, g->fds, (int)g->count, g->min_chunk, g->peer, &c);
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
	l->pending_last = NULL;
	while (l->groups) {
		struct sock_group *g = l->groups;
		l->groups = g->next;
		free_group(g);
	}
	l->nunauth = 0;
	log_refusals(l, true);
}
