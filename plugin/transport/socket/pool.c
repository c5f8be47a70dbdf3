/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The process's pool of worker threads that move the socket transport's data (lane.c). With a
 * thread per connection, a rank with 63 peers would run hundreds of threads (thousands per node),
 * most of them asleep but each with its own stack and wakeups; a pool bounds that at
 * RCMOE_SOCKET_WORKERS per process whatever the number of peers.
 *
 * Workers start lazily: a lane goes to the worker with the fewest lanes, and a new worker starts
 * while every worker already has a lane and fewer than the maximum run. So one connection's lanes
 * land on distinct workers (they move its streams in parallel, as the old per-connection threads
 * did), and a small job starts no more threads than it has lanes. Workers live as long as the
 * process: an idle one sleeps in poll() on its eventfd.
 *
 * Locking: pool_lock guards the worker list and the lane counts (attach, detach). A worker holds
 * its own lock while it runs its lanes' rounds and while it handles what poll() returned, never
 * while it sleeps; attach and detach take it to change the worker's lane list. So once detach
 * returns, the worker is not in one of that lane's rounds and never starts another. poll() waits
 * outside the lock on descriptors that a detached lane's comm may close meanwhile: `gen` counts
 * list changes, and results of a poll that began before a change are dropped (the next round
 * asks again).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "rcmoe/log.h"
#include "transport/socket/socket.h"

#define POOL_MAX_WORKERS 256 /* params.def's upper bound for RCMOE_SOCKET_WORKERS */

struct sock_worker {
	pthread_t tid;
	int efd;              /* eventfd: new work, a new lane, a failure or a close */
	_Atomic int sleeping; /* set before polling, so posters know to write efd */
	pthread_mutex_t lock;
	struct sock_lane *lanes; /* lock */
	int nlanes;              /* pool_lock */
	int fds_needed;          /* lock: poll entries its lanes may use at most */
	uint64_t gen;            /* lock: bumped by every attach and detach */
	/* The worker thread's own poll set, grown to fds_needed at the start of a round. */
	struct pollfd *pfd;
	struct sock_lane **owner;
	bool *is_ctrl;
	int cap;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sock_worker *workers[POOL_MAX_WORKERS]; /* pool_lock */
static int nworkers;                                  /* pool_lock */
static int max_workers = 1;                           /* set once by sock_pool_init */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Data streams of the lane, plus its control socket (lane 0): what one round may wait for. */
static int lane_fds(const struct sock_lane *lane)
{
	const struct sock_comm *c = lane->comm;
	return (c->nstreams - lane->index + c->nlanes - 1) / c->nlanes + (lane->index == 0);
}

/* Grow the poll set to what the lanes may use; on failure the set stays as it is and
 * sock_lane_turn falls back to short timeouts for what does not fit. */
static void grow_poll_set(struct sock_worker *w)
{
	int want = w->fds_needed + 1; /* + the eventfd */
	if (want <= w->cap)
		return;
	struct pollfd *pfd = realloc(w->pfd, (size_t)want * sizeof(*pfd));
	if (pfd)
		w->pfd = pfd;
	struct sock_lane **owner = realloc(w->owner, (size_t)want * sizeof(*owner));
	if (owner)
		w->owner = owner;
	bool *is_ctrl = realloc(w->is_ctrl, (size_t)want * sizeof(*is_ctrl));
	if (is_ctrl)
		w->is_ctrl = is_ctrl;
	if (pfd && owner && is_ctrl)
		w->cap = want;
}

static void fail_all_lanes(struct sock_worker *w, int err)
{
	for (struct sock_lane *l = w->lanes; l; l = l->next)
		sock_comm_fail(l->comm, RCMOE_ERR_SYSTEM, "poll in a socket worker failed: %s",
			       strerror(err));
}

static void *worker_main(void *arg)
{
	struct sock_worker *w = arg;
	pthread_setname_np(pthread_self(), SOCK_WORKER_NAME); /* for top -H, gdb and tests */
	for (;;) {
		pthread_mutex_lock(&w->lock);
		grow_poll_set(w);
		struct sock_pollset ps = { w->pfd, w->owner, w->is_ctrl, 1, w->cap };
		int timeout = -1;
		ps.pfd[0] = (struct pollfd){ .fd = w->efd, .events = POLLIN };
		for (struct sock_lane *l = w->lanes; l; l = l->next)
			sock_lane_turn(l, &ps, &timeout);
		/* Announce the sleep, then look once more: a poster that queued work before
		 * seeing the flag is caught here, one that queued after it writes the eventfd. */
		atomic_store(&w->sleeping, 1);
		for (struct sock_lane *l = w->lanes; l && timeout != 0; l = l->next)
			if (sock_lane_has_work(l))
				timeout = 0;
		uint64_t gen = w->gen;
		pthread_mutex_unlock(&w->lock);

		int n = poll(ps.pfd, (nfds_t)ps.n, timeout);
		int err = errno;
		atomic_store(&w->sleeping, 0);
		if (ps.pfd[0].revents & POLLIN) {
			eventfd_t v;
			eventfd_read(w->efd, &v);
		}
		pthread_mutex_lock(&w->lock);
		if (n < 0 && err != EINTR)
			fail_all_lanes(w, err);
		else if (n > 0 && gen == w->gen)
			for (int i = 1; i < ps.n; i++)
				if (ps.is_ctrl[i] && ps.pfd[i].revents)
					sock_lane_ctrl_ready(ps.owner[i]);
		pthread_mutex_unlock(&w->lock);
	}
	return NULL;
}

/* A fork()ed child has none of the parent's threads: it starts its own workers if it uses the
 * transport. The parent's worker records are abandoned (their memory is the child's copy). */
static void forget_workers_in_child(void)
{
	pthread_mutex_init(&pool_lock, NULL);
	nworkers = 0;
}

static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, forget_workers_in_child);
}

