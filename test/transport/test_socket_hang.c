/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Socket transport, peers that hang instead of dying: the peer is a real process of its own,
 * stopped with SIGSTOP, so its kernel keeps the connection up (answers keepalive, acknowledges
 * what fits in its buffers) while nothing of it runs. test must then fail within about
 * RCMOE_SOCKET_TIMEOUT, naming the peer; a peer that is alive but slow must never be failed.
 *
 * Each test forks before it creates a comm (listen and init start no thread), so the child
 * starts its own transport workers; the child only uses the ops table and talks to the parent
 * through pipes. Children die with the test's process (PR_SET_PDEATHSIG) even when an assertion
 * ends the test before its cleanup.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sock_test.h"
#include "test_log.h"
#include "transport/socket/socket.h"

TestSuite(socket_hang, .init = test_log_init, .timeout = 120);

#define TIMEOUT_S 2
static const char *const hang_env[] = { "RCMOE_SOCKET_TIMEOUT=2", "RCMOE_SOCKET_NSTREAMS=2",
					"RCMOE_SOCKET_NTHREADS=2", NULL };
/* Multi-piece (two 64 MiB pieces) and far larger than what loopback sockets buffer, so a
 * stopped peer leaves it in the middle. */
#define BIG_LEN (128u << 20)
/* A hang must be reported within this long of the stop. */
#define HANG_BOUND_S (2.0 * TIMEOUT_S + 1.0)

struct child {
	pid_t pid;
	int rd; /* parent reads what the child writes */
	int wr; /* parent writes, the child reads */
};

/* ---- the child's side (no Criterion here: failures end the child with a status) ---- */

static void child_put(int fd, const void *buf, size_t len)
{
	if (write(fd, buf, len) != (ssize_t)len)
		_exit(10);
}

static void child_get(int fd, void *buf, size_t len)
{
	if (read(fd, buf, len) != (ssize_t)len)
		_exit(11);
}

static struct rcmoe_tsend *child_connect(const uint8_t *handle)
{
	struct rcmoe_tsend *s = NULL;
	double end = st_now() + 10;
	while (!s && st_now() < end)
		if (OPS->connect(0, handle, &s) != RCMOE_OK)
			_exit(12);
	if (!s)
		_exit(13);
	return s;
}

/* The child's receiving side: listen (*l), hand the handle to the parent through `wr`, accept
 * within 10 s (exit codes 30-32 name the step that failed). */
static struct rcmoe_trecv *child_listen_accept(int wr, struct rcmoe_tlisten **l)
{
	uint8_t h[128];
	struct rcmoe_trecv *r = NULL;
	if (OPS->listen(0, h, l) != RCMOE_OK)
		_exit(30);
	child_put(wr, h, sizeof(h));
	double end = st_now() + 10;
	while (!r && st_now() < end)
		if (OPS->accept(*l, &r) != RCMOE_OK)
			_exit(31);
	if (!r)
		_exit(32);
	return r;
}

/* Send `len` bytes of pattern `seed` and wait until the send is done. */
static void child_send(struct rcmoe_tsend *s, size_t len, unsigned seed)
{
	uint8_t *src = malloc(len);
	struct rcmoe_treq *req = NULL;
	int done = 0;
	if (!src)
		_exit(14);
	st_fill(src, len, seed);
	while (!req)
		if (OPS->isend(s, src, len, NULL, 1, 0, &req) != RCMOE_OK)
			_exit(15);
	while (!done)
		if (OPS->test(req, &done, NULL, NULL) != RCMOE_OK)
			_exit(16);
	free(src);
}

/* Wait for the parent's command, or forever. The transport workers go on meanwhile. */
static char child_wait(int fd)
{
	char cmd;
	child_get(fd, &cmd, 1);
	return cmd;
}

/* ---- the parent's side ---- */

