/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Socket transport under connections that never authenticate (issue 12): the listener holds
 * each one for the handshake deadline only (not the 30 s data timeout), holds a bounded number
 * of them, keeps working when the process runs out of descriptors (accept never returns an
 * error for what a peer did), lets a legitimate connection through during the flood, gives
 * every descriptor back once the flood stops, and logs a bounded number of WARNs.
 *
 * The attacker is a forked child, so its sockets do not count against the listener's
 * descriptor limit. It obeys one-command messages on a pipe and answers each with a number;
 * while the test waits for an answer it keeps calling accept, as NCCL's proxy thread would.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sock_test.h"
#include "transport/socket/socket.h"
#include "test_log.h"

TestSuite(socket_flood, .init = test_log_init, .timeout = 120);

/* A whole flood may cost this many WARNs: a few refusals one by one, then a summary at most
 * every 10 s and one when the listener closes. */
#define MAX_FLOOD_WARNS 12
/* The listener's per-listener cap on unauthenticated sockets when descriptors are plentiful. */
#define UNAUTH_CAP 256

/* ---- descriptors ---- */

/* Open descriptors of this process, or -1 when none is left to read /proc with. The eventfds of
 * the transport's worker pool (one per worker, kept for the process's lifetime once started, see
 * plugin/transport/socket/pool.c) are not counted: they belong to no connection. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1 - sock_pool_workers(); /* the directory's own, the workers' */
}

static void set_fd_limit(rlim_t soft, struct rlimit *old)
{
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, old), 0);
	struct rlimit r = { .rlim_cur = soft, .rlim_max = old->rlim_max };
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &r), 0, "setrlimit: %s", strerror(errno));
}

static void restore_fd_limit(const struct rlimit *old)
{
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, old), 0);
}

/* ---- the attacker (child side) ---- */

#define PEER_MAX_SOCKS 1500
#define GOOD_LEN       100000
#define GOOD_SEED      5

enum peer_op {
	OP_CONNECT = 'c', /* open `arg` idle connections; answer: how many opened */
	OP_FLOOD = 'f',   /* connect without pause (holding the newest PEER_MAX_SOCKS) until the
			     next command; answer once `arg` were opened (or after 10 s) */
	OP_CLOSED = 'k',  /* answer: how many held sockets the listener closed */
	OP_PREFIX = 'p',  /* answer: how many of the oldest held sockets are closed in a row */
	OP_WAIT = 'w',    /* wait up to 5 s for the listener to close every held socket; answer:
			     how many are still open */
	OP_GOOD = 'g',    /* a correct sender with one data stream, sending one GOOD_LEN message */
	OP_EXIT = 'x',    /* close everything and exit; answer: connections opened in all */
};

struct peer_cmd {
	char op;
	int arg;
};

static struct {
	union sock_addr addr;
	uint64_t secret;
	int cmd, rep;
	int fds[PEER_MAX_SOCKS];
	int nfds;
	long total;
	uint8_t payload[GOOD_LEN];
} child;

static void child_answer(long v)
{
	if (write(child.rep, &v, sizeof(v)) != (ssize_t)sizeof(v))
		_exit(10);
}

static int child_connect(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* connect gives up after this long when the listener's backlog is full, so the child
	 * keeps reading its commands. */
	struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, &child.addr.sa, sizeof(child.addr.in)) != 0) {
		close(fd);
		return -1;
	}
	child.total++;
	return fd;
}

/* Keep `fd`, closing the oldest held socket when the array is full. */
static void child_hold(int fd)
{
	if (child.nfds == PEER_MAX_SOCKS) {
		close(child.fds[0]);
		memmove(child.fds, child.fds + 1, sizeof(int) * (PEER_MAX_SOCKS - 1));
		child.nfds--;
	}
	child.fds[child.nfds++] = fd;
}

/* The listener never writes to an idle connection: any event is its close. */
static bool child_closed(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
	return poll(&p, 1, 0) > 0;
}

static long child_count_closed(void)
{
	long n = 0;
	for (int i = 0; i < child.nfds; i++)
		n += child_closed(child.fds[i]);
	return n;
}

static long child_closed_prefix(void)
{
	int i = 0;
	while (i < child.nfds && child_closed(child.fds[i]))
		i++;
	return i;
}

static bool child_command_waiting(void)
{
	struct pollfd p = { .fd = child.cmd, .events = POLLIN };
	return poll(&p, 1, 0) > 0;
}

