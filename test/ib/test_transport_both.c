/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transport suite that both transports must pass, built once per transport (meson: -DTT_IB
 * for the IB transport over the test provider): handshake, sizes from 0 B to 256 MiB, 32
 * messages in flight, message flags, receives larger than the message, a message longer than
 * its receive, refused handshakes, peers that die (an error in under 5 s), closing with
 * requests in flight.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../transport/sock_test.h"
#include "test_log.h"
#include "tt.h"

#ifdef TT_IB
const struct rcmoe_transport_ops *const TT_OPS = &rcmoe_ib_ops;
#else
const struct rcmoe_transport_ops *const TT_OPS = &rcmoe_socket_ops;
#endif

TestSuite(transport_both, .init = test_log_init, .timeout = 240);

Test(transport_both, handshake_and_a_second_connection)
{
	tt_init(NULL);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	tt_exchange(&p, 1000, 1000, 1, 0);
	struct tt_pair q = { .l = p.l };
	memcpy(q.handle, p.handle, sizeof(q.handle));
	tt_connect_accept(&q, 0, &q.s, &q.r);
	tt_exchange(&q, 5000, 5000, 2, 0);
	tt_exchange(&p, 5000, 5000, 3, 0);
	q.l = NULL;
	tt_pair_close(&q);
	tt_pair_close(&p);
	cr_assert_eq(test_log_warn_count(), 0);
}

Test(transport_both, connect_refuses_a_foreign_handle)
{
	tt_init(NULL);
	uint8_t handle[128];
	memset(handle, 0x11, sizeof(handle));
	struct rcmoe_tsend *s = (void *)1;
	cr_assert_eq(TT_OPS->connect(0, handle, &s), RCMOE_ERR_INVALID);
	cr_assert_null(s);
}

static void sizes_body(const char *const *env)
{
	static const size_t sizes[] = { 0,       1,      2,           3,
					7,       100,    4095,        4096,
					4097,    65535,  65536,       65537,
					196609,  524287, 1048576 + 7, 3 * 1048576 + 5,
					16777219 };
	tt_init(env);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		tt_exchange(&p, sizes[i], sizes[i], (unsigned)i + 1, 0);
	tt_pair_close(&p);
	cr_assert_eq(test_log_warn_count(), 0);
}

Test(transport_both, sizes_defaults)
{
	sizes_body(NULL);
}

Test(transport_both, sizes_one_qp_one_stream)
{
	const char *env[] = { "RCMOE_IB_QPS_PER_CONN=1", "RCMOE_SOCKET_NSTREAMS=1", NULL };
	sizes_body(env);
}

Test(transport_both, sizes_many_qps_small_pieces)
{
	const char *env[] = { "RCMOE_IB_QPS_PER_CONN=7", "RCMOE_SOCKET_NSTREAMS=7",
			      "RCMOE_SOCKET_MIN_CHUNK=4096", NULL };
	sizes_body(env);
}

Test(transport_both, large_256_mib)
{
	tt_init(NULL);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	tt_exchange(&p, 256u << 20, 256u << 20, 42, 0);
	tt_pair_close(&p);
}

Test(transport_both, receive_larger_than_send_and_flags)
{
	tt_init(NULL);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	tt_exchange(&p, 0, 4096, 1, 0);
	tt_exchange(&p, 10, 1 << 20, 2, RCMOE_MSG_ENCODED);
	tt_exchange(&p, 3 << 20, 8 << 20, 3, RCMOE_MSG_ENCODED);
	tt_exchange(&p, 0, 0, 4, RCMOE_MSG_ENCODED);
	tt_pair_close(&p);
}

/* `count` messages of varied sizes with up to `window` posted on each side, each checked in
 * order: FIFO matching and slot reuse. */