static void spawn(struct child *ch, void (*body)(int rd, int wr, const uint8_t *handle),
		  const uint8_t *handle)
{
	int up[2], down[2];
	cr_assert_eq(pipe(up), 0);
	cr_assert_eq(pipe(down), 0);
	pid_t parent = getpid();
	ch->pid = fork();
	cr_assert(ch->pid >= 0);
	if (ch->pid == 0) {
		/* Never outlive the test, stopped or not. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(20);
		close(up[0]);
		close(down[1]);
		body(down[0], up[1], handle);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	ch->rd = up[0];
	ch->wr = down[1];
}

static void expect_from_child(struct child *ch, void *buf, size_t len)
{
	struct pollfd pfd = { .fd = ch->rd, .events = POLLIN };
	cr_assert_eq(poll(&pfd, 1, 20000), 1, "the child said nothing within 20 s");
	cr_assert_eq(read(ch->rd, buf, len), (ssize_t)len, "the child ended early");
}

static void tell_child(struct child *ch, char cmd)
{
	cr_assert_eq(write(ch->wr, &cmd, 1), 1);
}

/* SIGSTOP the child and wait until it is stopped; returns the time it was. */
static double stop_child(struct child *ch)
{
	int status = 0;
	cr_assert_eq(kill(ch->pid, SIGSTOP), 0);
	cr_assert_eq(waitpid(ch->pid, &status, WUNTRACED), ch->pid);
	cr_assert(WIFSTOPPED(status), "child status 0x%x", status);
	return st_now();
}

/* Kill (also when stopped) and reap. */
static void reap(struct child *ch)
{
	int status;
	kill(ch->pid, SIGKILL);
	kill(ch->pid, SIGCONT);
	waitpid(ch->pid, &status, 0);
	close(ch->rd);
	close(ch->wr);
}

/* Let a child that must end by itself finish, and check that it did well. */
static void join(struct child *ch)
{
	int status = 0;
	tell_child(ch, 'q');
	cr_assert_eq(waitpid(ch->pid, &status, 0), ch->pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: status 0x%x",
		  status);
	close(ch->rd);
	close(ch->wr);
}

/* Call test until done or error, at most `limit` seconds (a hang fails the test). */
static rcmoe_status_t wait_req(struct rcmoe_treq *req, double limit, size_t *len)
{
	double end = st_now() + limit;
	int done = 0;
	for (;;) {
		rcmoe_status_t st = OPS->test(req, &done, len, NULL);
		if (st != RCMOE_OK || done)
			return st;
		cr_assert(st_now() < end, "neither done nor failed within %.0f s", limit);
	}
}

/* A receive that the stopped peer leaves hanging fails in time, with one WARN that names the
 * peer and says what was missing. */
static void expect_hang_reported(struct rcmoe_treq *req, double stopped_at, int warns,
				 const char *what)
{
	rcmoe_status_t st = wait_req(req, 15, NULL);
	double dt = st_now() - stopped_at;
	cr_assert_eq(st, RCMOE_ERR_REMOTE, "status %s", rcmoe_status_str(st));
	fprintf(stderr, "# %s: error %.2f s after the stop (RCMOE_SOCKET_TIMEOUT=%d)\n", what, dt,
		TIMEOUT_S);
	cr_assert_lt(dt, HANG_BOUND_S, "the hang was reported %.1f s after the stop", dt);
	cr_assert_eq(test_log_warn_count(), warns + 1, "expected exactly one WARN");
	const char *w = st_last_warn();
	cr_assert(strstr(w, "127.0.0.1:"), "the WARN does not name the peer: %s", w);
	cr_assert(strstr(w, what), "the WARN does not say '%s': %s", what, w);
}

/* ---- 1: the sender stops before it sends; a receive is posted ---- */

static void idle_sender(int rd, int wr, const uint8_t *handle)
{
	struct rcmoe_tsend *s = child_connect(handle);
	child_put(wr, "c", 1);
	child_wait(rd);
	OPS->close_send(s);
}

Test(socket_hang, sender_stopped_before_sending)
{
	st_init(hang_env);
	st_capture_warn();
	uint8_t handle[128];
	struct rcmoe_tlisten *l;
	cr_assert_eq(OPS->listen(0, handle, &l), RCMOE_OK);
	struct child ch;
	spawn(&ch, idle_sender, handle);
	struct rcmoe_trecv *r = st_accept_one(l);
	char c;
	expect_from_child(&ch, &c, 1);
	uint8_t dst[4096];
	struct st_place pl = { .dest = dst };
	struct rcmoe_treq *rr = st_irecv(r, sizeof(dst), 1, &pl);
	/* A live sender with nothing to send: the receive just waits. */
	double end = st_now() + 0.5;
	int done = 0;
	while (st_now() < end) {
		cr_assert_eq(OPS->test(rr, &done, NULL, NULL), RCMOE_OK);
		cr_assert_eq(done, 0);
	}
	int warns = test_log_warn_count();
	double t0 = stop_child(&ch);
	expect_hang_reported(rr, t0, warns, "message 0");
	cr_assert_eq(pl.calls, 0);
	reap(&ch);
	cr_assert_eq(OPS->close_recv(r), RCMOE_OK);
	cr_assert_eq(OPS->close_listen(l), RCMOE_OK);
}

/* ---- 2: the sender stops in the middle of a large message ---- */

static void big_sender(int rd, int wr, const uint8_t *handle)
{
	struct rcmoe_tsend *s = child_connect(handle);
	uint8_t *src = calloc(1, BIG_LEN);
	struct rcmoe_treq *req = NULL;
	if (!src)
		_exit(14);
	while (!req)
		if (OPS->isend(s, src, BIG_LEN, NULL, 1, 0, &req) != RCMOE_OK)
			_exit(15);
	child_put(wr, "s", 1); /* isend wrote the header; the transport workers move the payload */
	child_wait(rd);
}

Test(socket_hang, sender_stopped_mid_message)
{
	st_init(hang_env);
	st_capture_warn();
	uint8_t handle[128];
	struct rcmoe_tlisten *l;
	cr_assert_eq(OPS->listen(0, handle, &l), RCMOE_OK);
	struct child ch;
	spawn(&ch, big_sender, handle);
	struct rcmoe_trecv *r = st_accept_one(l);
	char c;
	expect_from_child(&ch, &c, 1);
	/* Let the sender fill the sockets' buffers, stop it, then receive what it got out: the
	 * message stops in its middle. */
	st_sleep_ms(300);
	int warns = test_log_warn_count();
	stop_child(&ch);
	uint8_t *dst = malloc(BIG_LEN);
	cr_assert_not_null(dst);
	struct st_place pl = { .dest = dst };
	/* The clock starts with the receive: the bound counts from there. */
	double t0 = st_now();
	struct rcmoe_treq *rr = st_irecv(r, BIG_LEN, 1, &pl);
	expect_hang_reported(rr, t0, warns, "of 134217728 bytes of message 0");
	cr_assert_eq(pl.calls, 1, "the header had arrived");
	reap(&ch);
	cr_assert_eq(OPS->close_recv(r), RCMOE_OK);
	cr_assert_eq(OPS->close_listen(l), RCMOE_OK);
	free(dst);
}

/* ---- 3: a live sender that computes for 3x the timeout before it sends ---- */

static void slow_sender(int rd, int wr, const uint8_t *handle)
{
	struct rcmoe_tsend *s = child_connect(handle);
	child_put(wr, "c", 1);
	st_sleep_ms(3 * TIMEOUT_S * 1000); /* "compute"; only the transport workers run */
	child_send(s, 8u << 20, 3);
	child_send(s, 1000, 4); /* and an inline one */
	child_wait(rd);
	OPS->close_send(s);
}

Test(socket_hang, slow_sender_is_not_failed)
{
	st_init(hang_env);
	st_capture_warn();
	uint8_t handle[128];
	struct rcmoe_tlisten *l;
	cr_assert_eq(OPS->listen(0, handle, &l), RCMOE_OK);
	struct child ch;
	spawn(&ch, slow_sender, handle);
	struct rcmoe_trecv *r = st_accept_one(l);
	char c;
	expect_from_child(&ch, &c, 1);
	const size_t len = 8u << 20;
	uint8_t *dst = malloc(len);
	cr_assert_not_null(dst);
	struct st_place pl = { .dest = dst }, pl2 = { .dest = dst };
	double t0 = st_now();
	struct rcmoe_treq *rr = st_irecv(r, len, 1, &pl);
	size_t n = 0;
	cr_assert_eq(wait_req(rr, 30, &n), RCMOE_OK);
	fprintf(stderr, "# slow sender: received after %.2f s\n", st_now() - t0);
	cr_assert_geq(st_now() - t0, 2.0 * TIMEOUT_S, "the sender did not take its time");
	cr_assert_eq(n, len);
	cr_assert_eq(st_check(dst, len, 3), (size_t)-1);
	rr = st_irecv(r, len, 1, &pl2);
	cr_assert_eq(wait_req(rr, 10, &n), RCMOE_OK);
	cr_assert_eq(n, 1000);
	cr_assert_eq(st_check(dst, 1000, 4), (size_t)-1);
	cr_assert_eq(test_log_warn_count(), 0, "WARN: %s", st_last_warn());
	join(&ch);
	cr_assert_eq(OPS->close_recv(r), RCMOE_OK);
	cr_assert_eq(OPS->close_listen(l), RCMOE_OK);
	free(dst);
}

/* ---- 4: the receiver stops while a large send is outstanding ---- */

static void stopping_receiver(int rd, int wr, const uint8_t *handle)
{
	(void)rd;
	(void)handle;
	struct rcmoe_tlisten *l;
	struct rcmoe_trecv *r = child_listen_accept(wr, &l);
	uint8_t *dst = malloc(BIG_LEN);
	struct st_place pl = { .dest = dst };
	struct rcmoe_treq *req = NULL;
	int done = 0;
	while (!req)
		if (!dst || OPS->irecv(r, BIG_LEN, 1, st_place_fn, &pl, &req) != RCMOE_OK)
			_exit(33);
	child_put(wr, "r", 1); /* posted: the parent may send */
	while (pl.calls == 0)
		if (OPS->test(req, &done, NULL, NULL) != RCMOE_OK)
			_exit(34);
	/* The payload is moving: hang here, transport workers included. */
	kill(getpid(), SIGSTOP);
	_exit(35);
}

Test(socket_hang, receiver_stopped_mid_message)
{
	st_init(hang_env);
	st_capture_warn();
	struct child ch;
	spawn(&ch, stopping_receiver, NULL);
	uint8_t handle[128];
	expect_from_child(&ch, handle, sizeof(handle));
	struct rcmoe_tsend *s = st_connect_one(handle);
	uint8_t *src = calloc(1, BIG_LEN);
	cr_assert_not_null(src);
	char c;
	expect_from_child(&ch, &c, 1);
	int warns = test_log_warn_count();
	struct rcmoe_treq *sr = st_isend(s, src, BIG_LEN, 1, 0);
	/* Keep the send going until the receiver has stopped itself. */
	int status = 0, done = 0;
	while (waitpid(ch.pid, &status, WUNTRACED | WNOHANG) == 0) {
		rcmoe_status_t st = OPS->test(sr, &done, NULL, NULL);
		cr_assert_eq(st, RCMOE_OK, "send failed before the receiver stopped: %s (%s)",
			     rcmoe_status_str(st), st_last_warn());
		cr_assert_eq(done, 0, "the whole message went before the receiver stopped");
	}
	cr_assert(WIFSTOPPED(status), "the receiver did not stop: status 0x%x", status);
	expect_hang_reported(sr, st_now(), warns, "message 0");
	reap(&ch);
	cr_assert_eq(OPS->close_send(s), RCMOE_OK);
	free(src);
}

/* ---- 5: no receive posted for 3x the timeout, then one is, and the sender sends ---- */

static void on_demand_sender(int rd, int wr, const uint8_t *handle)
{
	struct rcmoe_tsend *s = child_connect(handle);
	child_put(wr, "c", 1);
	while (child_wait(rd) == 's') {
		child_send(s, 1u << 20, 5);
		child_send(s, 100, 6);
		child_put(wr, "d", 1);
	}
	OPS->close_send(s);
}

Test(socket_hang, idle_connection_then_receive)
{
	st_init(hang_env);
	st_capture_warn();
	uint8_t handle[128];
	struct rcmoe_tlisten *l;
	cr_assert_eq(OPS->listen(0, handle, &l), RCMOE_OK);
	struct child ch;
	spawn(&ch, on_demand_sender, handle);
	struct rcmoe_trecv *r = st_accept_one(l);
	char c;
	expect_from_child(&ch, &c, 1);
	/* Nothing posted: heartbeats pile up unread and must not matter. */
	st_sleep_ms(3 * TIMEOUT_S * 1000);
	const size_t len = 1u << 20;
	uint8_t *dst = malloc(len), *dst2 = malloc(100);
	cr_assert(dst && dst2);
	struct st_place pl = { .dest = dst }, pl2 = { .dest = dst2 };
	struct rcmoe_treq *rr = st_irecv(r, len, 1, &pl);
	struct rcmoe_treq *rr2 = st_irecv(r, 100, 1, &pl2);
	/* Posted and waiting for 1.5x the timeout: only fresh heartbeats keep it alive. */
	double end = st_now() + 1.5 * TIMEOUT_S;
	int done = 0;
	while (st_now() < end) {
		cr_assert_eq(OPS->test(rr, &done, NULL, NULL), RCMOE_OK, "WARN: %s",
			     st_last_warn());
		cr_assert_eq(done, 0);
	}
	tell_child(&ch, 's');
	size_t n = 0;
	cr_assert_eq(wait_req(rr, 10, &n), RCMOE_OK, "WARN: %s", st_last_warn());
	cr_assert_eq(n, len);
	cr_assert_eq(st_check(dst, len, 5), (size_t)-1);
	cr_assert_eq(wait_req(rr2, 10, &n), RCMOE_OK);
	cr_assert_eq(n, 100);
	cr_assert_eq(st_check(dst2, 100, 6), (size_t)-1);
	expect_from_child(&ch, &c, 1);
	cr_assert_eq(test_log_warn_count(), 0, "WARN: %s", st_last_warn());
	join(&ch);
	cr_assert_eq(OPS->close_recv(r), RCMOE_OK);
	cr_assert_eq(OPS->close_listen(l), RCMOE_OK);
	free(dst);
	free(dst2);
}

/* ---- 6-8: a send outstanding while its receiver is late (alive) or stopped ---- */

/* Far more than loopback sockets buffer (so the sender is left waiting on the receiver), and
 * in several pieces. */
#define LATE_LEN (64u << 20)
/* A stopped receiver must fail the outstanding send within this long: about the timeout (1.5 s
 * measured alone), with the slack HANG_BOUND_S gives, because on the 2-core CI machine, beside
 * the soak tests, the worker that notices waited for a core (4.2 s seen at 4f197c2). */
#define SEND_HANG_BOUND_S HANG_BOUND_S
/* Inline messages (each rides on the control socket), pattern INL_SEED + i. */
#define INL_N    SOCK_MAX_REQS
#define INL_LEN  60000
#define INL_SEED 100u

/* The child receives the INL_N inline messages; true when all are exact. */
static bool child_recv_inline(struct rcmoe_trecv *r, uint8_t *dst)
{
	struct st_place pl[INL_N];
	struct rcmoe_treq *req[INL_N];
	for (int i = 0; i < INL_N; i++) {
		pl[i] = (struct st_place){ .dest = dst + (size_t)i * INL_LEN };
		req[i] = NULL;
		while (!req[i])
			if (OPS->irecv(r, INL_LEN, 1, st_place_fn, &pl[i], &req[i]) != RCMOE_OK)
				_exit(36);
	}
	bool ok = true;
	for (int i = 0; i < INL_N; i++) {
		int done = 0;
		size_t n = 0;
		while (!done)
			if (OPS->test(req[i], &done, &n, NULL) != RCMOE_OK)
				_exit(37);
		ok = ok && n == INL_LEN &&
		     st_check(dst + (size_t)i * INL_LEN, INL_LEN, INL_SEED + (unsigned)i) ==
			     (size_t)-1;
	}
	return ok;
}

/* The receiving child: listens, hands the parent its handle, accepts, then obeys: 'r' posts a
 * receive of LATE_LEN and waits for it, 'i' receives the INL_N inline messages (then reports a
 * byte: 'k' when the data is exact and no WARN was logged, else 'x'), 'q' ends. Waiting for a
 * command it reads no socket: only its transport workers run. */
static void late_receiver(int rd, int wr, const uint8_t *handle)
{
	(void)handle;
	struct rcmoe_tlisten *l;
	struct rcmoe_trecv *r = child_listen_accept(wr, &l);
	int warns = test_log_warn_count();
	child_put(wr, "a", 1);
	uint8_t *dst = malloc(LATE_LEN);
	if (!dst)
		_exit(33);
	char cmd;
	while ((cmd = child_wait(rd)) != 'q') {
		if (cmd == 'i') {
			bool ok = child_recv_inline(r, dst) && test_log_warn_count() == warns;
			child_put(wr, ok ? "k" : "x", 1);
			continue;
		}
		struct st_place pl = { .dest = dst };
		struct rcmoe_treq *req = NULL;
		int done = 0;
		size_t n = 0;
		while (!req)
			if (OPS->irecv(r, LATE_LEN, 1, st_place_fn, &pl, &req) != RCMOE_OK)
				_exit(34);
		while (!done)
			if (OPS->test(req, &done, &n, NULL) != RCMOE_OK)
				_exit(35);
		bool ok = n == LATE_LEN && st_check(dst, LATE_LEN, 11) == (size_t)-1 &&
			  test_log_warn_count() == warns;
		child_put(wr, ok ? "k" : "x", 1);
	}
	free(dst);
	OPS->close_recv(r);
	OPS->close_listen(l);
}

/* Start a late_receiver child and connect to it. */
static struct rcmoe_tsend *connect_late_receiver(struct child *ch)
{
	spawn(ch, late_receiver, NULL);
	uint8_t handle[128];
	expect_from_child(ch, handle, sizeof(handle));
	struct rcmoe_tsend *s = st_connect_one(handle);
	char c;
	expect_from_child(ch, &c, 1);
	return s;
}

/* Keep testing an outstanding send for `secs`: it must neither fail nor finish. */
static void send_stays_pending(struct rcmoe_treq *sr, double secs)
{
	double end = st_now() + secs;
	while (st_now() < end) {
		int done = 0;
		rcmoe_status_t st = OPS->test(sr, &done, NULL, NULL);
		cr_assert_eq(st, RCMOE_OK,
			     "the send to a live receiver failed after %.1f s: %s (%s)",
			     secs - (end - st_now()), rcmoe_status_str(st), st_last_warn());
		cr_assert_eq(done, 0, "the whole message went although nothing reads it");
	}
}

/* A send that its stopped receiver leaves outstanding fails in time, with one WARN that names
 * the peer and the message. */
static void expect_send_hang_reported(struct rcmoe_treq *sr, double stopped_at, int warns)
{
	rcmoe_status_t st = wait_req(sr, 15, NULL);
	double dt = st_now() - stopped_at;
	cr_assert_eq(st, RCMOE_ERR_REMOTE, "status %s", rcmoe_status_str(st));
	fprintf(stderr,
		"# send to a stopped receiver: error %.2f s after the stop "
		"(RCMOE_SOCKET_TIMEOUT=%d)\n",
		dt, TIMEOUT_S);
	cr_assert_lt(dt, SEND_HANG_BOUND_S, "the hang was reported %.1f s after the stop", dt);
	cr_assert_eq(test_log_warn_count(), warns + 1, "expected exactly one WARN");
	const char *w = st_last_warn();
	cr_assert(strstr(w, "127.0.0.1:"), "the WARN does not name the peer: %s", w);
	cr_assert(strstr(w, "message 0"), "the WARN does not name the message: %s", w);
}

/* The late receiver got everything: its 'k' (data exact, no WARN there), no WARN here either. */
static void late_receiver_done(struct child *ch, struct rcmoe_tsend *s)
{
	char c = 0;
	expect_from_child(ch, &c, 1);
	cr_assert_eq(c, 'k', "the receiver got wrong data or logged a WARN");
	cr_assert_eq(test_log_warn_count(), 0, "WARN: %s", st_last_warn());
	join(ch);
	cr_assert_eq(OPS->close_send(s), RCMOE_OK);
}

/* 6: the receiving rank reaches the collective 3x the timeout late (a checkpoint, a straggler):
 * its socket buffers are full all that time and nothing reads them. The send must wait, then
 * complete once the receive is posted. */
Test(socket_hang, late_receiver_does_not_fail_the_send)
{
	st_init(hang_env);
	st_capture_warn();
	struct child ch;
	struct rcmoe_tsend *s = connect_late_receiver(&ch);
	uint8_t *src = malloc(LATE_LEN);
	cr_assert_not_null(src);
	st_fill(src, LATE_LEN, 11);
	struct rcmoe_treq *sr = st_isend(s, src, LATE_LEN, 1, 0);
	send_stays_pending(sr, 3 * TIMEOUT_S);
	tell_child(&ch, 'r');
	cr_assert_eq(wait_req(sr, 20, NULL), RCMOE_OK, "WARN: %s", st_last_warn());
	late_receiver_done(&ch, s);
	free(src);
}

/* 6b: the same with small messages, which ride on the control socket: the sender's control
 * socket (given a small buffer) and the receiver's fill up and stay full. */
Test(socket_hang, late_receiver_of_inline_messages)
{
	st_init(hang_env);
	st_capture_warn();
	struct child ch;
	struct rcmoe_tsend *s = connect_late_receiver(&ch);
	int small = 4096;
	cr_assert_eq(setsockopt(sock_send_comm(s)->ctrl_fd, SOL_SOCKET, SO_SNDBUF, &small,
				sizeof(small)),
		     0);
	uint8_t *src = malloc((size_t)INL_N * INL_LEN);
	cr_assert_not_null(src);
	struct rcmoe_treq *sr[INL_N];
	for (int i = 0; i < INL_N; i++) {
		st_fill(src + (size_t)i * INL_LEN, INL_LEN, INL_SEED + (unsigned)i);
		sr[i] = st_isend(s, src + (size_t)i * INL_LEN, INL_LEN, 1, 0);
	}
	/* Keep testing the last one: it cannot go until the receiver reads. */
	send_stays_pending(sr[INL_N - 1], 1.5 * TIMEOUT_S);
	tell_child(&ch, 'i');
	for (int i = 0; i < INL_N; i++)
		cr_assert_eq(wait_req(sr[i], 20, NULL), RCMOE_OK, "message %d; WARN: %s", i,
			     st_last_warn());
	late_receiver_done(&ch, s);
	free(src);
}

/* 7: the receiver is stopped before the send; nothing of it will ever read. */
Test(socket_hang, stopped_receiver_fails_the_send)
{
	st_init(hang_env);
	st_capture_warn();
	struct child ch;
	struct rcmoe_tsend *s = connect_late_receiver(&ch);
	uint8_t *src = calloc(1, LATE_LEN);
	cr_assert_not_null(src);
	int warns = test_log_warn_count();
	double t0 = stop_child(&ch);
	struct rcmoe_treq *sr = st_isend(s, src, LATE_LEN, 1, 0);
	expect_send_hang_reported(sr, t0, warns);
	reap(&ch);
	cr_assert_eq(OPS->close_send(s), RCMOE_OK);
	free(src);
}

/* 8: a live receiver leaves the send unread for 1.5x the timeout (which must not matter), then
 * stops: from then on, the send fails within the timeout. */
Test(socket_hang, receiver_stopped_while_late_fails_the_send)
{
	st_init(hang_env);
	st_capture_warn();
	struct child ch;
	struct rcmoe_tsend *s = connect_late_receiver(&ch);
	uint8_t *src = calloc(1, LATE_LEN);
	cr_assert_not_null(src);
	int warns = test_log_warn_count();
	struct rcmoe_treq *sr = st_isend(s, src, LATE_LEN, 1, 0);
	send_stays_pending(sr, 1.5 * TIMEOUT_S);
	double t0 = stop_child(&ch);
	expect_send_hang_reported(sr, t0, warns);
	reap(&ch);
	cr_assert_eq(OPS->close_send(s), RCMOE_OK);
	free(src);
}

/* ---- the heartbeat protocol, against raw peers ---- */

static const char *const fast_env[] = { "RCMOE_SOCKET_TIMEOUT=2", NULL };

/* Read the receiver's next heartbeat from the raw sender's control socket (at most 5 s); a
 * ping's number goes to *id. False when it was a beat (the receiver holds bytes it has not
 * read, e.g. our answer for a moment: nothing to answer), or when the receiver closed the
 * connection instead (it gave up on us). */
static bool read_question(int fd, uint32_t *id)
{
	uint8_t wire[SOCK_HDR_SIZE];
	size_t got = 0;
	double end = st_now() + 5;
	while (got < sizeof(wire)) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		cr_assert(st_now() < end, "no heartbeat from the waiting receiver within 5 s");
		if (poll(&pfd, 1, 10) != 1)
			continue;
		ssize_t n = recv(fd, wire + got, sizeof(wire) - got, 0);
		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	struct sock_msg_hdr h;
	sock_hdr_decode(wire, &h);
	cr_assert(sock_heartbeat_ok(&h, SOCK_WIRE_PING | SOCK_WIRE_BEAT),
		  "not a ping or beat: flags 0x%x", h.wire_flags);
	*id = h.seq;
	return h.wire_flags == SOCK_WIRE_PING;
}

static void answer(int fd, uint32_t id)
{
	uint8_t wire[SOCK_HDR_SIZE];
	sock_heartbeat_encode(SOCK_WIRE_PONG, id, wire);
	st_raw_send(fd, wire, sizeof(wire));
}

/* A raw sender answers each question for 3x the timeout while the receive waits (the
 * receive must live on), then sends; with `stale`, it answers every question after the first
 * with the first's number, which must not count: the receive fails. */
static void raw_sender_answers(bool stale)
{
	st_init(fast_env);
	st_capture_warn();
	struct st_pair p;
	st_pair_open(&p);
	int fds[2];
	struct rcmoe_trecv *r = st_raw_sender(p.l, p.handle, fds);
	uint8_t src[1000], dst[1000];
	st_fill(src, sizeof(src), 9);
	struct st_place pl = { .dest = dst };
	struct rcmoe_treq *rr = st_irecv(r, sizeof(dst), 1, &pl);
	int warns = test_log_warn_count();
	uint32_t asked = 0, first = 0;
	rcmoe_status_t st = RCMOE_OK;
	double t0 = st_now(), end = t0 + 3 * TIMEOUT_S;
	int done = 0;
	while (st == RCMOE_OK && st_now() < end) {
		st = OPS->test(rr, &done, NULL, NULL);
		cr_assert_eq(done, 0);
		struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
		uint32_t id;
		if (st != RCMOE_OK || poll(&pfd, 1, 0) != 1 || !read_question(fds[0], &id))
			continue; /* on EOF, test reports why once the transport workers let go */
		cr_assert_eq(id, asked, "heartbeat %u came when %u was next", id, asked);
		if (asked++ == 0)
			first = id;
		answer(fds[0], stale ? first : id);
	}
	if (stale) {
		cr_assert_eq(st, RCMOE_ERR_REMOTE, "stale answers kept the receive alive");
		cr_assert_lt(st_now() - t0, HANG_BOUND_S);
		cr_assert_eq(asked, 2, "asked %u times", asked);
		cr_assert_eq(test_log_warn_count(), warns + 1);
		cr_assert(strstr(st_last_warn(), "message 0"), "WARN: %s", st_last_warn());
	} else {
		cr_assert_eq(st, RCMOE_OK, "WARN: %s", st_last_warn());
		cr_assert_geq(asked, 4, "asked only %u times in %d s", asked, 3 * TIMEOUT_S);
		st_raw_header(fds[0], 0, 1, sizeof(src), SOCK_WIRE_INLINE);
		st_raw_send(fds[0], src, sizeof(src));
		size_t n = 0;
		cr_assert_eq(st_wait(rr, 10, &n, NULL), RCMOE_OK);
		cr_assert_eq(n, sizeof(src));
		cr_assert_eq(st_check(dst, sizeof(src), 9), (size_t)-1);
		cr_assert_eq(test_log_warn_count(), warns);
	}
	cr_assert_eq(OPS->close_recv(r), RCMOE_OK);
	close(fds[0]);
	close(fds[1]);
	st_pair_close(&p);
}

Test(socket_hang, answered_heartbeats_keep_a_receive_alive)
{
	raw_sender_answers(false);
}

Test(socket_hang, stale_answers_prove_nothing)
{
	raw_sender_answers(true);
}

/* A raw sender writes `hdr` where an answer or a header may come: refused as malformed. */
static void expect_bad_heartbeat(const struct sock_msg_hdr *hdr)
{
	st_init(fast_env);
	st_capture_warn();
	struct st_pair p;
	st_pair_open(&p);
	int fds[2];
	struct rcmoe_trecv *r = st_raw_sender(p.l, p.handle, fds);
	uint8_t dst[100];
	memset(dst, 0x5a, sizeof(dst));
	struct st_place pl = { .dest = dst };
	struct rcmoe_treq *rr = st_irecv(r, sizeof(dst), 1, &pl);
	int warns = test_log_warn_count();
	uint8_t wire[SOCK_HDR_SIZE];
	sock_hdr_encode(hdr, wire);
	st_raw_send(fds[0], wire, sizeof(wire));
	cr_assert_eq(st_wait(rr, 10, NULL, NULL), RCMOE_ERR_MALFORMED);
	cr_assert_gt(test_log_warn_count(), warns);
	cr_assert_eq(pl.calls, 0);
	for (size_t i = 0; i < sizeof(dst); i++)
		cr_assert_eq(dst[i], 0x5a);
	cr_assert_eq(OPS->close_recv(r), RCMOE_OK);
	close(fds[0]);
	close(fds[1]);
	st_pair_close(&p);
}

Test(socket_hang, heartbeat_with_a_length_is_refused)
{
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC, .len = 5, .wire_flags = SOCK_WIRE_PONG };
	expect_bad_heartbeat(&h);
}

Test(socket_hang, heartbeat_and_inline_together_are_refused)
{
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC,
				  .tag = 1,
				  .wire_flags = SOCK_WIRE_PONG | SOCK_WIRE_INLINE };
	expect_bad_heartbeat(&h);
}

