/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The socket transport's worker pool (plugin/transport/socket/pool.c): however many connections
 * a process holds, it runs at most RCMOE_SOCKET_WORKERS transport threads, and every connection
 * still moves its data exactly, also when one worker serves them all; one connection's lanes go
 * to distinct workers while there are enough, so a single peer keeps its parallelism.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sock_test.h"
#include "test_log.h"
#include "transport/socket/socket.h"

TestSuite(socket_pool, .init = test_log_init, .timeout = 240);

#define NCONN 16
#define MSG   (3u << 20) /* several pieces per message: every lane of a connection works */

/* Threads of this process, as a snapshot of their ids, so that a test counts only the threads
 * that appeared after it took one. */
#define MAX_TIDS 4096
struct tids {
	int n;
	long id[MAX_TIDS];
};

static void snapshot(struct tids *t)
{
	DIR *d = opendir("/proc/self/task");
	cr_assert_not_null(d);
	t->n = 0;
	for (struct dirent *e; (e = readdir(d)) && t->n < MAX_TIDS;)
		if (e->d_name[0] != '.')
			t->id[t->n++] = atol(e->d_name);
	closedir(d);
}

static bool has_tid(const struct tids *t, long id)
{
	for (int i = 0; i < t->n; i++)
		if (t->id[i] == id)
			return true;
	return false;
}

/* ThreadSanitizer runs one background thread of its own (seen: exactly one more thread than
 * the transport's under it); no other tool adds any. */
#ifdef __SANITIZE_THREAD__
#define TOOL_THREADS 1
#else
#define TOOL_THREADS 0
#endif

/* New since `before`: threads named as the transport's workers, and all others. */
struct new_threads {
	int workers, others;
};

static struct new_threads count_new(const struct tids *before)
{
	struct tids now;
	struct new_threads n = { 0, 0 };
	snapshot(&now);
	for (int i = 0; i < now.n; i++) {
		if (has_tid(before, now.id[i]))
			continue;
		char path[64], name[32] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%ld/comm", now.id[i]);
		FILE *f = fopen(path, "r");
		if (!f)
			continue; /* it ended meanwhile */
		if (!fgets(name, sizeof(name), f))
			name[0] = 0;
		fclose(f);
		name[strcspn(name, "\n")] = 0;
		if (strcmp(name, SOCK_WORKER_NAME) == 0)
			n.workers++;
		else
			n.others++;
	}
	return n;
}

static void keep_most(struct new_threads *most, struct new_threads n)
{
	most->workers = n.workers > most->workers ? n.workers : most->workers;
	most->others = n.others > most->others ? n.others : most->others;
}

struct conns {
	struct st_pair first; /* its listener takes every connection */
	struct rcmoe_tsend *s[NCONN];
	struct rcmoe_trecv *r[NCONN];
};

static void open_conns(struct conns *c)
{
	st_pair_open(&c->first);
	c->s[0] = c->first.s;
	c->r[0] = c->first.r;
	for (int i = 1; i < NCONN; i++)
		st_connect_accept(&c->first, &c->s[i], &c->r[i]);
}

static void close_conns(struct conns *c)
{
	for (int i = 1; i < NCONN; i++) {
		cr_assert_eq(OPS->close_send(c->s[i]), RCMOE_OK);
		cr_assert_eq(OPS->close_recv(c->r[i]), RCMOE_OK);
	}
	st_pair_close(&c->first);
}

/* One message on every connection at once, each its own pattern; all must arrive exact. Counts
 * the most new threads (since `before`) seen while they moved into *most. */
