/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rcmoe/log.h"
#include "rcmoe/params.h"
#include "sock_test.h"

/* ---- parameters ---- */

/* Per thread: init_from_many_threads_at_once parses from several threads at once. */
static _Thread_local const char *const *test_env;

static const char *test_getenv(const char *name)
{
	size_t n = strlen(name);
	for (const char *const *e = test_env; e && *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	if (strcmp(name, "RCMOE_SOCKET_IFNAME") == 0)
		return "lo";
	return NULL;
}

rcmoe_status_t st_try_init(const char *const *env)
{
	struct rcmoe_params params; /* init copies what it keeps */
	test_env = env;
	rcmoe_status_t st = rcmoe_params_parse(&params, test_getenv, 0);
	cr_assert_eq(st, RCMOE_OK, "test parameters do not parse");
	return OPS->init(&params);
}

void st_init(const char *const *env)
{
	rcmoe_status_t st = st_try_init(env);
	cr_assert_eq(st, RCMOE_OK, "init: %s", rcmoe_status_str(st));
}

/* ---- time and patterns ---- */

double st_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void st_sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* Position-dependent bytes: a shifted, dropped or duplicated piece shows up. */
static inline uint8_t pattern_byte(size_t i, unsigned seed)
{
	uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15ull + seed * 0xbf58476d1ce4e5b9ull + seed;
	x ^= x >> 29;
	return (uint8_t)(x ^ (x >> 17) ^ (i >> 12));
}

void st_fill(void *buf, size_t n, unsigned seed)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < n; i++)
		p[i] = pattern_byte(i, seed);
}

size_t st_check(const void *buf, size_t n, unsigned seed)
{
	const uint8_t *p = buf;
	for (size_t i = 0; i < n; i++)
		if (p[i] != pattern_byte(i, seed))
			return i;
	return (size_t)-1;
}

/* ---- pairs ---- */

void st_pair_open(struct st_pair *p)
{
	memset(p, 0, sizeof(*p));
	cr_assert_eq(OPS->listen(0, p->handle, &p->l), RCMOE_OK);
	cr_assert_not_null(p->l);
	st_connect_accept(p, &p->s, &p->r);
}

void st_connect_accept(struct st_pair *p, struct rcmoe_tsend **s, struct rcmoe_trecv **r)
{
	double end = st_now() + 10;
	*s = NULL;
	*r = NULL;
	while (!*s || !*r) {
		if (!*s)
			cr_assert_eq(OPS->connect(0, p->handle, s), RCMOE_OK, "connect failed");
		if (!*r)
			cr_assert_eq(OPS->accept(p->l, r), RCMOE_OK, "accept failed");
		cr_assert(st_now() < end, "connect/accept did not finish within 10 s");
	}
}

void st_pair_close(struct st_pair *p)
{
	if (p->s)
		cr_expect_eq(OPS->close_send(p->s), RCMOE_OK);
	if (p->r)
		cr_expect_eq(OPS->close_recv(p->r), RCMOE_OK);
	if (p->l)
		cr_expect_eq(OPS->close_listen(p->l), RCMOE_OK);
	memset(p, 0, sizeof(*p));
}

/* ---- requests ---- */

rcmoe_status_t st_place_fn(void *arg, size_t wire_len, uint32_t flags, void **dest,
			   struct rcmoe_tmr **mr)
{
	struct st_place *pl = arg;
	pl->calls++;
	pl->len = wire_len;
	pl->flags = flags;
	if (pl->fail != RCMOE_OK)
		return pl->fail;
	*dest = pl->dest;
	return RCMOE_OK;
}

rcmoe_status_t st_wait(struct rcmoe_treq *req, double timeout_s, size_t *len, uint32_t *flags)
{
	double end = st_now() + timeout_s;
	int done = 0;
	for (;;) {
		rcmoe_status_t st = OPS->test(req, &done, len, flags);
		if (st != RCMOE_OK || done)
			return st;
		cr_assert(st_now() < end, "request not done within %.0f s", timeout_s);
	}
}

struct rcmoe_treq *st_isend(struct rcmoe_tsend *s, const void *buf, size_t len, int tag,
			    uint32_t flags)
{
	struct rcmoe_treq *req = NULL;
	double end = st_now() + 10;
	while (!req) {
		cr_assert_eq(OPS->isend(s, buf, len, NULL, tag, flags, &req), RCMOE_OK);
		cr_assert(st_now() < end, "isend gave no request within 10 s");
	}
	return req;
}

struct rcmoe_treq *st_irecv(struct rcmoe_trecv *r, size_t max, int tag, struct st_place *pl)
{
	struct rcmoe_treq *req = NULL;
	double end = st_now() + 10;
	while (!req) {
		cr_assert_eq(OPS->irecv(r, max, tag, st_place_fn, pl, &req), RCMOE_OK);
		cr_assert(st_now() < end, "irecv gave no request within 10 s");
	}
	return req;
}