Test(socket_hang, answer_to_no_question_is_refused)
{
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC, .seq = 7, .wire_flags = SOCK_WIRE_PONG };
	expect_bad_heartbeat(&h);
}

/* Pings and beats go from the receiver to the sender only, and a heartbeat is of one kind. */
Test(socket_hang, ping_from_the_sender_is_refused)
{
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC, .wire_flags = SOCK_WIRE_PING };
	expect_bad_heartbeat(&h);
}

Test(socket_hang, beat_from_the_sender_is_refused)
{
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC, .wire_flags = SOCK_WIRE_BEAT };
	expect_bad_heartbeat(&h);
}

Test(socket_hang, heartbeat_of_two_kinds_is_refused)
{
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC,
				  .wire_flags = SOCK_WIRE_PING | SOCK_WIRE_PONG };
	expect_bad_heartbeat(&h);
}

/* A raw receiver for a real sender: a listening socket and the handle for it, the sender
 * connected with one data stream, and the accepted sockets. */
struct raw_receiver {
	int lfd;
	int fd[2];
	int ctrl; /* one of fd[] */
	struct rcmoe_tsend *s;
};

static void raw_receiver_open(struct raw_receiver *rx)
{
	const char *env[] = { "RCMOE_SOCKET_TIMEOUT=2", "RCMOE_SOCKET_NSTREAMS=1", NULL };
	st_init(env);
	st_capture_warn();
	rx->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sock_handle h = { .version = SOCK_PROTO_VERSION, .secret = 1 };
	h.addr.in.sin_family = AF_INET;
	h.addr.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t alen = sizeof(h.addr.in);
	cr_assert_eq(bind(rx->lfd, &h.addr.sa, alen), 0);
	cr_assert_eq(listen(rx->lfd, 4), 0);
	cr_assert_eq(getsockname(rx->lfd, &h.addr.sa, &alen), 0);
	uint8_t handle[128];
	sock_handle_encode(&h, handle);
	rx->s = st_connect_one(handle);
	/* Find the control socket by its hello. */
	rx->ctrl = -1;
	for (int i = 0; i < 2; i++) {
		rx->fd[i] = accept(rx->lfd, NULL, NULL);
		cr_assert(rx->fd[i] >= 0);
		uint8_t wire[SOCK_HELLO_SIZE];
		cr_assert_eq(recv(rx->fd[i], wire, sizeof(wire), MSG_WAITALL),
			     (ssize_t)sizeof(wire));
		struct sock_hello hello;
		sock_hello_decode(wire, &hello);
		if (hello.index == 0)
			rx->ctrl = rx->fd[i];
	}
	cr_assert_geq(rx->ctrl, 0);
}

