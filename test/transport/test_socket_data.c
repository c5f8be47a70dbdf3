/* SPDX-License-Identifier: Apache-2.0 */
/* Socket transport, healthy paths: handshake, sizes, pipelines, limits, placement. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sock_test.h"
#include "test_log.h"

TestSuite(socket_data, .init = test_log_init, .timeout = 240);

Test(socket_data, init_is_idempotent_and_describes_one_device)
{
	st_init(NULL);
	st_init(NULL); /* again: same answer */
	int n = 0;
	cr_assert_eq(OPS->device_count(&n), RCMOE_OK);
	cr_assert_eq(n, 1);
	struct rcmoe_device_info info;
	memset(&info, 0x5a, sizeof(info));
	cr_assert_eq(OPS->device_info(0, &info), RCMOE_OK);
	cr_assert_str_eq(info.name, "lo");
	cr_assert_str_eq(info.pci_path, "");
	cr_assert_gt(info.speed_mbps, 0);
	cr_assert_neq(info.guid, 0);
	cr_assert_neq(OPS->device_info(1, &info), RCMOE_OK);
}

static void *init_thread(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)st_try_init(NULL);
}

Test(socket_data, init_from_many_threads_at_once)
{
	pthread_t t[8];
	for (int i = 0; i < 8; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, init_thread, NULL), 0);
	for (int i = 0; i < 8; i++) {
		void *ret;
		pthread_join(t[i], &ret);
		cr_assert_eq((rcmoe_status_t)(intptr_t)ret, RCMOE_OK);
	}
	int n = 0;
	cr_assert_eq(OPS->device_count(&n), RCMOE_OK);
	cr_assert_eq(n, 1);
}

Test(socket_data, unknown_interface_is_a_usage_error)
{
	const char *env[] = { "RCMOE_SOCKET_IFNAME=nosuchif9", NULL };
	cr_assert_eq(st_try_init(env), RCMOE_ERR_USAGE);
	cr_assert_geq(test_log_warn_count(), 1);
	int n;
	cr_assert_neq(OPS->device_count(&n), RCMOE_OK);
}

Test(socket_data, handshake_and_handle_size)
{
	st_init(NULL);
	struct st_pair p;
	memset(&p, 0, sizeof(p));
	memset(p.handle, 0xab, sizeof(p.handle));
	cr_assert_eq(OPS->listen(0, p.handle, &p.l), RCMOE_OK);
	for (size_t i = RCMOE_TRANSPORT_HANDLE_SIZE; i < sizeof(p.handle); i++)
		cr_assert_eq(p.handle[i], 0xab, "listen wrote byte %zu of the handle", i);
	st_connect_accept(&p, &p.s, &p.r);
	st_exchange(&p, 1000, 1000, 1);
	/* A second connection to the same listener is a separate comm. */
	struct rcmoe_tsend *s2;
	struct rcmoe_trecv *r2;
	st_connect_accept(&p, &s2, &r2);
	struct st_pair q = { .l = p.l, .s = s2, .r = r2 };
	st_exchange(&q, 5000, 5000, 2);
	st_exchange(&p, 5000, 5000, 3);
	cr_assert_eq(OPS->close_send(s2), RCMOE_OK);
	cr_assert_eq(OPS->close_recv(r2), RCMOE_OK);
	st_pair_close(&p);
	cr_assert_eq(test_log_warn_count(), 0);
}

Test(socket_data, connect_refuses_a_foreign_handle)
{
	st_init(NULL);
	uint8_t handle[128];
	memset(handle, 0x11, sizeof(handle));
	struct rcmoe_tsend *s = (void *)1;
	cr_assert_eq(OPS->connect(0, handle, &s), RCMOE_ERR_INVALID);
	cr_assert_null(s);
}

static void sizes_body(const char *const *env)
{
	static const size_t sizes[] = { 0,       1,      2,           3,
					7,       100,    4095,        4096,
					4097,    65535,  65536,       65537,
					196609,  524287, 1048576 + 7, 3 * 1048576 + 5,
					16777219 };
	st_init(env);
	struct st_pair p;
	st_pair_open(&p);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		st_exchange(&p, sizes[i], sizes[i], (unsigned)i + 1);
	st_pair_close(&p);
	cr_assert_eq(test_log_warn_count(), 0);
}

