/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Socket transport, peers that are not ours or break the protocol: each is refused with a WARN,
 * no posted buffer is touched, and the listener and other connections keep working.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sock_test.h"
#include "test_log.h"

TestSuite(socket_refuse, .init = test_log_init, .timeout = 120);

#define PAT 0x77

/* A good connection with a receive posted into a patterned buffer, to check that whatever
 * happens to another connection never reaches it. */
struct bystander {
	struct st_pair p;
	uint8_t buf[4096];
	struct st_place pl;
	struct rcmoe_treq *rr;
};

static void bystander_open(struct bystander *b)
{
	st_pair_open(&b->p);
	memset(b->buf, PAT, sizeof(b->buf));
	b->pl = (struct st_place){ .dest = b->buf };
	b->rr = st_irecv(b->p.r, sizeof(b->buf), 1, &b->pl);
}

/* The bystander's buffer is untouched; then its message arrives, and the listener still
 * accepts a new connection. */
static void bystander_check_and_close(struct bystander *b)
{
	int done = 1;
	cr_assert_eq(OPS->test(b->rr, &done, NULL, NULL), RCMOE_OK);
	cr_assert_eq(done, 0);
	cr_assert_eq(b->pl.calls, 0);
	for (size_t i = 0; i < sizeof(b->buf); i++)
		cr_assert_eq(b->buf[i], PAT, "posted buffer changed at byte %zu", i);
	uint8_t src[1000];
	st_fill(src, sizeof(src), 3);
	struct rcmoe_treq *sr = st_isend(b->p.s, src, sizeof(src), 1, 0);
	size_t n = 0;
	cr_assert_eq(st_wait(b->rr, 10, &n, NULL), RCMOE_OK);
	cr_assert_eq(st_wait(sr, 10, NULL, NULL), RCMOE_OK);
	cr_assert_eq(n, sizeof(src));
	cr_assert_eq(st_check(b->buf, n, 3), (size_t)-1);

	struct st_pair q = { .l = b->p.l };
	memcpy(q.handle, b->p.handle, sizeof(q.handle));
	st_connect_accept(&q, &q.s, &q.r);
	st_exchange(&q, 70000, 70000, 4);
	q.l = NULL; /* closed with b->p */
	st_pair_close(&q);
	st_pair_close(&b->p);
}

/* Send `bytes` as the first thing on a new socket and expect the listener to drop it loudly,
 * while the bystander connection is unaffected. */
static void refuse_on(struct bystander *b, const void *bytes, size_t len, double timeout_s)
{
	int warns = test_log_warn_count();
	int fd = st_raw_connect(b->p.handle);
	st_raw_send(fd, bytes, len);
	cr_assert(st_accept_until_closed(b->p.l, fd, timeout_s),
		  "the listener kept a connection it should refuse");
	cr_assert_gt(test_log_warn_count(), warns, "refused without a WARN");
	close(fd);
	bystander_check_and_close(b);
}

static void expect_refused(const void *bytes, size_t len, double timeout_s)
{
	struct bystander b;
	bystander_open(&b);
	refuse_on(&b, bytes, len, timeout_s);
}

/* A hello that is right but for what `spoil` changes. */
static void expect_hello_refused(void (*spoil)(struct sock_hello *h))
{
	st_init(NULL);
	struct bystander b;
	struct sock_hello h;
	uint8_t wire[SOCK_HELLO_SIZE];
	bystander_open(&b);
	st_good_hello(b.p.handle, &h, 0, 1);
	spoil(&h);
	sock_hello_encode(&h, wire);
	refuse_on(&b, wire, sizeof(wire), 5);
}

static void wrong_secret(struct sock_hello *h)
{
	h->secret ^= 1;
}

static void wrong_version(struct sock_hello *h)
{
	h->version = SOCK_PROTO_VERSION + 1;
}

static void wrong_magic(struct sock_hello *h)
{
	h->magic = 0x4745542f20485454ull; /* "GET / HTT" */
}

static void index_out_of_range(struct sock_hello *h)
{
	h->index = 2; /* count is 1: indexes 0 and 1 */
}

static void count_zero(struct sock_hello *h)
{
	h->count = 0;
}

static void count_too_large(struct sock_hello *h)
{
	h->count = 65;
}

static void chunk_too_small(struct sock_hello *h)
{
	h->min_chunk = 16;
}

Test(socket_refuse, wrong_secret)
{
	expect_hello_refused(wrong_secret);
}

Test(socket_refuse, wrong_version)
{
	expect_hello_refused(wrong_version);
}

Test(socket_refuse, wrong_magic)
{
	expect_hello_refused(wrong_magic);
}

Test(socket_refuse, stream_index_out_of_range)
{
	expect_hello_refused(index_out_of_range);
}

Test(socket_refuse, stream_count_zero)
{
	expect_hello_refused(count_zero);
}

Test(socket_refuse, stream_count_too_large)
{
	expect_hello_refused(count_too_large);
}