Test(transport_both, pipeline_32_in_flight)
{
	enum { COUNT = 300, WINDOW = RCMOE_TRANSPORT_MAX_REQUESTS };
	const size_t max = 300000;
	tt_init(NULL);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	struct tt_buf src, dst;
	tt_buf_alloc(&src, max * WINDOW, p.s, NULL);
	tt_buf_alloc(&dst, max * WINDOW, NULL, p.r);
	struct {
		size_t len;
		struct tt_place pl;
		struct rcmoe_treq *sr, *rr;
		int sdone, rdone;
	} m[COUNT];
	memset(m, 0, sizeof(m));
	unsigned rng = 12345;
	for (int i = 0; i < COUNT; i++) {
		rng = rng * 1103515245u + 12345u;
		m[i].len = (i % 5 == 0) ? rng % 64 : rng % (max + 1);
	}
	int posted = 0, finished = 0;
	double end = st_now() + 120;
	while (finished < COUNT) {
		while (posted < COUNT && posted - finished < WINDOW) {
			size_t off = (size_t)(posted % WINDOW) * max;
			st_fill(src.mem + off, m[posted].len, 1000u + (unsigned)posted);
			m[posted].pl = (struct tt_place){ .dest = dst.mem + off, .mr = dst.mr };
			m[posted].rr = tt_irecv(p.r, max, 3, &m[posted].pl);
			m[posted].sr = tt_isend(p.s, src.mem + off, m[posted].len, src.mr, 3, 0);
			posted++;
		}
		for (int i = finished; i < posted; i++) {
			size_t len = 0;
			if (!m[i].sdone)
				cr_assert_eq(TT_OPS->test(m[i].sr, &m[i].sdone, &len, NULL),
					     RCMOE_OK);
			if (!m[i].rdone) {
				cr_assert_eq(TT_OPS->test(m[i].rr, &m[i].rdone, &len, NULL),
					     RCMOE_OK);
				if (m[i].rdone)
					cr_assert_eq(len, m[i].len, "message %d: %zu bytes of %zu",
						     i, len, m[i].len);
			}
		}
		while (finished < posted && m[finished].sdone && m[finished].rdone) {
			size_t off = (size_t)(finished % WINDOW) * max;
			size_t bad = st_check(dst.mem + off, m[finished].len,
					      1000u + (unsigned)finished);
			cr_assert_eq(bad, (size_t)-1, "message %d differs at byte %zu", finished,
				     bad);
			finished++;
		}
		cr_assert(st_now() < end, "pipeline stuck at %d of %d", finished, COUNT);
	}
	tt_buf_free(&src);
	tt_buf_free(&dst);
	tt_pair_close(&p);
	cr_assert_eq(test_log_warn_count(), 0);
}

Test(transport_both, message_longer_than_its_receive_fails_without_writing)
{
	tt_init(NULL);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	struct tt_buf src, dst;
	tt_buf_alloc(&src, 200000, p.s, NULL);
	tt_buf_alloc(&dst, 200000, NULL, p.r);
	st_fill(src.mem, src.len, 5);
	memset(dst.mem, 0xA5, dst.len);
	struct tt_place pl = { .dest = dst.mem, .mr = dst.mr };
	struct rcmoe_treq *rr = tt_irecv(p.r, 1000, 3, &pl);
	struct rcmoe_treq *sr = tt_isend(p.s, src.mem, 200000, src.mr, 3, 0);
	/* Both sides are tested, as NCCL's proxy thread does: the IB sender is the one that
	 * sees the receive's size, the socket receiver the message's. */
	double t0 = st_now();
	rcmoe_status_t rst = RCMOE_OK;
	int sdone = 0, rdone = 0, sfailed = 0;
	while (rst == RCMOE_OK && !rdone) {
		if (!sdone && !sfailed)
			sfailed = TT_OPS->test(sr, &sdone, NULL, NULL) != RCMOE_OK;
		rst = TT_OPS->test(rr, &rdone, NULL, NULL);
		cr_assert_lt(st_now() - t0, 5.0, "the receive did not fail within 5 s");
	}
	cr_assert_neq(rst, RCMOE_OK, "the receive must fail");
	for (size_t i = 0; i < dst.len; i++)
		cr_assert_eq(dst.mem[i], 0xA5, "byte %zu of the receive was written", i);
	if (!sdone && !sfailed)
		(void)tt_wait(sr, 10, NULL, NULL); /* fails (IB) or went into the socket (TCP) */
	cr_assert_geq(test_log_warn_count(), 1);
	tt_buf_free(&src);
	tt_buf_free(&dst);
	tt_pair_close(&p);
}

Test(transport_both, refuses_garbage_handshakes_and_still_connects)
{
	const char *env[] = { "RCMOE_SOCKET_HANDSHAKE_TIMEOUT=1", NULL };
	tt_init(env);
	st_capture_warn();
	struct tt_pair p;
	memset(&p, 0, sizeof(p));
	cr_assert_eq(TT_OPS->listen(0, p.handle, &p.l), RCMOE_OK);
	int fds[3];
	uint8_t junk[512];
	st_fill(junk, sizeof(junk), 77);
	for (int i = 0; i < 3; i++) {
		fds[i] = tt_raw_connect(p.handle);
		/* garbage; the first bytes of a foreign (socket or IB) hello; nothing at all */
		if (i == 0)
			st_raw_send(fds[i], junk, sizeof(junk));
		if (i == 1)
			st_raw_send(fds[i], p.handle, 100);
	}
	double end = st_now() + 4;
	while (st_now() < end) {
		struct rcmoe_trecv *r = NULL;
		cr_assert_eq(TT_OPS->accept(p.l, &r), RCMOE_OK);
		cr_assert_null(r, "a refused handshake became a connection");
	}
	cr_assert_geq(test_log_warn_count(), 2);
	for (int i = 0; i < 3; i++) {
		char c;
		cr_assert_leq(recv(fds[i], &c, 1, MSG_DONTWAIT), 0, "socket %d still open", i);
		close(fds[i]);
	}
	tt_connect_accept(&p, 0, &p.s, &p.r);
	tt_exchange(&p, 70000, 70000, 9, 0);
	tt_pair_close(&p);
}

/* ---- peers that die: a child process holds the other end and is killed ---- */

