/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Socket transport, peers that go away: test returns an error within a bounded time, with one
 * WARN naming the peer; closing comms with requests in flight is safe.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sock_test.h"
#include "test_log.h"

TestSuite(socket_fault, .init = test_log_init, .timeout = 120);

/* ---- a child process that connects with raw sockets, sends part of a message and exits ---- */

static int child_connect(const uint8_t *handle)
{
	struct sock_handle h;
	if (sock_handle_decode(handle, &h) != RCMOE_OK)
		_exit(2);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, &h.addr.sa, sizeof(h.addr.in)) != 0)
		_exit(3);
	return fd;
}

static void child_send(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			_exit(4);
		p += n;
		len -= (size_t)n;
	}
}

/* Connect with one data stream, announce a message of `msg_len` bytes, send `sent` bytes of it
 * (inline on the control socket or on the data stream) and exit. */
static void raw_child(const uint8_t *handle, size_t msg_len, size_t sent, bool inl)
{
	struct sock_handle hd;
	if (sock_handle_decode(handle, &hd) != RCMOE_OK)
		_exit(2);
	int fds[2];
	for (uint16_t i = 0; i < 2; i++) {
		struct sock_hello h = { .magic = SOCK_HELLO_MAGIC,
					.version = SOCK_PROTO_VERSION,
					.index = i,
					.count = 1,
					.secret = hd.secret,
					.nonce = 42,
					.min_chunk = 65536 };
		uint8_t wire[SOCK_HELLO_SIZE];
		sock_hello_encode(&h, wire);
		fds[i] = child_connect(handle);
		child_send(fds[i], wire, sizeof(wire));
	}
	struct sock_msg_hdr m = { .magic = SOCK_MSG_MAGIC,
				  .seq = 0,
				  .tag = 1,
				  .len = msg_len,
				  .wire_flags = inl ? SOCK_WIRE_INLINE : 0 };
	uint8_t hdr[SOCK_HDR_SIZE];
	sock_hdr_encode(&m, hdr);
	child_send(fds[0], hdr, sizeof(hdr));
	uint8_t *payload = calloc(1, sent);
	if (!payload)
		_exit(5);
	child_send(fds[inl ? 0 : 1], payload, sent);
	_exit(0); /* the kernel closes the sockets: EOF in the middle of the message */
}

static void wait_child(pid_t pid)
{
	int status = 0;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: status 0x%x",
		  status);
}

static void peer_exits_mid_message(size_t len, size_t sent, bool inl, const char *progress)
{
	st_init(NULL);
	st_capture_warn();
	uint8_t handle[128];
	struct rcmoe_tlisten *l;
	cr_assert_eq(OPS->listen(0, handle, &l), RCMOE_OK);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0)
		raw_child(handle, len, sent, inl);

	struct rcmoe_trecv *r = st_accept_one(l);
	uint8_t *dst = malloc(len);
	struct st_place pl = { .dest = dst };
	struct rcmoe_treq *rr = st_irecv(r, len, 1, &pl);
	int warns = test_log_warn_count();
	cr_assert_eq(st_wait(rr, 10, NULL, NULL), RCMOE_ERR_REMOTE);
	cr_assert_eq(test_log_warn_count(), warns + 1, "expected exactly one WARN");
	const char *w = st_last_warn();
	cr_assert(strstr(w, "127.0.0.1:"), "the WARN does not name the peer: %s", w);
	cr_assert(strstr(w, progress), "the WARN does not say how far it got: %s", w);
	wait_child(pid);
	cr_assert_eq(OPS->close_recv(r), RCMOE_OK);
	cr_assert_eq(OPS->close_listen(l), RCMOE_OK);
	free(dst);
}

Test(socket_fault, peer_process_exits_mid_message)
{
	peer_exits_mid_message(4 << 20, 1 << 20, false, "1048576 of 4194304");
}

Test(socket_fault, peer_process_exits_mid_inline_message)
{
	peer_exits_mid_message(60000, 1000, true, "1000 of 60000");
}

Test(socket_fault, sender_process_exits_mid_message)
{
	/* The real sender, in a child that exits right after queueing a 256 MiB message. The
	 * parent has no threads when it forks (listen starts none). */
	const char *env[] = { "RCMOE_SOCKET_NSTREAMS=8", "RCMOE_SOCKET_NTHREADS=4", NULL };
	const size_t len = 256u << 20;
	st_init(env);
	st_capture_warn();
	uint8_t handle[128];
	struct rcmoe_tlisten *l;
	cr_assert_eq(OPS->listen(0, handle, &l), RCMOE_OK);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		struct rcmoe_tsend *s = NULL;
		struct rcmoe_treq *req = NULL;
		uint8_t *src = calloc(1, len);
		double end = st_now() + 10;
		while (!s && st_now() < end)
			if (OPS->connect(0, handle, &s) != RCMOE_OK)
				_exit(2);
		if (!s || !src || OPS->isend(s, src, len, NULL, 1, 0, &req) != RCMOE_OK || !req)
			_exit(3);
		_exit(0);
	}
	struct rcmoe_trecv *r = st_accept_one(l);
	uint8_t *dst = malloc(len);
	struct st_place pl = { .dest = dst };
	struct rcmoe_treq *rr = st_irecv(r, len, 1, &pl);
	int warns = test_log_warn_count();
	cr_assert_eq(st_wait(rr, 30, NULL, NULL), RCMOE_ERR_REMOTE);
	cr_assert_eq(test_log_warn_count(), warns + 1, "expected exactly one WARN");
	cr_assert(strstr(st_last_warn(), "127.0.0.1:"), "WARN: %s", st_last_warn());
	wait_child(pid);
	cr_assert_eq(OPS->close_recv(r), RCMOE_OK);
	cr_assert_eq(OPS->close_listen(l), RCMOE_OK);
	free(dst);
}