Test(socket_refuse, piece_size_out_of_range)
{
	expect_hello_refused(chunk_too_small);
}

Test(socket_refuse, garbage_hello)
{
	st_init(NULL);
	uint8_t junk[SOCK_HELLO_SIZE + 100];
	st_fill(junk, sizeof(junk), 99);
	expect_refused(junk, sizeof(junk), 5);
}

Test(socket_refuse, incomplete_hello_times_out)
{
	const char *env[] = { "RCMOE_SOCKET_TIMEOUT=1", NULL };
	st_init(env);
	uint8_t part[10];
	memset(part, 0, sizeof(part));
	expect_refused(part, sizeof(part), 5);
}

Test(socket_refuse, peer_closes_during_hello)
{
	st_init(NULL);
	struct bystander b;
	bystander_open(&b);
	int warns = test_log_warn_count();
	int fd = st_raw_connect(b.p.handle);
	st_raw_send(fd, "rcm", 3);
	close(fd);
	double end = st_now() + 5;
	while (test_log_warn_count() == warns) {
		struct rcmoe_trecv *r = NULL;
		cr_assert_eq(OPS->accept(b.p.l, &r), RCMOE_OK);
		cr_assert_null(r);
		cr_assert(st_now() < end, "no WARN for a peer that closed during its hello");
	}
	bystander_check_and_close(&b);
}

Test(socket_refuse, incomplete_connection_times_out)
{
	/* Only the control socket of a 2-stream connection ever arrives. */
	const char *env[] = { "RCMOE_SOCKET_TIMEOUT=1", NULL };
	st_init(env);
	struct bystander b;
	bystander_open(&b);
	struct sock_hello h;
	uint8_t wire[SOCK_HELLO_SIZE];
	st_good_hello(b.p.handle, &h, 0, 2);
	sock_hello_encode(&h, wire);
	refuse_on(&b, wire, sizeof(wire), 5);
}

/* A raw sender that passed the handshake (1 data stream) and then writes `hdr` as its first
 * message header. The receive posted for it must fail with `expect` and touch nothing. */
static void expect_header_refused(const struct sock_msg_hdr *hdr, size_t max_len, int tag,
				  rcmoe_status_t expect)
{
	struct bystander b;
	bystander_open(&b);
	int fds[2];
	struct rcmoe_trecv *r = st_raw_sender(b.p.l, b.p.handle, fds);
	uint8_t *dst = malloc(max_len + 1);
	memset(dst, PAT, max_len + 1);
	struct st_place pl = { .dest = dst };
	struct rcmoe_treq *rr = st_irecv(r, max_len, tag, &pl);

	int warns = test_log_warn_count();
	uint8_t wire[SOCK_HDR_SIZE];
	uint8_t payload[4096];
	sock_hdr_encode(hdr, wire);
	st_raw_send(fds[0], wire, sizeof(wire));
	memset(payload, 0x11, sizeof(payload));
	st_raw_send(fds[1], payload, sizeof(payload));

	cr_assert_eq(st_wait(rr, 10, NULL, NULL), expect);
	cr_assert_gt(test_log_warn_count(), warns, "no WARN for a bad header");
	cr_assert_eq(pl.calls, 0, "the placement callback was asked about a bad header");
	for (size_t i = 0; i <= max_len; i++)
		cr_assert_eq(dst[i], PAT, "posted buffer changed at byte %zu", i);
	/* The connection is dead from now on, and its sender is told so. */
	struct rcmoe_treq *again = NULL;
	cr_assert_neq(OPS->irecv(r, max_len, tag, st_place_fn, &pl, &again), RCMOE_OK);
	cr_assert_null(again);
	cr_assert(st_accept_until_closed(b.p.l, fds[0], 5), "the bad sender was not disconnected");
	cr_assert_eq(OPS->close_recv(r), RCMOE_OK);
	close(fds[0]);
	close(fds[1]);
	free(dst);
	bystander_check_and_close(&b);
}

Test(socket_refuse, header_bad_magic)
{
	st_init(NULL);
	struct sock_msg_hdr h = { .magic = 0xdeadbeef, .seq = 0, .tag = 1, .len = 100 };
	expect_header_refused(&h, 4096, 1, RCMOE_ERR_MALFORMED);
}

Test(socket_refuse, header_longer_than_the_receive)
{
	st_init(NULL);
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC, .seq = 0, .tag = 1, .len = 4097 };
	expect_header_refused(&h, 4096, 1, RCMOE_ERR_OVERFLOW);
}

Test(socket_refuse, header_huge_length)
{
	st_init(NULL);
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC, .seq = 0, .tag = 1, .len = 1ull << 63 };
	expect_header_refused(&h, 4096, 1, RCMOE_ERR_OVERFLOW);
}

Test(socket_refuse, header_wrong_tag)
{
	st_init(NULL);
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC, .seq = 0, .tag = 2, .len = 100 };
	expect_header_refused(&h, 4096, 1, RCMOE_ERR_MALFORMED);
}