rcmoe_status_t sock_pool_init(const struct rcmoe_params *params)
{
	pthread_once(&atfork_once, register_atfork);
	pthread_mutex_lock(&pool_lock);
	max_workers = (int)params->socket_workers;
	if (max_workers < 1 || max_workers > POOL_MAX_WORKERS)
		max_workers = max_workers < 1 ? 1 : POOL_MAX_WORKERS;
	pthread_mutex_unlock(&pool_lock);
	return RCMOE_OK;
}

/* pool_lock held. */
static struct sock_worker *start_worker(void)
{
	struct sock_worker *w = calloc(1, sizeof(*w));
	int err;
	if (!w)
		return NULL;
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		err = errno;
		RCMOE_WARN("eventfd for a socket worker failed: %s", strerror(err));
		goto free_worker;
	}
	pthread_mutex_init(&w->lock, NULL);
	w->fds_needed = 0;
	grow_poll_set(w);
	if (w->cap < 1)
		goto free_set;
	err = pthread_create(&w->tid, NULL, worker_main, w);
	if (err) {
		RCMOE_WARN("cannot start a socket worker thread: %s", strerror(err));
		goto free_set;
	}
	pthread_detach(w->tid);
	workers[nworkers++] = w;
	RCMOE_INFO(NCCL_NET, "socket worker %d of at most %d started", nworkers, max_workers);
	return w;

free_set:
	free(w->pfd);
	free(w->owner);
	free(w->is_ctrl);
	pthread_mutex_destroy(&w->lock);
	close(w->efd);
free_worker:
	free(w);
	return NULL;
}

/* pool_lock held: the worker with the fewest lanes, or a new one while each has a lane. */
static struct sock_worker *pick_worker(void)
{
	struct sock_worker *best = NULL;
	for (int i = 0; i < nworkers; i++)
		if (!best || workers[i]->nlanes < best->nlanes)
			best = workers[i];
	if ((!best || best->nlanes > 0) && nworkers < max_workers) {
		struct sock_worker *w = start_worker();
		if (w)
			return w;
	}
	return best; /* NULL only when not even one worker could start */
}

rcmoe_status_t sock_pool_attach(struct sock_lane *lane)
{
	pthread_mutex_lock(&pool_lock);
	struct sock_worker *w = pick_worker();
	if (!w) {
		pthread_mutex_unlock(&pool_lock);
		return RCMOE_ERR_SYSTEM; /* start_worker said why */
	}
	w->nlanes++;
	pthread_mutex_lock(&w->lock);
	lane->worker = w;
	lane->next = w->lanes;
	w->lanes = lane;
	w->fds_needed += lane_fds(lane);
	w->gen++;
	pthread_mutex_unlock(&w->lock);
	pthread_mutex_unlock(&pool_lock);
	sock_lane_kick(lane); /* rebuild its poll set with the new lane */
	return RCMOE_OK;
}

void sock_pool_detach(struct sock_lane *lane)
{
	struct sock_worker *w = lane->worker;
	if (!w)
		return;
	pthread_mutex_lock(&pool_lock);
	pthread_mutex_lock(&w->lock);
	for (struct sock_lane **p = &w->lanes; *p; p = &(*p)->next) {
		if (*p == lane) {
			*p = lane->next;
			break;
		}
	}
	w->fds_needed -= lane_fds(lane);
	w->gen++;
	pthread_mutex_unlock(&w->lock);
	w->nlanes--;
	pthread_mutex_unlock(&pool_lock);
	/* Out of a poll that may hold the comm's descriptors, which are about to close. */
	eventfd_write(w->efd, 1);
}

void sock_lane_wake(struct sock_lane *lane)
{
	struct sock_worker *w = lane->worker;
	if (atomic_exchange(&w->sleeping, 0))
		eventfd_write(w->efd, 1);
}

void sock_lane_kick(struct sock_lane *lane)
{
	if (lane->worker)
		eventfd_write(lane->worker->efd, 1);
}

int sock_pool_workers(void)
{
	pthread_mutex_lock(&pool_lock);
	int n = nworkers;
	pthread_mutex_unlock(&pool_lock);
	return n;
}
