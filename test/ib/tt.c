/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../transport/sock_test.h"
#include "rcmoe/params.h"
#include "tt.h"

static _Thread_local const char *const *test_env;

static const char *test_getenv(const char *name)
{
	size_t n = strlen(name);
	for (const char *const *e = test_env; e && *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	if (strcmp(name, "RCMOE_SOCKET_IFNAME") == 0)
		return "lo";
	if (strcmp(name, "RCMOE_IB_LIBRARY") == 0)
		return FAKEVERBS_PATH;
	return NULL;
}

rcmoe_status_t tt_try_init(const char *const *env)
{
	struct rcmoe_params params;
	test_env = env;
	cr_assert_eq(rcmoe_params_parse(&params, test_getenv, 0), RCMOE_OK,
		     "test parameters do not parse");
	return TT_OPS->init(&params);
}

void tt_init(const char *const *env)
{
	rcmoe_status_t st = tt_try_init(env);
	cr_assert_eq(st, RCMOE_OK, "%s init: %s", TT_OPS->name, rcmoe_status_str(st));
}

void tt_connect_accept(struct tt_pair *p, int connect_dev, struct rcmoe_tsend **s,
		       struct rcmoe_trecv **r)
{
	double end = st_now() + 10;
	*s = NULL;
	*r = NULL;
	while (!*s || !*r) {
		if (!*s)
			cr_assert_eq(TT_OPS->connect(connect_dev, p->handle, s), RCMOE_OK,
				     "connect failed");
		if (!*r)
			cr_assert_eq(TT_OPS->accept(p->l, r), RCMOE_OK, "accept failed");
		cr_assert(st_now() < end, "connect/accept did not finish within 10 s");
	}
}

void tt_pair_open(struct tt_pair *p, int listen_dev, int connect_dev)
{
	memset(p, 0, sizeof(*p));
	cr_assert_eq(TT_OPS->listen(listen_dev, p->handle, &p->l), RCMOE_OK);
	cr_assert_not_null(p->l);
	tt_connect_accept(p, connect_dev, &p->s, &p->r);
}

void tt_pair_close(struct tt_pair *p)
{
	if (p->s)
		cr_expect_eq(TT_OPS->close_send(p->s), RCMOE_OK);
	if (p->r)
		cr_expect_eq(TT_OPS->close_recv(p->r), RCMOE_OK);
	if (p->l)
		cr_expect_eq(TT_OPS->close_listen(p->l), RCMOE_OK);
	memset(p, 0, sizeof(*p));
}

void tt_buf_alloc(struct tt_buf *b, size_t len, struct rcmoe_tsend *s, struct rcmoe_trecv *r)
{
	memset(b, 0, sizeof(*b));
	b->len = len ? len : 1;
	b->mem = malloc(b->len);
	cr_assert_not_null(b->mem);
	b->s = s;
	b->r = r;
	cr_assert_eq(TT_OPS->reg_mr(s, r, b->mem, b->len, &b->mr), RCMOE_OK, "reg_mr");
	cr_assert_not_null(b->mr);
}

void tt_buf_free(struct tt_buf *b)
{
	if (b->mr)
		cr_expect_eq(TT_OPS->dereg_mr(b->s, b->r, b->mr), RCMOE_OK);
	free(b->mem);
	memset(b, 0, sizeof(*b));
}

rcmoe_status_t tt_place_fn(void *arg, size_t wire_len, uint32_t flags, void **dest,
			   struct rcmoe_tmr **mr)
{
	struct tt_place *pl = arg;
	pl->calls++;
	pl->len = wire_len;
	pl->flags = flags;
	if (pl->fail != RCMOE_OK)
		return pl->fail;
	*dest = pl->dest;
	*mr = pl->mr;
	return RCMOE_OK;
}

struct rcmoe_treq *tt_isend(struct rcmoe_tsend *s, const void *buf, size_t len,
			    struct rcmoe_tmr *mr, int tag, uint32_t flags)
{
	struct rcmoe_treq *req = NULL;
	double end = st_now() + 10;
	while (!req) {
		cr_assert_eq(TT_OPS->isend(s, buf, len, mr, tag, flags, &req), RCMOE_OK);
		cr_assert(st_now() < end, "isend gave no request within 10 s");
	}
	return req;
}

struct rcmoe_treq *tt_irecv(struct rcmoe_trecv *r, size_t max, int tag, struct tt_place *pl)
{
	struct rcmoe_treq *req = NULL;
	double end = st_now() + 10;
	while (!req) {
		cr_assert_eq(TT_OPS->irecv(r, max, tag, tt_place_fn, pl, &req), RCMOE_OK);
		cr_assert(st_now() < end, "irecv gave no request within 10 s");
	}
	return req;
}

rcmoe_status_t tt_wait(struct rcmoe_treq *req, double timeout_s, size_t *len, uint32_t *flags)
{
	double end = st_now() + timeout_s;
	int done = 0;
	for (;;) {
		rcmoe_status_t st = TT_OPS->test(req, &done, len, flags);
		if (st != RCMOE_OK || done)
			return st;
		cr_assert(st_now() < end, "request not done within %.0f s", timeout_s);
	}
}

void tt_exchange(struct tt_pair *p, size_t len, size_t max, unsigned seed, uint32_t flags)
{
	struct tt_buf src, dst;
	tt_buf_alloc(&src, len, p->s, NULL);
	tt_buf_alloc(&dst, max + 64, NULL, p->r);
	st_fill(src.mem, len, seed);
	memset(dst.mem, 0xA5, max + 64);
	struct tt_place pl = { .dest = dst.mem, .mr = dst.mr };
	struct rcmoe_treq *rr = tt_irecv(p->r, max, 7, &pl);
	struct rcmoe_treq *sr = tt_isend(p->s, src.mem, len, src.mr, 7, flags);
	int sdone = 0, rdone = 0;
	size_t slen = 0, rlen = 0;
	uint32_t rflags = 99;
	double end = st_now() + 60;
	while (!sdone || !rdone) {
		if (!sdone)
			cr_assert_eq(TT_OPS->test(sr, &sdone, &slen, NULL), RCMOE_OK, "send test");
		if (!rdone)
			cr_assert_eq(TT_OPS->test(rr, &rdone, &rlen, &rflags), RCMOE_OK,
				     "recv test");
		cr_assert(st_now() < end, "exchange of %zu bytes not done in 60 s", len);
	}
	cr_assert_eq(slen, len);
	cr_assert_eq(rlen, len, "received %zu bytes, sent %zu", rlen, len);
	cr_assert_eq(rflags, flags);
	cr_assert_eq(pl.calls, 1);
	/* Sockets ask once the header says how long the message is; IB at irecv, for any. */
	if (TT_OPS->needs_posted_dest) {
		cr_assert_eq(pl.len, max);
		cr_assert_eq(pl.flags, RCMOE_PLACE_ANY);
	} else {
		cr_assert_eq(pl.len, len);
	}
	size_t bad = st_check(dst.mem, len, seed);
	cr_assert_eq(bad, (size_t)-1, "%zu-byte message differs at byte %zu", len, bad);
	for (size_t i = len; i < max + 64; i++)
		cr_assert_eq(dst.mem[i], 0xA5, "byte %zu past the %zu-byte message was written", i,
			     len);
	tt_buf_free(&src);
	tt_buf_free(&dst);
}

int tt_raw_connect(const uint8_t *handle)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	cr_assert_eq(handle[12] << 8 | handle[13], AF_INET, "the test listens on IPv4 lo");
	memcpy(&a.sin_port, handle + 14, 2);
	memcpy(&a.sin_addr, handle + 16, 4);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(fd >= 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "raw connect: %s",
		     strerror(errno));
	return fd;
}