static void raw_receiver_close(struct raw_receiver *rx)
{
	cr_assert_eq(OPS->close_send(rx->s), RCMOE_OK);
	close(rx->fd[0]);
	close(rx->fd[1]);
	close(rx->lfd);
}

static void raw_frame(int fd, uint32_t seq, uint32_t wire_flags, uint64_t len)
{
	struct sock_msg_hdr h = {
		.magic = SOCK_MSG_MAGIC, .seq = seq, .len = len, .wire_flags = wire_flags
	};
	uint8_t wire[SOCK_HDR_SIZE];
	sock_hdr_encode(&h, wire);
	st_raw_send(fd, wire, sizeof(wire));
}

/* The sender reads its control socket's reverse direction: anything but a ping or beat there
 * fails the connection. */
static void expect_junk_refused(uint32_t wire_flags, uint64_t len)
{
	struct raw_receiver rx;
	raw_receiver_open(&rx);
	int warns = test_log_warn_count();
	raw_frame(rx.ctrl, 0, wire_flags, len);
	/* No send is needed for the sender to notice: its transport worker reads. */
	struct rcmoe_treq *req = NULL;
	rcmoe_status_t st = RCMOE_OK;
	uint8_t one = 1;
	double end = st_now() + 5;
	while ((st = OPS->isend(rx.s, &one, 0, NULL, 1, 0, &req)) == RCMOE_OK && st_now() < end) {
		if (req) {
			int done = 0;
			while (!done && (st = OPS->test(req, &done, NULL, NULL)) == RCMOE_OK)
				;
			req = NULL;
			if (st != RCMOE_OK)
				break;
		}
		st_sleep_ms(10);
	}
	cr_assert_eq(st, RCMOE_ERR_MALFORMED, "status %s", rcmoe_status_str(st));
	cr_assert_eq(test_log_warn_count(), warns + 1);
	cr_assert(strstr(st_last_warn(), "heartbeat"), "WARN: %s", st_last_warn());
	raw_receiver_close(&rx);
}