static void child_flood(int goal)
{
	bool answered = false;
	long start = child.total;
	double give_up = st_now() + 10; /* a listener that stopped accepting lets few in */
	while (!child_command_waiting()) {
		int fd = child_connect();
		if (fd >= 0)
			child_hold(fd);
		if (!answered && (child.total - start >= goal || st_now() > give_up)) {
			child_answer(child.total - start);
			answered = true;
		}
	}
	if (!answered)
		child_answer(child.total - start);
}

static void child_send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(11);
		p += n;
		len -= (size_t)n;
	}
}

static void child_good_sender(void)
{
	int fds[2];
	for (uint16_t i = 0; i < 2; i++) {
		struct sock_hello h = { .magic = SOCK_HELLO_MAGIC,
					.version = SOCK_PROTO_VERSION,
					.index = i,
					.count = 1,
					.secret = child.secret,
					.nonce = 0x600d,
					.min_chunk = 65536 };
		uint8_t wire[SOCK_HELLO_SIZE];
		sock_hello_encode(&h, wire);
		while ((fds[i] = child_connect()) < 0)
			;
		child_send_all(fds[i], wire, sizeof(wire));
	}
	struct sock_msg_hdr m = { .magic = SOCK_MSG_MAGIC, .seq = 0, .tag = 1, .len = GOOD_LEN };
	uint8_t hdr[SOCK_HDR_SIZE];
	sock_hdr_encode(&m, hdr);
	child_send_all(fds[0], hdr, sizeof(hdr));
	st_fill(child.payload, GOOD_LEN, GOOD_SEED);
	child_send_all(fds[1], child.payload, GOOD_LEN);
	child_hold(fds[0]);
	child_hold(fds[1]);
	child_answer(0);
}

/* Open `n` connections, trying again when one times out behind a full backlog (at most 10 s). */
static long child_open(int n)
{
	long opened = 0;
	double end = st_now() + 10;
	while (opened < n && st_now() < end) {
		int fd = child_connect();
		if (fd >= 0) {
			child_hold(fd);
			opened++;
		}
	}
	return opened;
}

static long child_wait_closed(void)
{
	double end = st_now() + 5;
	long open;
	while ((open = child.nfds - child_count_closed()) > 0 && st_now() < end)
		st_sleep_ms(10);
	return open;
}

static void child_main(void)
{
	/* The parent may run with a low descriptor limit; the attacker wants many. */
	struct rlimit r;
	if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
	for (;;) {
		struct peer_cmd c;
		if (read(child.cmd, &c, sizeof(c)) != (ssize_t)sizeof(c))
			_exit(12);
		switch (c.op) {
		case OP_CONNECT: child_answer(child_open(c.arg)); break;
		case OP_FLOOD: child_flood(c.arg); break;
		case OP_CLOSED: child_answer(child_count_closed()); break;
		case OP_PREFIX: child_answer(child_closed_prefix()); break;
		case OP_WAIT: child_answer(child_wait_closed()); break;
		case OP_GOOD: child_good_sender(); break;
		case OP_EXIT:
			for (int i = 0; i < child.nfds; i++)
				close(child.fds[i]);
			child_answer(child.total);
			_exit(0);
		default: _exit(13);
		}
	}
}

/* ---- the attacker (test side) ---- */

struct peer {
	pid_t pid;
	int cmd; /* commands to the child */
	int rep; /* its answers */
};

/* What the test saw of accept while it waited. */
struct acc {
	struct rcmoe_tlisten *l;
	long calls;
	long failures;
	rcmoe_status_t first_failure;
	struct rcmoe_trecv *comm; /* the one connection accept returned, if any */
	int max_fds;
};