static void exchange_all(struct conns *c, unsigned seed, const struct tids *before,
			 struct new_threads *most)
{
	static uint8_t *src[NCONN], *dst[NCONN];
	struct rcmoe_treq *sreq[NCONN], *rreq[NCONN];
	struct st_place pl[NCONN];
	for (int i = 0; i < NCONN; i++) {
		src[i] = malloc(MSG);
		dst[i] = calloc(1, MSG);
		cr_assert(src[i] && dst[i]);
		st_fill(src[i], MSG, seed + (unsigned)i);
		pl[i] = (struct st_place){ .dest = dst[i] };
		rreq[i] = st_irecv(c->r[i], MSG, 7, &pl[i]);
		sreq[i] = st_isend(c->s[i], src[i], MSG, 7, 0);
	}
	int left = 2 * NCONN;
	double end = st_now() + 60;
	while (left > 0) {
		cr_assert(st_now() < end, "%d of %d transfers not done after 60 s", left,
			  2 * NCONN);
		for (int i = 0; i < NCONN; i++) {
			struct rcmoe_treq **reqs[2] = { &sreq[i], &rreq[i] };
			for (int k = 0; k < 2; k++) {
				int done = 0;
				size_t len = 0;
				uint32_t flags = 0;
				if (!*reqs[k])
					continue;
				cr_assert_eq(OPS->test(*reqs[k], &done, &len, &flags), RCMOE_OK);
				if (done) {
					cr_assert_eq(len, MSG);
					*reqs[k] = NULL;
					left--;
				}
			}
		}
		keep_most(most, count_new(before));
	}
	for (int i = 0; i < NCONN; i++) {
		size_t bad = st_check(dst[i], MSG, seed + (unsigned)i);
		cr_assert_eq(bad, (size_t)-1, "connection %d: byte %zu differs", i, bad);
		free(src[i]);
		free(dst[i]);
	}
}

/* 16 connections of 4 lanes at each end (128 lanes) in one process: the old design ran a thread
 * per lane; the pool runs at most RCMOE_SOCKET_WORKERS = 3. */
Test(socket_pool, threads_bounded_by_workers)
{
	const char *env[] = { "RCMOE_SOCKET_WORKERS=3", "RCMOE_SOCKET_NSTREAMS=8",
			      "RCMOE_SOCKET_NTHREADS=4", NULL };
	struct tids before;
	struct new_threads most = { 0, 0 };
	snapshot(&before);
	st_init(env);
	struct conns c;
	open_conns(&c);
	exchange_all(&c, 100, &before, &most);
	exchange_all(&c, 200, &before, &most);
	cr_assert_eq(sock_pool_workers(), 3, "%d workers started, 3 allowed and needed",
		     sock_pool_workers());
	cr_assert_eq(most.workers, 3, "%d worker threads seen", most.workers);
	cr_assert(most.others <= TOOL_THREADS,
		  "%d other new threads with %d connections (at most %d expected)", most.others,
		  NCONN, TOOL_THREADS);
	close_conns(&c);
	cr_assert_eq(test_log_warn_count(), 0);
}

/* One connection's 4 lanes at each end land on 4 distinct workers, so a single peer is moved
 * by 4 threads in parallel, as before the pool. */
Test(socket_pool, one_connection_lanes_on_distinct_workers)
{
	const char *env[] = { "RCMOE_SOCKET_WORKERS=8", "RCMOE_SOCKET_NSTREAMS=8",
			      "RCMOE_SOCKET_NTHREADS=4", NULL };
	st_init(env);
	struct st_pair p;
	st_pair_open(&p);
	struct sock_comm *ends[2] = { sock_send_comm(p.s), sock_recv_comm(p.r) };
	for (int e = 0; e < 2; e++) {
		struct sock_comm *comm = ends[e];
		cr_assert_eq(comm->nlanes, 4);
		for (int a = 0; a < comm->nlanes; a++)
			for (int b = a + 1; b < comm->nlanes; b++)
				cr_assert_neq(comm->lanes[a].worker, comm->lanes[b].worker,
					      "%s comm: lanes %d and %d share a worker",
					      e ? "receive" : "send", a, b);
	}
	cr_assert_eq(sock_pool_workers(), 8, "8 lanes in all, 8 workers allowed: %d started",
		     sock_pool_workers());
	st_exchange(&p, 8u << 20, 8u << 20, 5);
	st_pair_close(&p);
	cr_assert_eq(test_log_warn_count(), 0);
}