Test(socket_data, sizes_8_streams_4_threads)
{
	const char *env[] = { "RCMOE_SOCKET_NSTREAMS=8", "RCMOE_SOCKET_NTHREADS=4", NULL };
	sizes_body(env);
}

Test(socket_data, sizes_1_stream_1_thread)
{
	const char *env[] = { "RCMOE_SOCKET_NSTREAMS=1", "RCMOE_SOCKET_NTHREADS=1", NULL };
	sizes_body(env);
}

Test(socket_data, sizes_8_streams_1_thread)
{
	const char *env[] = { "RCMOE_SOCKET_NSTREAMS=8", "RCMOE_SOCKET_NTHREADS=1", NULL };
	sizes_body(env);
}

Test(socket_data, sizes_1_stream_4_threads)
{
	const char *env[] = { "RCMOE_SOCKET_NSTREAMS=1", "RCMOE_SOCKET_NTHREADS=4", NULL };
	sizes_body(env);
}

Test(socket_data, sizes_small_pieces)
{
	/* 4 KiB pieces: many pieces per message, every stream busy even for small messages. */
	const char *env[] = { "RCMOE_SOCKET_NSTREAMS=7", "RCMOE_SOCKET_NTHREADS=3",
			      "RCMOE_SOCKET_MIN_CHUNK=4096", NULL };
	sizes_body(env);
}

Test(socket_data, large_256_mib)
{
	const char *env[] = { "RCMOE_SOCKET_NSTREAMS=8", "RCMOE_SOCKET_NTHREADS=4", NULL };
	st_init(env);
	struct st_pair p;
	st_pair_open(&p);
	st_exchange(&p, 256u << 20, 256u << 20, 42);
	st_pair_close(&p);
}

Test(socket_data, receive_larger_than_send)
{
	st_init(NULL);
	struct st_pair p;
	st_pair_open(&p);
	st_exchange(&p, 0, 4096, 1);
	st_exchange(&p, 10, 1 << 20, 2);
	st_exchange(&p, 3 << 20, 8 << 20, 3);
	st_pair_close(&p);
}

/* Many messages with up to `window` in flight on each side, each with its own pattern and size,
 * checked in order: FIFO matching, round-robin continuing across messages, slot reuse. */
static void pipeline(struct st_pair *p, int count, int window, size_t max, unsigned seed)
{
	struct msg {
		uint8_t *src, *dst;
		size_t len;
		struct st_place pl;
		struct rcmoe_treq *sr, *rr;
		int sdone, rdone;
	};
	struct msg *m = calloc((size_t)count, sizeof(*m));
	cr_assert_not_null(m);
	unsigned rng = seed;
	for (int i = 0; i < count; i++) {
		rng = rng * 1103515245u + 12345u;
		uint64_t x = ((uint64_t)rng << 16) ^ (rng >> 3);
		m[i].len = (i % 5 == 0) ? (size_t)(x % 64) : (size_t)(x % (max + 1));
		m[i].src = malloc(m[i].len + 1);
		m[i].dst = malloc(max + 1);
		cr_assert(m[i].src && m[i].dst);
		st_fill(m[i].src, m[i].len, seed + (unsigned)i);
		m[i].pl.dest = m[i].dst;
	}
	int posted = 0, finished = 0;
	double end = st_now() + 120;
	while (finished < count) {
		/* Post in order while the window allows. */
		while (posted < count && posted - finished < window) {
			struct msg *x = &m[posted];
			cr_assert_eq(OPS->isend(p->s, x->src, x->len, NULL, 3, 0, &x->sr),
				     RCMOE_OK);
			cr_assert_not_null(x->sr);
			cr_assert_eq(OPS->irecv(p->r, max, 3, st_place_fn, &x->pl, &x->rr),
				     RCMOE_OK);
			cr_assert_not_null(x->rr);
			posted++;
		}
		for (int i = finished; i < posted; i++) {
			struct msg *x = &m[i];
			size_t len;
			if (!x->sdone)
				cr_assert_eq(OPS->test(x->sr, &x->sdone, &len, NULL), RCMOE_OK);
			if (!x->rdone) {
				cr_assert_eq(OPS->test(x->rr, &x->rdone, &len, NULL), RCMOE_OK);
				if (x->rdone)
					cr_assert_eq(len, x->len, "message %d: %zu bytes, sent %zu",
						     i, len, x->len);
			}
		}
		while (finished < posted && m[finished].sdone && m[finished].rdone) {
			struct msg *x = &m[finished];
			size_t bad = st_check(x->dst, x->len, seed + (unsigned)finished);
			cr_assert_eq(bad, (size_t)-1, "message %d (%zu bytes) differs at %zu",
				     finished, x->len, bad);
			free(x->src);
			free(x->dst);
			finished++;
		}
		cr_assert(st_now() < end, "pipeline stuck at message %d of %d", finished, count);
	}
	free(m);
}