static void child_side(int to_parent, int from_parent, bool child_sends)
{
	struct tt_pair p;
	memset(&p, 0, sizeof(p));
	tt_init(NULL);
	if (child_sends) {
		/* the parent listens */
		if (read(from_parent, p.handle, sizeof(p.handle)) != (ssize_t)sizeof(p.handle))
			_exit(2);
		struct rcmoe_tsend *s = NULL;
		while (!s)
			if (TT_OPS->connect(0, p.handle, &s) != RCMOE_OK)
				_exit(3);
	} else {
		cr_assert_eq(TT_OPS->listen(0, p.handle, &p.l), RCMOE_OK);
		if (write(to_parent, p.handle, sizeof(p.handle)) != (ssize_t)sizeof(p.handle))
			_exit(2);
		/* Accepted, then never a receive posted: the parent's send waits on us. */
		struct rcmoe_trecv *r = NULL;
		while (!r)
			if (TT_OPS->accept(p.l, &r) != RCMOE_OK)
				_exit(3);
	}
	char c = 'u';
	if (write(to_parent, &c, 1) != 1)
		_exit(4);
	for (;;)
		pause(); /* killed by the parent */
}

static void peer_death(bool child_sends)
{
	int up[2], down[2];
	cr_assert_eq(pipe(up), 0);
	cr_assert_eq(pipe(down), 0);
	/* Fork before either side starts the transport: the child starts its own. */
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0)
		child_side(up[1], down[0], child_sends);
	tt_init(NULL);
	st_capture_warn();
	struct tt_pair p;
	memset(&p, 0, sizeof(p));
	struct tt_buf buf;
	struct rcmoe_treq *req;
	char c;
	if (child_sends) {
		cr_assert_eq(TT_OPS->listen(0, p.handle, &p.l), RCMOE_OK);
		cr_assert_eq(write(down[1], p.handle, sizeof(p.handle)), (ssize_t)sizeof(p.handle));
		double end = st_now() + 10;
		while (!p.r) {
			cr_assert_eq(TT_OPS->accept(p.l, &p.r), RCMOE_OK);
			cr_assert(st_now() < end);
		}
		cr_assert_eq(read(up[0], &c, 1), 1);
		tt_buf_alloc(&buf, 1 << 20, NULL, p.r);
		struct tt_place pl = { .dest = buf.mem, .mr = buf.mr };
		req = tt_irecv(p.r, 1 << 20, 1, &pl);
	} else {
		cr_assert_eq(read(up[0], p.handle, sizeof(p.handle)), (ssize_t)sizeof(p.handle));
		double end = st_now() + 10;
		while (!p.s) {
			cr_assert_eq(TT_OPS->connect(0, p.handle, &p.s), RCMOE_OK);
			cr_assert(st_now() < end);
		}
		cr_assert_eq(read(up[0], &c, 1), 1);
		/* 64 MiB, more than TCP buffers hold: outstanding when the receiver dies */
		tt_buf_alloc(&buf, 64u << 20, p.s, NULL);
		memset(buf.mem, 1, buf.len);
		req = tt_isend(p.s, buf.mem, 64 << 20, buf.mr, 1, 0);
	}
	st_sleep_ms(20);
	cr_assert_eq(kill(pid, SIGKILL), 0);
	double t0 = st_now();
	rcmoe_status_t st = tt_wait(req, 10, NULL, NULL);
	double took = st_now() - t0;
	waitpid(pid, NULL, 0);
	cr_assert_neq(st, RCMOE_OK, "the transfer must fail when its peer dies");
	cr_assert_lt(took, 5.0, "the error took %.1f s", took);
	cr_assert(strstr(st_last_warn(), "127.0.0.1"), "the WARN names the peer: %s",
		  st_last_warn());
	tt_buf_free(&buf);
	tt_pair_close(&p);
}

Test(transport_both, receive_fails_when_the_sender_dies)
{
	peer_death(true);
}

Test(transport_both, send_fails_when_the_receiver_dies)
{
	peer_death(false);
}

Test(transport_both, close_with_requests_in_flight)
{
	tt_init(NULL);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	struct tt_buf src, dst;
	tt_buf_alloc(&src, 8 << 20, p.s, NULL);
	tt_buf_alloc(&dst, 8 << 20, NULL, p.r);
	struct tt_place pl = { .dest = dst.mem, .mr = dst.mr };
	for (int i = 0; i < 4; i++) {
		(void)tt_irecv(p.r, 1 << 20, 1, &pl);
		(void)tt_isend(p.s, src.mem, 1 << 20, src.mr, 1, 0);
	}
	cr_assert_eq(TT_OPS->close_send(p.s), RCMOE_OK);
	cr_assert_eq(TT_OPS->close_recv(p.r), RCMOE_OK);
	p.s = NULL;
	p.r = NULL;
	tt_pair_close(&p);
	/* The comms are gone: nothing writes into the buffers any more. (Their registrations
	 * are left behind, as a process that ends does.) */
	free(src.mem);
	free(dst.mem);
}