static void peer_start(struct peer *p, const uint8_t *handle)
{
	struct sock_handle h;
	int cmd[2], rep[2];
	cr_assert_eq(sock_handle_decode(handle, &h), RCMOE_OK);
	cr_assert_eq(pipe2(cmd, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(rep, O_CLOEXEC), 0);
	fflush(stderr);
	p->pid = fork();
	cr_assert(p->pid >= 0, "fork: %s", strerror(errno));
	if (p->pid == 0) {
		close(cmd[1]);
		close(rep[0]);
		child.addr = h.addr;
		child.secret = h.secret;
		child.cmd = cmd[0];
		child.rep = rep[1];
		child_main();
	}
	close(cmd[0]);
	close(rep[1]);
	p->cmd = cmd[1];
	p->rep = rep[0];
}

static void peer_send(struct peer *p, enum peer_op op, int arg)
{
	struct peer_cmd c = { .op = (char)op, .arg = arg };
	cr_assert_eq(write(p->cmd, &c, sizeof(c)), (ssize_t)sizeof(c), "the attacker is gone");
}

static void acc_once(struct acc *a)
{
	struct rcmoe_trecv *r = NULL;
	rcmoe_status_t st = OPS->accept(a->l, &r);
	a->calls++;
	if (st != RCMOE_OK && a->failures++ == 0)
		a->first_failure = st;
	if (r) {
		cr_assert_null(a->comm, "accept returned a connection nobody made");
		a->comm = r;
	}
	if (a->calls % 8 == 0) {
		int n = count_fds();
		if (n > a->max_fds)
			a->max_fds = n;
	}
}

/* The child's answer to the last command, calling accept meanwhile when `a` is given. */
static long peer_answer(struct peer *p, struct acc *a, double timeout_s)
{
	double end = st_now() + timeout_s;
	for (;;) {
		if (a)
			acc_once(a);
		struct pollfd pfd = { .fd = p->rep, .events = POLLIN };
		if (poll(&pfd, 1, a ? 0 : 10) > 0)
			break;
		cr_assert(st_now() < end, "the attacker did not answer within %.0f s", timeout_s);
	}
	long v;
	cr_assert_eq(read(p->rep, &v, sizeof(v)), (ssize_t)sizeof(v), "the attacker died");
	return v;
}

static long peer_call(struct peer *p, struct acc *a, enum peer_op op, int arg, double timeout_s)
{
	peer_send(p, op, arg);
	return peer_answer(p, a, timeout_s);
}

/* Stop the child (its sockets close); returns the connections it opened in all. */
static long peer_stop(struct peer *p, struct acc *a)
{
	long total = peer_call(p, a, OP_EXIT, 0, 30);
	int status;
	cr_assert_eq(waitpid(p->pid, &status, 0), p->pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "attacker status %d", status);
	close(p->cmd);
	close(p->rep);
	return total;
}

/* Call accept until this process has `target` descriptors open, at most `timeout_s`. Returns
 * the last count. */
static int accept_until_fds(struct acc *a, int target, double timeout_s)
{
	double end = st_now() + timeout_s;
	int n;
	while ((n = count_fds()) != target && st_now() < end)
		acc_once(a);
	return n;
}

/* A legitimate connect and accept; false (instead of failing) when connect fails or accept
 * does not produce the connection within `timeout_s`, so the test can report numbers. */
static bool legit_connect(struct st_pair *p, struct acc *a, double timeout_s)
{
	double end = st_now() + timeout_s;
	p->s = NULL;
	a->comm = NULL;
	while (!p->s || !a->comm) {
		if (!p->s && OPS->connect(0, p->handle, &p->s) != RCMOE_OK)
			return false;
		if (!a->comm)
			acc_once(a);
		if (st_now() >= end)
			return false;
	}
	p->r = a->comm;
	return true;
}

static void close_comms(struct st_pair *p)
{
	if (p->s)
		cr_assert_eq(OPS->close_send(p->s), RCMOE_OK);
	if (p->r)
		cr_assert_eq(OPS->close_recv(p->r), RCMOE_OK);
	p->s = NULL;
	p->r = NULL;
}

/* ---- tests ---- */

#define FLOOD_FD_LIMIT 256
#define FLOOD_CONNS    (4 * FLOOD_FD_LIMIT)

/* A flood of idle connections, four times the listener process's descriptor limit, while the
 * test keeps calling accept: no accept fails, a legitimate connection made during the flood
 * moves data byte-exact, descriptors return to their baseline once the flood stops, and the
 * WARNs stay few. */
/* A listener alone, no connection yet (the tests drive accept themselves). */
static void listen_only(struct st_pair *p)
{
	memset(p, 0, sizeof(*p));
	cr_assert_eq(OPS->listen(0, p->handle, &p->l), RCMOE_OK);
}

/* The wire bytes of stream 0's correct hello for a connection of `count` data streams. */
static void good_hello_bytes(const uint8_t *handle, uint16_t count, uint8_t out[SOCK_HELLO_SIZE])
{
	struct sock_hello h;
	st_good_hello(handle, &h, 0, count);
	sock_hello_encode(&h, out);
}

Test(socket_flood, legit_connection_through_a_flood)
{
	const char *env[] = { "RCMOE_SOCKET_HANDSHAKE_TIMEOUT=2", "RCMOE_SOCKET_NSTREAMS=2",
			      "RCMOE_SOCKET_NTHREADS=1", NULL };
	st_init(env);
	struct st_pair p;
	listen_only(&p);
	int baseline = count_fds();
	int warns = test_log_warn_count();
	struct peer atk;
	peer_start(&atk, p.handle);
	struct rlimit old;
	set_fd_limit(FLOOD_FD_LIMIT, &old);
	struct acc a = { .l = p.l };

	long flood = peer_call(&atk, &a, OP_FLOOD, FLOOD_CONNS, 60);
	/* The flood goes on while the legitimate connection is made. */
	bool legit = legit_connect(&p, &a, 10);
	if (legit) {
		static const size_t sizes[] = { 1, 4096, 70000, 1 << 20, 3 << 20 };
		for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
			st_exchange(&p, sizes[i], sizes[i], 20 + i);
	}
	close_comms(&p);
	/* The flood stops, but the attacker keeps its sockets open and silent: what the listener
	 * holds goes at the handshake deadline. */
	peer_call(&atk, &a, OP_CLOSED, 0, 10);
	double stopped = st_now();
	int quiet = accept_until_fds(&a, baseline + 2, 2 + 3); /* + the pipes to the attacker */
	double reaped = st_now() - stopped;
	long total = peer_stop(&atk, &a);
	int after = accept_until_fds(&a, baseline, 3);
	restore_fd_limit(&old);
	fprintf(stderr,
		"flood: %ld attacker connections (%ld before the legitimate connect) against a "
		"descriptor limit of %d; %ld accept calls, %ld failed (first: %s); most "
		"descriptors open %d (baseline %d); legitimate connection %s; %d WARNs; %d "
		"descriptors (%d expected) %.1f s after the flood stopped; %d after the attacker "
		"closed its sockets\n",
		total, flood, FLOOD_FD_LIMIT, a.calls, a.failures,
		a.failures ? rcmoe_status_str(a.first_failure) : "-", a.max_fds, baseline,
		legit ? "made, data exact" : "FAILED", test_log_warn_count() - warns, quiet,
		baseline + 2, reaped, after);

	cr_assert_eq(a.failures, 0, "%ld of %ld accept calls failed during the flood (first: %s)",
		     a.failures, a.calls, rcmoe_status_str(a.first_failure));
	cr_assert(legit, "the legitimate connection did not get through the flood");
	cr_assert_eq(quiet, baseline + 2,
		     "%d descriptors open %.1f s after the flood stopped (handshake deadline 2 s), "
		     "%d before it",
		     quiet, reaped, baseline + 2);
	cr_assert_eq(after, baseline, "%d descriptors open after the attacker left, %d before",
		     after, baseline);
	cr_assert_eq(OPS->close_listen(p.l), RCMOE_OK);
	int n = test_log_warn_count() - warns;
	cr_assert_leq(n, MAX_FLOOD_WARNS, "%d WARNs for a flood of %ld connections", n, total);
}

/* A socket that connects and sends nothing, and one that sends its hello a byte at a time too
 * slowly, are both closed at the handshake deadline (1 s here), long before the data timeout
 * (30 s). */
Test(socket_flood, silent_and_slow_sockets_closed_at_handshake_deadline)
{
	const char *env[] = { "RCMOE_SOCKET_HANDSHAKE_TIMEOUT=1", NULL };
	st_init(env);
	struct st_pair p;
	listen_only(&p);
	uint8_t hello[SOCK_HELLO_SIZE];
	good_hello_bytes(p.handle, 1, hello);
	int fd[2] = { st_raw_connect(p.handle), st_raw_connect(p.handle) };
	double closed_at[2] = { 0, 0 };
	double start = st_now(), next_byte = start;
	size_t sent = 0;
	while ((!closed_at[0] || !closed_at[1]) && st_now() < start + 5) {
		struct rcmoe_trecv *r = NULL;
		cr_assert_eq(OPS->accept(p.l, &r), RCMOE_OK);
		cr_assert_null(r);
		if (!closed_at[1] && st_now() >= next_byte && sent < sizeof(hello)) {
			/* One byte every 200 ms: the whole hello would take 8 s. */
			if (send(fd[1], hello + sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
				sent++;
			next_byte += 0.2;
		}
		for (int i = 0; i < 2; i++) {
			struct pollfd pfd = { .fd = fd[i], .events = POLLIN | POLLRDHUP };
			if (!closed_at[i] && poll(&pfd, 1, 0) > 0)
				closed_at[i] = st_now() - start;
		}
		st_sleep_ms(2);
	}
	cr_assert(closed_at[0] > 0, "a silent connection was still open after 5 s (handshake "
				    "deadline 1 s)");
	cr_assert(closed_at[1] > 0, "a connection sending its hello a byte at a time was still "
				    "open after 5 s (handshake deadline 1 s)");
	for (int i = 0; i < 2; i++) {
		cr_assert_geq(closed_at[i], 0.9, "closed after %.2f s, before the deadline",
			      closed_at[i]);
		cr_assert_leq(closed_at[i], 2.5, "closed after %.2f s", closed_at[i]);
		close(fd[i]);
	}
	cr_assert_eq(OPS->close_listen(p.l), RCMOE_OK);
}

/* A connection whose data stream never comes is dropped at the handshake deadline too. */
Test(socket_flood, incomplete_connection_closed_at_handshake_deadline)
{
	const char *env[] = { "RCMOE_SOCKET_HANDSHAKE_TIMEOUT=1", NULL };
	st_init(env);
	struct st_pair p;
	listen_only(&p);
	uint8_t hello[SOCK_HELLO_SIZE];
	good_hello_bytes(p.handle, 2, hello);
	int fd = st_raw_connect(p.handle);
	st_raw_send(fd, hello, sizeof(hello));
	double start = st_now();
	cr_assert(st_accept_until_closed(p.l, fd, 5),
		  "an incomplete connection was still open after 5 s (handshake deadline 1 s)");
	double t = st_now() - start;
	cr_assert(t >= 0.9 && t <= 2.5, "closed after %.2f s, handshake deadline 1 s", t);
	close(fd);
	cr_assert_eq(OPS->close_listen(p.l), RCMOE_OK);
}

/* With descriptors plentiful, a listener holds at most UNAUTH_CAP sockets that have not
 * authenticated, closing the oldest first; a legitimate connection still gets in. */
Test(socket_flood, unauthenticated_sockets_capped_oldest_first)
{
	const char *env[] = { "RCMOE_SOCKET_HANDSHAKE_TIMEOUT=5", "RCMOE_SOCKET_NSTREAMS=2",
			      "RCMOE_SOCKET_NTHREADS=1", NULL };
	st_init(env);
	struct st_pair p;
	listen_only(&p);
	int warns = test_log_warn_count();
	struct peer atk;
	peer_start(&atk, p.handle);
	int baseline = count_fds(); /* with the two pipe ends */
	struct acc a = { .l = p.l };
	enum { N = 600 };

	long opened = peer_call(&atk, &a, OP_CONNECT, N, 30);
	cr_assert_eq(opened, N);
	double settle = st_now() + 0.3;
	while (st_now() < settle)
		acc_once(&a);
	int held = a.max_fds - baseline;
	cr_assert_leq(held, UNAUTH_CAP, "the listener held %d idle connections (cap %d)", held,
		      UNAUTH_CAP);
	long closed = peer_call(&atk, NULL, OP_CLOSED, 0, 5);
	long prefix = peer_call(&atk, NULL, OP_PREFIX, 0, 5);
	cr_assert_geq(closed, N - UNAUTH_CAP, "only %ld of %d closed", closed, N);
	cr_assert_eq(prefix, closed, "closed %ld connections, but not the oldest (%ld in a row)",
		     closed, prefix);

	cr_assert(legit_connect(&p, &a, 10), "a legitimate connection did not get in at the cap");
	st_exchange(&p, 70000, 70000, 9);
	close_comms(&p);
	cr_assert_eq(a.failures, 0, "accept failed: %s", rcmoe_status_str(a.first_failure));
	peer_stop(&atk, &a);
	int after = accept_until_fds(&a, baseline - 2, 3);
	cr_assert_eq(after, baseline - 2, "%d descriptors after the flood, %d before", after,
		     baseline - 2);
	cr_assert_eq(OPS->close_listen(p.l), RCMOE_OK);
	int n = test_log_warn_count() - warns;
	cr_assert_leq(n, MAX_FLOOD_WARNS, "%d WARNs for %d refused connections", n, N);
}

#define EXHAUST_FD_LIMIT 64

/* Fill the descriptor table with /dev/null; returns how many were opened. */
static int exhaust_fds(int *fds, int max)
{
	int n = 0;
	while (n < max && (fds[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
		n++;
	cr_assert(n < max, "descriptors did not run out");
	cr_assert(errno == EMFILE, "open: %s", strerror(errno));
	return n;
}

/* The process has no descriptor left (something else holds them): accept returns no error,
 * and waiting connections are closed rather than left to fill the backlog. With a few free,
 * the listener holds that many and replaces the oldest. A correct sender then still gets a
 * connection that moves data, and everything is given back at the end. */
Test(socket_flood, out_of_descriptors_keeps_listening)
{
	const char *env[] = { "RCMOE_SOCKET_HANDSHAKE_TIMEOUT=3", "RCMOE_SOCKET_NTHREADS=1", NULL };
	st_init(env);
	struct st_pair p;
	listen_only(&p);
	int warns = test_log_warn_count();
	struct peer atk;
	peer_start(&atk, p.handle);
	int baseline = count_fds();
	struct rlimit old;
	set_fd_limit(EXHAUST_FD_LIMIT, &old);
	int nulls[EXHAUST_FD_LIMIT];
	int nnull = exhaust_fds(nulls, EXHAUST_FD_LIMIT);
	struct acc a = { .l = p.l };

	/* None free: every connection is closed. */
	long opened = peer_call(&atk, &a, OP_CONNECT, 20, 10);
	long open = peer_call(&atk, &a, OP_WAIT, 0, 10);
	cr_assert_eq(a.failures, 0, "accept failed with no descriptor left: %s",
		     rcmoe_status_str(a.first_failure));
	cr_assert_eq(open, 0, "%ld of %ld connections left waiting with no descriptor left", open,
		     opened);

	/* Five free: the listener holds five, the newest. */
	for (int i = 0; i < 5; i++)
		close(nulls[--nnull]);
	opened += peer_call(&atk, &a, OP_CONNECT, 20, 10);
	for (int i = 0; i < 200; i++)
		acc_once(&a);
	long closed = peer_call(&atk, NULL, OP_CLOSED, 0, 5);
	cr_assert_eq(a.failures, 0, "accept failed out of descriptors: %s",
		     rcmoe_status_str(a.first_failure));
	cr_assert_geq(closed, opened - 5, "%ld of %ld connections closed", closed, opened);
	cr_assert_eq(peer_call(&atk, NULL, OP_PREFIX, 0, 5), closed, "not the oldest closed");

	/* A correct sender now: its comm needs a descriptor of its own (an eventfd), which the
	 * listener frees too. */
	peer_send(&atk, OP_GOOD, 0);
	double end = st_now() + 10;
	while (!a.comm && st_now() < end)
		acc_once(&a);
	cr_assert_eq(a.failures, 0, "accept failed: %s", rcmoe_status_str(a.first_failure));
	cr_assert_not_null(a.comm, "a correct sender did not get a connection");
	static uint8_t buf[GOOD_LEN];
	struct st_place pl = { .dest = buf };
	struct rcmoe_treq *rr = st_irecv(a.comm, GOOD_LEN, 1, &pl);
	size_t len = 0;
	cr_assert_eq(st_wait(rr, 10, &len, NULL), RCMOE_OK);
	cr_assert_eq(len, GOOD_LEN);
	cr_assert_eq(st_check(buf, GOOD_LEN, GOOD_SEED), (size_t)-1, "data differs");
	cr_assert_eq(peer_answer(&atk, NULL, 10), 0);
	cr_assert_eq(OPS->close_recv(a.comm), RCMOE_OK);

	while (nnull)
		close(nulls[--nnull]);
	peer_stop(&atk, &a);
	int after = accept_until_fds(&a, baseline - 2, 3 + 2);
	restore_fd_limit(&old);
	cr_assert_eq(after, baseline - 2, "%d descriptors after, %d before", after, baseline - 2);
	cr_assert_eq(OPS->close_listen(p.l), RCMOE_OK);
	int n = test_log_warn_count() - warns;
	cr_assert_leq(n, MAX_FLOOD_WARNS, "%d WARNs", n);
}