Test(socket_data, fifo_many_small_messages)
{
	const char *env[] = { "RCMOE_SOCKET_NSTREAMS=8", "RCMOE_SOCKET_NTHREADS=4", NULL };
	st_init(env);
	struct st_pair p;
	st_pair_open(&p);
	pipeline(&p, 2000, 32, 300, 100);
	st_pair_close(&p);
	cr_assert_eq(test_log_warn_count(), 0);
}

Test(socket_data, random_sizes_pipelined)
{
	const char *env[] = { "RCMOE_SOCKET_NSTREAMS=5", "RCMOE_SOCKET_NTHREADS=2", NULL };
	st_init(env);
	struct st_pair p;
	st_pair_open(&p);
	pipeline(&p, 150, 6, 6 << 20, 7);
	st_pair_close(&p);
	cr_assert_eq(test_log_warn_count(), 0);
}

Test(socket_data, thirty_two_in_flight_then_null)
{
	st_init(NULL);
	struct st_pair p;
	st_pair_open(&p);
	enum { N = RCMOE_TRANSPORT_MAX_REQUESTS };
	const size_t len = 256 * 1024;
	uint8_t *src = malloc(N * len), *dst = malloc(N * len);
	struct st_place pl[N];
	struct rcmoe_treq *sr[N], *rr[N], *extra = (void *)1;
	cr_assert(src && dst);
	for (int i = 0; i < N; i++)
		st_fill(src + i * len, len, 1000 + (unsigned)i);
	memset(dst, 0, N * len);

	/* Senders first: with nobody receiving, all 32 must still be accepted. */
	for (int i = 0; i < N; i++) {
		cr_assert_eq(OPS->isend(p.s, src + i * len, len, NULL, 1, 0, &sr[i]), RCMOE_OK);
		cr_assert_not_null(sr[i], "isend %d returned no request", i);
	}
	cr_assert_eq(OPS->isend(p.s, src, len, NULL, 1, 0, &extra), RCMOE_OK);
	cr_assert_null(extra, "a 33rd isend got a request");
	for (int i = 0; i < N; i++) {
		pl[i] = (struct st_place){ .dest = dst + i * len };
		cr_assert_eq(OPS->irecv(p.r, len, 1, st_place_fn, &pl[i], &rr[i]), RCMOE_OK);
		cr_assert_not_null(rr[i], "irecv %d returned no request", i);
	}
	extra = (void *)1;
	cr_assert_eq(OPS->irecv(p.r, len, 1, st_place_fn, &pl[0], &extra), RCMOE_OK);
	cr_assert_null(extra, "a 33rd irecv got a request");

	/* Complete them newest first: the transport may finish them in FIFO order only. */
	for (int i = N - 1; i >= 0; i--) {
		size_t n = 0;
		cr_assert_eq(st_wait(rr[i], 30, &n, NULL), RCMOE_OK);
		cr_assert_eq(n, len);
		cr_assert_eq(st_wait(sr[i], 30, NULL, NULL), RCMOE_OK);
	}
	for (int i = 0; i < N; i++) {
		size_t bad = st_check(dst + i * len, len, 1000 + (unsigned)i);
		cr_assert_eq(bad, (size_t)-1, "message %d differs at %zu (FIFO broken?)", i, bad);
	}
	/* Every slot is free again. */
	st_exchange(&p, 12345, 12345, 9);
	free(src);
	free(dst);
	st_pair_close(&p);
}