void st_exchange(struct st_pair *p, size_t len, size_t max, unsigned seed)
{
	uint8_t *src = malloc(len ? len : 1);
	uint8_t *dst = malloc(max + 64);
	cr_assert(src && dst);
	st_fill(src, len, seed);
	memset(dst, 0xA5, max + 64);
	struct st_place pl = { .dest = dst };
	struct rcmoe_treq *rr = st_irecv(p->r, max, 7, &pl);
	struct rcmoe_treq *sr = st_isend(p->s, src, len, 7, 0);
	int sdone = 0, rdone = 0;
	size_t slen = 0, rlen = 0;
	uint32_t rflags = 99;
	double end = st_now() + 60;
	while (!sdone || !rdone) {
		if (!sdone)
			cr_assert_eq(OPS->test(sr, &sdone, &slen, NULL), RCMOE_OK, "send test");
		if (!rdone)
			cr_assert_eq(OPS->test(rr, &rdone, &rlen, &rflags), RCMOE_OK, "recv test");
		cr_assert(st_now() < end, "exchange of %zu bytes not done in 60 s", len);
	}
	cr_assert_eq(slen, len);
	cr_assert_eq(rlen, len, "received %zu bytes, sent %zu", rlen, len);
	cr_assert_eq(rflags, 0);
	cr_assert_eq(pl.calls, 1);
	cr_assert_eq(pl.len, len);
	size_t bad = st_check(dst, len, seed);
	cr_assert_eq(bad, (size_t)-1, "%zu-byte message differs at byte %zu", len, bad);
	for (size_t i = len; i < max + 64; i++)
		cr_assert_eq(dst[i], 0xA5, "byte %zu past the %zu-byte message was written", i,
			     len);
	free(src);
	free(dst);
}

/* ---- raw peers ---- */

int st_raw_connect(const uint8_t *handle)
{
	struct sock_handle h;
	cr_assert_eq(sock_handle_decode(handle, &h), RCMOE_OK);
	int fd = socket(h.addr.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(fd >= 0);
	socklen_t len = h.addr.sa.sa_family == AF_INET6 ? sizeof(h.addr.in6) : sizeof(h.addr.in);
	cr_assert_eq(connect(fd, &h.addr.sa, len), 0, "raw connect: %s", strerror(errno));
	return fd;
}

void st_raw_send(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		cr_assert(n > 0, "raw send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

void st_good_hello(const uint8_t *handle, struct sock_hello *h, uint16_t index, uint16_t count)
{
	struct sock_handle hd;
	cr_assert_eq(sock_handle_decode(handle, &hd), RCMOE_OK);
	*h = (struct sock_hello){
		.magic = SOCK_HELLO_MAGIC,
		.version = SOCK_PROTO_VERSION,
		.index = index,
		.count = count,
		.secret = hd.secret,
		.nonce = 0x1234567890abcdefull,
		.min_chunk = 65536,
	};
}

struct rcmoe_trecv *st_raw_sender(struct rcmoe_tlisten *l, const uint8_t *handle, int fds[2])
{
	for (uint16_t i = 0; i < 2; i++) {
		struct sock_hello h;
		uint8_t wire[SOCK_HELLO_SIZE];
		st_good_hello(handle, &h, i, 1);
		sock_hello_encode(&h, wire);
		fds[i] = st_raw_connect(handle);
		st_raw_send(fds[i], wire, sizeof(wire));
	}
	struct rcmoe_trecv *r = NULL;
	double end = st_now() + 10;
	while (!r) {
		cr_assert_eq(OPS->accept(l, &r), RCMOE_OK);
		cr_assert(st_now() < end, "the raw connection was not accepted");
	}
	return r;
}

void st_raw_header(int fd, uint32_t seq, int tag, uint64_t len, uint32_t wire_flags)
{
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC,
				  .seq = seq,
				  .tag = tag,
				  .len = len,
				  .wire_flags = wire_flags };
	uint8_t wire[SOCK_HDR_SIZE];
	sock_hdr_encode(&h, wire);
	st_raw_send(fd, wire, sizeof(wire));
}

int st_accept_until_closed(struct rcmoe_tlisten *l, int fd, double timeout_s)
{
	double end = st_now() + timeout_s;
	while (st_now() < end) {
		struct rcmoe_trecv *r = NULL;
		cr_assert_eq(OPS->accept(l, &r), RCMOE_OK, "accept failed");
		cr_assert_null(r, "accept returned a comm for a connection it should refuse");
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, 10) > 0) {
			char c;
			ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno == ECONNRESET))
				return 1;
		}
	}
	return 0;
}

/* ---- WARN capture ---- */

static ncclDebugLogger_t chained;
static pthread_mutex_t warn_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_warn[1024];

static void capture_logger(ncclDebugLogLevel level, unsigned long flags, const char *file, int line,
			   const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (level == NCCL_LOG_WARN) {
		pthread_mutex_lock(&warn_lock);
		snprintf(last_warn, sizeof(last_warn), "%s", buf);
		pthread_mutex_unlock(&warn_lock);
	}
	chained(level, flags, file, line, "%s", buf);
}

void st_capture_warn(void)
{
	chained = rcmoe_log_get();
	rcmoe_log_set(capture_logger);
}

const char *st_last_warn(void)
{
	static char copy[1024];
	pthread_mutex_lock(&warn_lock);
	snprintf(copy, sizeof(copy), "%s", last_warn);
	pthread_mutex_unlock(&warn_lock);
	return copy;
}

struct rcmoe_trecv *st_accept_one(struct rcmoe_tlisten *l)
{
	struct rcmoe_trecv *r = NULL;
	double end = st_now() + 10;
	while (!r) {
		cr_assert_eq(OPS->accept(l, &r), RCMOE_OK);
		cr_assert(st_now() < end, "nothing accepted within 10 s");
	}
	return r;
}

struct rcmoe_tsend *st_connect_one(const void *handle)
{
	struct rcmoe_tsend *s = NULL;
	double end = st_now() + 10;
	while (!s) {
		cr_assert_eq(OPS->connect(0, handle, &s), RCMOE_OK);
		cr_assert(st_now() < end, "connect did not finish within 10 s");
	}
	return s;
}