Test(socket_hang, sender_refuses_junk_from_the_receiver)
{
	expect_junk_refused(SOCK_WIRE_INLINE, 10);
}

/* Pongs go from the sender to the receiver only. */
Test(socket_hang, sender_refuses_a_pong_from_the_receiver)
{
	expect_junk_refused(SOCK_WIRE_PONG, 0);
}

/* Beats are taken without an answer (an answer would be one more unread byte at a receiver
 * that reads nothing: more beats, more answers); a ping is answered with the newest number. */
Test(socket_hang, beats_are_not_answered)
{
	struct raw_receiver rx;
	raw_receiver_open(&rx);
	for (uint32_t i = 0; i < 3; i++)
		raw_frame(rx.ctrl, i, SOCK_WIRE_BEAT, 0);
	raw_frame(rx.ctrl, 5, SOCK_WIRE_PING, 0);
	uint8_t wire[SOCK_HDR_SIZE];
	cr_assert_eq(recv(rx.ctrl, wire, sizeof(wire), MSG_WAITALL), (ssize_t)sizeof(wire));
	struct sock_msg_hdr h;
	sock_hdr_decode(wire, &h);
	cr_assert(sock_heartbeat_ok(&h, SOCK_WIRE_PONG), "not a pong: flags 0x%x", h.wire_flags);
	cr_assert_eq(h.seq, 5);
	for (uint32_t i = 3; i < 6; i++)
		raw_frame(rx.ctrl, i, SOCK_WIRE_BEAT, 0);
	struct pollfd pfd = { .fd = rx.ctrl, .events = POLLIN };
	cr_assert_eq(poll(&pfd, 1, 300), 0, "the sender wrote more than one answer");
	cr_assert_eq(test_log_warn_count(), 0, "WARN: %s", st_last_warn());
	raw_receiver_close(&rx);
}