Test(socket_fault, receiver_closes_mid_transfer)
{
	const char *env[] = { "RCMOE_SOCKET_NSTREAMS=4", "RCMOE_SOCKET_NTHREADS=2", NULL };
	const size_t len = 256u << 20;
	st_init(env);
	st_capture_warn();
	struct st_pair p;
	st_pair_open(&p);
	uint8_t *src = calloc(1, len), *dst = malloc(len);
	cr_assert(src && dst);
	struct st_place pl = { .dest = dst };
	struct rcmoe_treq *rr = st_irecv(p.r, len, 1, &pl);
	struct rcmoe_treq *sr = st_isend(p.s, src, len, 1, 0);
	int done = 0;
	while (pl.calls == 0) /* until the payload is moving */
		cr_assert_eq(OPS->test(rr, &done, NULL, NULL), RCMOE_OK);
	int warns = test_log_warn_count();
	cr_assert_eq(OPS->close_recv(p.r), RCMOE_OK); /* with the request in flight */
	p.r = NULL;
	cr_assert_eq(st_wait(sr, 30, NULL, NULL), RCMOE_ERR_REMOTE);
	cr_assert_eq(test_log_warn_count(), warns + 1, "expected exactly one WARN");
	cr_assert(strstr(st_last_warn(), "127.0.0.1:"), "WARN: %s", st_last_warn());
	/* Later sends fail at once. */
	struct rcmoe_treq *again = NULL;
	cr_assert_eq(OPS->isend(p.s, src, 10, NULL, 1, 0, &again), RCMOE_ERR_REMOTE);
	cr_assert_null(again);
	st_pair_close(&p);
	free(src);
	free(dst);
}

Test(socket_fault, sender_closes_while_a_receive_waits)
{
	st_init(NULL);
	st_capture_warn();
	struct st_pair p;
	st_pair_open(&p);
	st_exchange(&p, 1000, 1000, 1);
	uint8_t dst[100];
	memset(dst, 0x42, sizeof(dst));
	struct st_place pl = { .dest = dst };
	struct rcmoe_treq *rr = st_irecv(p.r, sizeof(dst), 7, &pl);
	int warns = test_log_warn_count();
	cr_assert_eq(OPS->close_send(p.s), RCMOE_OK);
	p.s = NULL;
	cr_assert_eq(st_wait(rr, 10, NULL, NULL), RCMOE_ERR_REMOTE);
	cr_assert_eq(test_log_warn_count(), warns + 1);
	cr_assert(strstr(st_last_warn(), "closed"), "WARN: %s", st_last_warn());
	cr_assert_eq(pl.calls, 0);
	for (size_t i = 0; i < sizeof(dst); i++)
		cr_assert_eq(dst[i], 0x42);
	st_pair_close(&p);
}

static void close_in_flight(bool send_first)
{
	const char *env[] = { "RCMOE_SOCKET_NSTREAMS=8", "RCMOE_SOCKET_NTHREADS=4", NULL };
	enum { N = 12 };
	const size_t len = 8u << 20;
	st_init(env);
	struct st_pair p;
	st_pair_open(&p);
	uint8_t *src = calloc(1, len), *dst = malloc(N * len);
	struct st_place pl[N];
	struct rcmoe_treq *rr[N];
	for (int i = 0; i < N; i++) {
		pl[i] = (struct st_place){ .dest = dst + (size_t)i * len };
		st_isend(p.s, src, len, 1, 0);
		rr[i] = st_irecv(p.r, len, 1, &pl[i]);
	}
	/* Read the headers so the receive side's threads are moving payload too. */
	int done = 0;
	cr_assert_eq(OPS->test(rr[N - 1], &done, NULL, NULL), RCMOE_OK);
	cr_assert_eq(done, 0);
	double t0 = st_now();
	if (send_first) {
		cr_assert_eq(OPS->close_send(p.s), RCMOE_OK);
		cr_assert_eq(OPS->close_recv(p.r), RCMOE_OK);
	} else {
		cr_assert_eq(OPS->close_recv(p.r), RCMOE_OK);
		cr_assert_eq(OPS->close_send(p.s), RCMOE_OK);
	}
	cr_assert_lt(st_now() - t0, 10, "closing took %.1f s", st_now() - t0);
	p.s = NULL;
	p.r = NULL;
	st_pair_close(&p);
	free(src);
	free(dst);
}

Test(socket_fault, close_send_then_recv_with_requests_in_flight)
{
	close_in_flight(true);
}

Test(socket_fault, close_recv_then_send_with_requests_in_flight)
{
	close_in_flight(false);
}

Test(socket_fault, close_listen_with_pending_sockets)
{
	st_init(NULL);
	uint8_t handle[128];
	struct rcmoe_tlisten *l;
	cr_assert_eq(OPS->listen(0, handle, &l), RCMOE_OK);
	int fd1 = st_raw_connect(handle);
	int fd2 = st_raw_connect(handle);
	struct sock_hello h;
	uint8_t wire[SOCK_HELLO_SIZE];
	st_good_hello(handle, &h, 0, 3); /* a connection that never completes */
	sock_hello_encode(&h, wire);
	st_raw_send(fd2, wire, sizeof(wire));
	struct rcmoe_trecv *r = NULL;
	for (int i = 0; i < 50; i++) {
		cr_assert_eq(OPS->accept(l, &r), RCMOE_OK);
		cr_assert_null(r);
		st_sleep_ms(2);
	}
	cr_assert_eq(OPS->close_listen(l), RCMOE_OK);
	close(fd1);
	close(fd2);
}