Test(socket_refuse, header_out_of_sequence)
{
	st_init(NULL);
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC, .seq = 5, .tag = 1, .len = 100 };
	expect_header_refused(&h, 4096, 1, RCMOE_ERR_MALFORMED);
}

Test(socket_refuse, header_inline_too_long)
{
	/* Inline payload is read by the caller's thread: a peer may not make it long. */
	st_init(NULL);
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC,
				  .seq = 0,
				  .tag = 1,
				  .len = SOCK_INLINE_MAX + 1,
				  .wire_flags = SOCK_WIRE_INLINE };
	expect_header_refused(&h, 1 << 20, 1, RCMOE_ERR_MALFORMED);
}

Test(socket_refuse, header_unknown_transport_flags)
{
	st_init(NULL);
	struct sock_msg_hdr h = {
		.magic = SOCK_MSG_MAGIC, .seq = 0, .tag = 1, .len = 100, .wire_flags = 0x80
	};
	expect_header_refused(&h, 4096, 1, RCMOE_ERR_MALFORMED);
}

/* A well-formed raw sender, both ways of carrying payload: the receiver follows the header. */
Test(socket_refuse, raw_sender_inline_and_streamed)
{
	st_init(NULL);
	struct st_pair p;
	st_pair_open(&p);
	int fds[2];
	struct rcmoe_trecv *r = st_raw_sender(p.l, p.handle, fds);
	uint8_t src[3000], dst[2][3000];
	st_fill(src, sizeof(src), 8);
	struct st_place pl[2] = { { .dest = dst[0] }, { .dest = dst[1] } };
	struct rcmoe_treq *rr0 = st_irecv(r, sizeof(src), 4, &pl[0]);
	struct rcmoe_treq *rr1 = st_irecv(r, sizeof(src), 4, &pl[1]);
	st_raw_header(fds[0], 0, 4, sizeof(src), SOCK_WIRE_INLINE);
	st_raw_send(fds[0], src, sizeof(src));
	st_raw_header(fds[0], 1, 4, sizeof(src), 0);
	st_raw_send(fds[1], src, sizeof(src));
	size_t n0 = 0, n1 = 0;
	cr_assert_eq(st_wait(rr0, 10, &n0, NULL), RCMOE_OK);
	cr_assert_eq(st_wait(rr1, 10, &n1, NULL), RCMOE_OK);
	cr_assert_eq(n0, sizeof(src));
	cr_assert_eq(n1, sizeof(src));
	cr_assert_eq(st_check(dst[0], sizeof(src), 8), (size_t)-1);
	cr_assert_eq(st_check(dst[1], sizeof(src), 8), (size_t)-1);
	cr_assert_eq(test_log_warn_count(), 0);
	cr_assert_eq(OPS->close_recv(r), RCMOE_OK);
	close(fds[0]);
	close(fds[1]);
	st_pair_close(&p);
}

/* The same checks through real comms: a send that does not fit its receive. */
Test(socket_refuse, send_longer_than_receive)
{
	st_init(NULL);
	struct st_pair p;
	st_pair_open(&p);
	uint8_t src[1000], dst[1000];
	st_fill(src, sizeof(src), 1);
	memset(dst, PAT, sizeof(dst));
	struct st_place pl = { .dest = dst };
	int warns = test_log_warn_count();
	struct rcmoe_treq *rr = st_irecv(p.r, 999, 1, &pl);
	struct rcmoe_treq *sr = st_isend(p.s, src, 1000, 1, 0);
	cr_assert_eq(st_wait(rr, 10, NULL, NULL), RCMOE_ERR_OVERFLOW);
	cr_assert_gt(test_log_warn_count(), warns);
	cr_assert_eq(pl.calls, 0);
	for (size_t i = 0; i < sizeof(dst); i++)
		cr_assert_eq(dst[i], PAT);
	/* The sender learns that the connection is gone (or finished writing before). */
	rcmoe_status_t st = st_wait(sr, 10, NULL, NULL);
	cr_assert(st == RCMOE_OK || st == RCMOE_ERR_REMOTE, "send: %s", rcmoe_status_str(st));
	st_pair_close(&p);
}

Test(socket_refuse, send_with_another_tag)
{
	st_init(NULL);
	struct st_pair p;
	st_pair_open(&p);
	uint8_t src[100], dst[100];
	memset(src, 1, sizeof(src));
	memset(dst, PAT, sizeof(dst));
	struct st_place pl = { .dest = dst };
	struct rcmoe_treq *rr = st_irecv(p.r, sizeof(dst), 6, &pl);
	st_isend(p.s, src, sizeof(src), 5, 0);
	cr_assert_eq(st_wait(rr, 10, NULL, NULL), RCMOE_ERR_MALFORMED);
	cr_assert_geq(test_log_warn_count(), 1);
	cr_assert_eq(pl.calls, 0);
	for (size_t i = 0; i < sizeof(dst); i++)
		cr_assert_eq(dst[i], PAT);
	st_pair_close(&p);
}