/* A single worker serves every lane of both ends of every connection, heartbeats included. */
Test(socket_pool, one_worker_serves_everything)
{
	const char *env[] = { "RCMOE_SOCKET_WORKERS=1", "RCMOE_SOCKET_NSTREAMS=4",
			      "RCMOE_SOCKET_NTHREADS=2", NULL };
	struct tids before;
	struct new_threads most = { 0, 0 };
	snapshot(&before);
	st_init(env);
	struct conns c;
	open_conns(&c);
	exchange_all(&c, 300, &before, &most);
	cr_assert_eq(sock_pool_workers(), 1);
	cr_assert_eq(most.workers, 1, "%d worker threads seen", most.workers);
	cr_assert(most.others <= TOOL_THREADS, "%d other new threads (at most %d expected)",
		  most.others, TOOL_THREADS);
	close_conns(&c);
	cr_assert_eq(test_log_warn_count(), 0);
}

/* CPU time (clock ticks, user + system) of the worker threads that are new since `before`. */
static long worker_ticks(const struct tids *before)
{
	struct tids now;
	long ticks = 0;
	snapshot(&now);
	for (int i = 0; i < now.n; i++) {
		if (has_tid(before, now.id[i]))
			continue;
		char path[64], line[512] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%ld/stat", now.id[i]);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(line, sizeof(line), f))
			line[0] = 0;
		fclose(f);
		const char *rest = strrchr(line, ')'); /* the name may hold spaces */
		unsigned long utime = 0, stime = 0;
		/* After ") ": state, then fields 4..13, then utime (14) and stime (15). */
		if (rest && sscanf(rest + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
				   &utime, &stime) == 2)
			ticks += (long)(utime + stime);
	}
	return ticks;
}

/* A send whose receiver posts nothing fills the socket buffers; its workers must then sleep in
 * poll() until there is room, not spin: a pool worker that looked at every non-empty queue
 * before sleeping went round at once while a stream waited for its socket, and the busy
 * workers of 4 ranks on one host halved their busbw (H100, 2026-12-07). */
Test(socket_pool, a_send_waiting_for_room_sleeps)
{
	const char *env[] = { "RCMOE_SOCKET_WORKERS=8", "RCMOE_SOCKET_NSTREAMS=8",
			      "RCMOE_SOCKET_NTHREADS=4", NULL };
	const size_t len = 64u << 20; /* far more than the socket buffers of 8 streams hold */
	struct tids before;
	snapshot(&before);
	st_init(env);
	struct st_pair p;
	st_pair_open(&p);
	uint8_t *src = malloc(len), *dst = calloc(1, len);
	cr_assert(src && dst);
	st_fill(src, len, 11);
	struct rcmoe_treq *s = st_isend(p.s, src, len, 3, 0);
	st_sleep_ms(300); /* the buffers fill */
	long t0 = worker_ticks(&before);
	double w0 = st_now();
	st_sleep_ms(1000);
	long ticks = worker_ticks(&before) - t0;
	double wall = st_now() - w0;
	long hz = sysconf(_SC_CLK_TCK);
	/* Spinning, the 4 sending workers take about 4 s of CPU in this second; asleep, none. */
	cr_expect(ticks < hz / 5,
		  "the workers used %.2f s of CPU in %.2f s while the send waited for room",
		  (double)ticks / (double)hz, wall);
	struct st_place pl = { .dest = dst };
	struct rcmoe_treq *r = st_irecv(p.r, len, 3, &pl);
	size_t got = 0;
	cr_assert_eq(st_wait(r, 60, &got, NULL), RCMOE_OK);
	cr_assert_eq(got, len);
	cr_assert_eq(st_wait(s, 60, &got, NULL), RCMOE_OK);
	cr_assert_eq(st_check(dst, len, 11), (size_t)-1, "the message arrived changed");
	free(src);
	free(dst);
	st_pair_close(&p);
	cr_assert_eq(test_log_warn_count(), 0);
}
