/* SPDX-License-Identifier: Apache-2.0 */
/* Life of a send or receive comm: building it around connected sockets, failing it, closing it. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
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

static rcmoe_status_t start_thread(struct sock_comm *c, int t)
{
	struct sock_thread *th = &c->threads[t];
	int err;
	th->comm = c;
	th->index = t;
	th->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (th->efd < 0) {
		err = errno;
		RCMOE_WARN("eventfd for a helper thread failed: %s", strerror(err));
		return rcmoe_status_from_errno(err);
	}
	if (!c->is_send) {
		th->scratch = malloc(SOCK_SCRATCH_SIZE);
		if (!th->scratch)
			return RCMOE_ERR_NOMEM;
	}
	err = pthread_create(&th->tid, NULL, sock_thread_main, th);
	if (err) {
		RCMOE_WARN("cannot start a helper thread: %s", strerror(err));
		return RCMOE_ERR_SYSTEM;
	}
	th->started = true;
	return RCMOE_OK;
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
	/* More threads than streams would have nothing to do. */
	c->nthreads = (int)(p->socket_nthreads < nstreams ? p->socket_nthreads : nstreams);
	c->threads = calloc((size_t)c->nthreads, sizeof(*c->threads));
	if (!c->threads)
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
	for (int t = 0; t < c->nthreads; t++)
		c->threads[t].efd = -1;
	pthread_mutex_init(&c->ctrl_lock, NULL);
	/* From here the comm owns the fds and sock_comm_destroy undoes a partial start. */
	for (int t = 0; t < c->nthreads; t++) {
		RCMOE_CHECK_GOTO(start_thread(c, t), st, destroy_comm);
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
	/* Threads see `stop` at their next wakeup and never touch a request after it, so once
	 * they are joined no user buffer is referenced any more. */
	atomic_store_explicit(&c->stop, 1, memory_order_release);
	for (int t = 0; t < c->nthreads; t++)
		if (c->threads[t].started)
			eventfd_write(c->threads[t].efd, 1);
	for (int t = 0; t < c->nthreads; t++)
		if (c->threads[t].started)
			pthread_join(c->threads[t].tid, NULL);
	for (int t = 0; t < c->nthreads; t++) {
		if (c->threads[t].efd >= 0)
			close(c->threads[t].efd);
		free(c->threads[t].scratch);
	}
	pthread_mutex_destroy(&c->ctrl_lock);
	close(c->ctrl_fd);
	for (int s = 0; s < c->nstreams; s++)
		close(c->streams[s].fd);
	free(c->threads);
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
	/* Closing the connection tells the peer and wakes threads waiting in poll. */
	shutdown(c->ctrl_fd, SHUT_RDWR);
	for (int s = 0; s < c->nstreams; s++)
		shutdown(c->streams[s].fd, SHUT_RDWR);
	for (int t = 0; t < c->nthreads; t++)
		if (c->threads[t].started)
			eventfd_write(c->threads[t].efd, 1);
}

void sock_thread_wake(struct sock_thread *th)
{
	if (atomic_exchange(&th->sleeping, 0))
		eventfd_write(th->efd, 1);
}