/* Answers go between messages, never inside a header or inline payload, and the transport worker
 * that writes them also writes the headers the caller left behind: here the sending caller
 * posts 32 inline messages (more than the control socket holds) and then never calls test
 * again, while the receiver takes them one by one. */
Test(socket_hang, answers_never_split_a_message)
{
	const char *env[] = { "RCMOE_SOCKET_TIMEOUT=1", "RCMOE_SOCKET_NSTREAMS=1", NULL };
	enum { N = 32, LEN = 60000 };
	st_init(env);
	struct st_pair p;
	st_pair_open(&p);
	/* A small send buffer on the control socket, so that most messages wait in the sender. */
	int small = 4096;
	cr_assert_eq(setsockopt(sock_send_comm(p.s)->ctrl_fd, SOL_SOCKET, SO_SNDBUF, &small,
				sizeof(small)),
		     0);
	uint8_t *src = malloc((size_t)N * LEN), *dst = malloc(LEN);
	cr_assert(src && dst);
	struct rcmoe_treq *sr[N];
	for (int i = 0; i < N; i++) {
		st_fill(src + (size_t)i * LEN, LEN, 100 + (unsigned)i);
		sr[i] = st_isend(p.s, src + (size_t)i * LEN, LEN, 1, 0);
	}
	double t0 = st_now();
	for (int i = 0; i < N; i++) {
		struct st_place pl = { .dest = dst };
		struct rcmoe_treq *rr = st_irecv(p.r, LEN, 1, &pl);
		size_t n = 0;
		cr_assert_eq(st_wait(rr, 10, &n, NULL), RCMOE_OK, "message %d", i);
		cr_assert_eq(n, (size_t)LEN);
		cr_assert_eq(st_check(dst, LEN, 100 + (unsigned)i), (size_t)-1, "message %d", i);
	}
	double dt = st_now() - t0;
	fprintf(stderr, "# %d inline messages through a sender that never calls in: %.2f s\n", N,
		dt);
	cr_assert_geq(dt, 0.2, "the messages did not have to wait for a heartbeat");
	for (int i = 0; i < N; i++)
		cr_assert_eq(st_wait(sr[i], 10, NULL, NULL), RCMOE_OK);
	cr_assert_eq(test_log_warn_count(), 0);
	st_pair_close(&p);
	free(src);
	free(dst);
}