Test(socket_data, placement_sees_length_and_flags)
{
	st_init(NULL);
	struct st_pair p;
	st_pair_open(&p);
	const size_t len = 200000;
	uint8_t *src = malloc(len), *dst = malloc(len + 200);
	st_fill(src, len, 77);
	memset(dst, 0xee, len + 200);
	struct st_place pl = { .dest = dst + 100 };
	struct rcmoe_treq *rr = st_irecv(p.r, 1 << 20, 9, &pl);
	struct rcmoe_treq *sr = st_isend(p.s, src, len, 9, RCMOE_MSG_ENCODED);
	size_t n = 0;
	uint32_t flags = 0;
	cr_assert_eq(st_wait(rr, 30, &n, &flags), RCMOE_OK);
	cr_assert_eq(st_wait(sr, 30, NULL, NULL), RCMOE_OK);
	cr_assert_eq(pl.calls, 1);
	cr_assert_eq(pl.len, len);
	cr_assert_eq(pl.flags, RCMOE_MSG_ENCODED);
	cr_assert_eq(n, len);
	cr_assert_eq(flags, RCMOE_MSG_ENCODED);
	cr_assert_eq(st_check(dst + 100, len, 77), (size_t)-1);
	for (size_t i = 0; i < 100; i++)
		cr_assert_eq(dst[i], 0xee);
	for (size_t i = len + 100; i < len + 200; i++)
		cr_assert_eq(dst[i], 0xee);
	free(src);
	free(dst);
	st_pair_close(&p);
}

Test(socket_data, placement_error_fails_only_that_message)
{
	const char *env[] = { "RCMOE_SOCKET_NSTREAMS=4", "RCMOE_SOCKET_NTHREADS=2", NULL };
	st_init(env);
	struct st_pair p;
	st_pair_open(&p);
	const size_t len = 3 << 20;
	uint8_t *src = malloc(len), *dst = malloc(len);
	st_fill(src, len, 5);
	memset(dst, 0x3c, len);
	/* A small message first: its payload comes inline on the control socket. */
	struct st_place small = { .dest = dst, .fail = RCMOE_ERR_NOMEM };
	struct rcmoe_treq *r0 = st_irecv(p.r, len, 1, &small);
	struct rcmoe_treq *s0 = st_isend(p.s, src, 5000, 1, 0);
	cr_assert_eq(st_wait(r0, 30, NULL, NULL), RCMOE_ERR_NOMEM);
	cr_assert_eq(st_wait(s0, 30, NULL, NULL), RCMOE_OK);
	cr_assert_eq(small.calls, 1);
	cr_assert_eq(small.len, 5000);
	struct st_place pl = { .dest = dst, .fail = RCMOE_ERR_UNSUPPORTED };
	struct rcmoe_treq *rr = st_irecv(p.r, len, 1, &pl);
	struct rcmoe_treq *sr = st_isend(p.s, src, len, 1, RCMOE_MSG_ENCODED);
	cr_assert_eq(st_wait(rr, 30, NULL, NULL), RCMOE_ERR_UNSUPPORTED);
	cr_assert_eq(st_wait(sr, 30, NULL, NULL), RCMOE_OK);
	cr_assert_eq(pl.calls, 1);
	cr_assert_eq(pl.len, len);
	cr_assert_eq(pl.flags, RCMOE_MSG_ENCODED);
	for (size_t i = 0; i < len; i++)
		cr_assert_eq(dst[i], 0x3c, "byte %zu written despite the placement error", i);
	/* The connection stays in step: the next messages arrive intact. */
	st_exchange(&p, len, len, 6);
	st_exchange(&p, 17, 17, 7);
	free(src);
	free(dst);
	st_pair_close(&p);
}
