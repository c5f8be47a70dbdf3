/* SPDX-License-Identifier: Apache-2.0 */
/* Life of a send or receive comm: building it around connected sockets, failing it, closing it. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rcmoe/log.h"
#include "transport/socket/socket.h"

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Give lane `l` to the pool; from then on its worker may run it. */
static rcmoe_status_t start_lane(struct sock_comm *c, int l)
{
	struct sock_lane *lane = &c->lanes[l];
	lane->comm = c;
	lane->index = l;
	lane->next_beat_ns = sock_now_ns() + sock_beat_ns();
	if (!c->is_send) {
		lane->scratch = malloc(SOCK_SCRATCH_SIZE);
		if (!lane->scratch)
			return RCMOE_ERR_NOMEM;
	}
	return sock_pool_attach(lane);
}

rcmoe_status_t sock_comm_create(bool is_send, int *fds, int nstreams, size_t min_chunk,
				const char *peer, struct sock_comm **out)
{
	const struct rcmoe_params *p = &sock_global.params;
	rcmoe_status_t st = RCMOE_ERR_NOMEM;
	struct sock_comm *c = calloc(1, sizeof(*c));
	if (!c)
		goto close_fds;
	c->streams = calloc((size_t)nstreams, sizeof(*c->streams));
	if (!c->streams)
		goto free_comm;
	/* More lanes than streams would have nothing to do. */
	c->nlanes = (int)(p->socket_nthreads < nstreams ? p->socket_nthreads : nstreams);
	c->lanes = calloc((size_t)c->nlanes, sizeof(*c->lanes));
	if (!c->lanes)
		goto free_streams;

	c->is_send = is_send;
	c->ctrl_fd = fds[0];
	c->nstreams = nstreams;
	c->min_chunk = min_chunk;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	for (int s = 0; s < nstreams; s++) {
		c->streams[s].fd = fds[s + 1];
		c->streams[s].index = s;
	}
	pthread_mutex_init(&c->ctrl_lock, NULL);
	/* From here the comm owns the fds and sock_comm_destroy undoes a partial start. */
	for (int l = 0; l < c->nlanes; l++) {
		RCMOE_CHECK_GOTO(start_lane(c, l), st, destroy_comm);
	}
	*out = c;
	return RCMOE_OK;

destroy_comm:
	sock_comm_destroy(c);
	return st;
free_streams:
	free(c->streams);
free_comm:
	free(c);
close_fds:
	close_fds(fds, nstreams + 1);
	return st;
}

void sock_comm_destroy(struct sock_comm *c)
{
	if (!c)
		return;
	/* Workers see `stop` in their next round and never touch a request after it; once every
	 * lane is detached no worker touches the comm at all, and no user buffer is referenced
	 * any more. */
	atomic_store_explicit(&c->stop, 1, memory_order_release);
	for (int l = 0; l < c->nlanes; l++)
		sock_pool_detach(&c->lanes[l]);
	for (int l = 0; l < c->nlanes; l++)
		free(c->lanes[l].scratch);
	pthread_mutex_destroy(&c->ctrl_lock);
	close(c->ctrl_fd);
	for (int s = 0; s < c->nstreams; s++)
		close(c->streams[s].fd);
	free(c->lanes);
	free(c->streams);
	free(c);
}

void sock_comm_fail(struct sock_comm *c, rcmoe_status_t st, const char *fmt, ...)
{
	if (atomic_exchange(&c->failing, 1))
		return;
	/* A failure that shows up while we are closing is our own doing, not the peer's news. */
	if (!atomic_load_explicit(&c->stop, memory_order_acquire)) {
		char msg[512];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		RCMOE_WARN("%s %s: %s",
			   c->is_send ? "send connection to" : "receive connection from", c->peer,
			   msg);
	}
	atomic_store_explicit(&c->error, (int)st, memory_order_release);
	/* Closing the connection tells the peer; the workers are woken to quiesce the lanes. */
	shutdown(c->ctrl_fd, SHUT_RDWR);
	for (int s = 0; s < c->nstreams; s++)
		shutdown(c->streams[s].fd, SHUT_RDWR);
	for (int l = 0; l < c->nlanes; l++)
		sock_lane_kick(&c->lanes[l]);
}
