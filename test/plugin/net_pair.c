/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net_pair.h"
#include "rcmoe/log.h"

extern const ncclNet_v11_t ncclNetPlugin_v11;
extern const ncclNet_v10_t ncclNetPlugin_v10;

int net_version = 11;

static struct raw_link *active_link; /* its sends are moved along by the waits below */
static void raw_link_pump(void);

double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* A cheap reproducible byte stream (xorshift), different per seed. */
void fill_pattern(void *buf, size_t n, unsigned seed)
{
	uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);
	uint8_t *b = buf;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(b + i, &x, 8);
	}
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	for (; i < n; i++)
		b[i] = (uint8_t)(x >> (8 * (i % 8)));
}

size_t check_pattern(const void *buf, size_t n, unsigned seed)
{
	uint8_t *want = malloc(n ? n : 1);
	cr_assert_not_null(want);
	fill_pattern(want, n, seed);
	size_t bad = (size_t)-1;
	if (memcmp(want, buf, n) != 0)
		for (size_t i = 0; i < n; i++)
			if (((const uint8_t *)buf)[i] != want[i]) {
				bad = i;
				break;
			}
	free(want);
	return bad;
}

ncclResult_t net_props(int dev, ncclNetProperties_v11_t *props)
{
	if (net_version == 11)
		return ncclNetPlugin_v11.getProperties(dev, props);
	memset(props, 0, sizeof(*props));
	return ncclNetPlugin_v10.getProperties(dev, (ncclNetProperties_v10_t *)props);
}

ncclResult_t net_reg(void *comm, void *data, size_t size, int type, void **mh)
{
	return net_version == 11 ? ncclNetPlugin_v11.regMr(comm, data, size, type, mh)
				 : ncclNetPlugin_v10.regMr(comm, data, size, type, mh);
}

ncclResult_t net_dereg(void *comm, void *mh)
{
	return net_version == 11 ? ncclNetPlugin_v11.deregMr(comm, mh)
				 : ncclNetPlugin_v10.deregMr(comm, mh);
}

ncclResult_t net_isend(void *comm, void *data, size_t size, void *mh, void *ph, void **req)
{
	return net_version == 11 ? ncclNetPlugin_v11.isend(comm, data, size, 0, mh, ph, req)
				 : ncclNetPlugin_v10.isend(comm, data, size, 0, mh, ph, req);
}

ncclResult_t net_irecv(void *comm, void *data, size_t size, void *mh, void *ph, void **req)
{
	int tag = 0;
	void *phs[1] = { ph };
	void *mhs[1] = { mh };
	void *datas[1] = { data };
	size_t sizes[1] = { size };
	return net_version == 11
		       ? ncclNetPlugin_v11.irecv(comm, 1, datas, sizes, &tag, mhs, phs, req)
		       : ncclNetPlugin_v10.irecv(comm, 1, datas, sizes, &tag, mhs, phs, req);
}

ncclResult_t net_test(void *req, int *done, int *size)
{
	return net_version == 11 ? ncclNetPlugin_v11.test(req, done, size)
				 : ncclNetPlugin_v10.test(req, done, size);
}

ncclResult_t net_close_send(void *comm)
{
	return net_version == 11 ? ncclNetPlugin_v11.closeSend(comm)
				 : ncclNetPlugin_v10.closeSend(comm);
}

ncclResult_t net_close_recv(void *comm)
{
	return net_version == 11 ? ncclNetPlugin_v11.closeRecv(comm)
				 : ncclNetPlugin_v10.closeRecv(comm);
}

void net_pair_open(struct net_pair *p, ncclProfilerCallback_t prof)
{
	char handle[NCCL_NET_HANDLE_MAXSIZE];
	int ndev = 0;
	memset(p, 0, sizeof(*p));
	p->version = net_version;
	if (net_version == 11) {
		ncclNetCommConfig_v11_t cfg = { .trafficClass = NCCL_NET_TRAFFIC_CLASS_UNDEF };
		cr_assert_eq(ncclNetPlugin_v11.init(&p->ctx, 0x42, &cfg, rcmoe_log_get(), prof),
			     ncclSuccess);
		cr_assert_eq(ncclNetPlugin_v11.devices(&ndev), ncclSuccess);
		cr_assert_gt(ndev, 0);
		cr_assert_eq(ncclNetPlugin_v11.listen(p->ctx, 0, handle, &p->listen), ncclSuccess);
	} else {
		cr_assert_eq(ncclNetPlugin_v10.init(rcmoe_log_get(), prof), ncclSuccess);
		cr_assert_eq(ncclNetPlugin_v10.devices(&ndev), ncclSuccess);
		cr_assert_gt(ndev, 0);
		cr_assert_eq(ncclNetPlugin_v10.listen(0, handle, &p->listen), ncclSuccess);
	}
	double t0 = now_s();
	while (!p->send || !p->recv) {
		ncclNetDeviceHandle_v11_t *dh = NULL;
		if (!p->send) {
			if (net_version == 11)
				cr_assert_eq(
					ncclNetPlugin_v11.connect(p->ctx, 0, handle, &p->send, &dh),
					ncclSuccess);
			else {
				ncclNetCommConfig_v10_t cfg = { .trafficClass = -1 };
				cr_assert_eq(
					ncclNetPlugin_v10.connect(0, &cfg, handle, &p->send, &dh),
					ncclSuccess);
			}
		}
		if (!p->recv)
			cr_assert_eq(net_version == 11
					     ? ncclNetPlugin_v11.accept(p->listen, &p->recv, &dh)
					     : ncclNetPlugin_v10.accept(p->listen, &p->recv, &dh),
				     ncclSuccess);
		cr_assert_lt(now_s() - t0, 10.0, "connect/accept did not complete in 10 s");
	}
}

void net_pair_close(struct net_pair *p)
{
	if (p->send)
		cr_expect_eq(net_close_send(p->send), ncclSuccess);
	if (p->recv)
		cr_expect_eq(net_close_recv(p->recv), ncclSuccess);
	if (net_version == 11) {
		if (p->listen)
			cr_expect_eq(ncclNetPlugin_v11.closeListen(p->listen), ncclSuccess);
		cr_expect_eq(ncclNetPlugin_v11.finalize(p->ctx), ncclSuccess);
	} else if (p->listen) {
		cr_expect_eq(ncclNetPlugin_v10.closeListen(p->listen), ncclSuccess);
	}
	memset(p, 0, sizeof(*p));
}

void *net_isend_retry(void *comm, void *data, size_t size, void *mh, void *ph)
{
	void *req = NULL;
	double t0 = now_s();
	while (!req) {
		cr_assert_eq(net_isend(comm, data, size, mh, ph, &req), ncclSuccess);
		cr_assert_lt(now_s() - t0, 10.0, "isend never accepted");
	}
	return req;
}

void *net_irecv_retry(void *comm, void *data, size_t size, void *mh, void *ph)
{
	void *req = NULL;
	double t0 = now_s();
	while (!req) {
		cr_assert_eq(net_irecv(comm, data, size, mh, ph, &req), ncclSuccess);
		cr_assert_lt(now_s() - t0, 10.0, "irecv never accepted");
	}
	return req;
}

int net_wait(void *req, double timeout_s)
{
	int done = 0, size = -1;
	double t0 = now_s();
	while (!done) {
		raw_link_pump();
		cr_assert_eq(net_test(req, &done, &size), ncclSuccess, "test failed");
		cr_assert_lt(now_s() - t0, timeout_s, "request not done after %.0f s", timeout_s);
	}
	return size;
}

ncclResult_t net_wait_error(void *req, double timeout_s)
{
	int done = 0, size = -1;
	double t0 = now_s();
	for (;;) {
		raw_link_pump();
		ncclResult_t r = net_test(req, &done, &size);
		if (r != ncclSuccess)
			return r;
		cr_assert(!done, "request completed, but an error was expected");
		cr_assert_lt(now_s() - t0, timeout_s, "no error after %.0f s: hang", timeout_s);
	}
}

void net_wait_all(void *const *reqs, int n, int *sizes, double timeout_s)
{
	char *done = calloc(n > 0 ? (size_t)n : 1, 1);
	int left = n;
	double t0 = now_s();
	cr_assert_not_null(done);
	while (left > 0) {
		raw_link_pump();
		for (int i = 0; i < n; i++) {
			int d = 0, size = -1;
			if (done[i])
				continue;
			cr_assert_eq(net_test(reqs[i], &d, &size), ncclSuccess,
				     "test of request %d failed", i);
			if (d) {
				done[i] = 1;
				left--;
				if (sizes)
					sizes[i] = size;
			}
		}
		cr_assert_lt(now_s() - t0, timeout_s, "%d of %d requests not done after %.0f s",
			     left, n, timeout_s);
	}
	free(done);
}

void net_exchange(struct net_pair *p, size_t send_size, size_t recv_size, unsigned seed)
{
	char *src = malloc(send_size ? send_size : 1);
	char *dst = malloc(recv_size ? recv_size : 1);
	void *smh, *rmh;
	cr_assert(src && dst);
	fill_pattern(src, send_size, seed);
	memset(dst, 0xa5, recv_size);
	cr_assert_eq(net_reg(p->send, src, send_size, NCCL_PTR_HOST, &smh), ncclSuccess);
	cr_assert_eq(net_reg(p->recv, dst, recv_size, NCCL_PTR_HOST, &rmh), ncclSuccess);
	void *rr = net_irecv_retry(p->recv, dst, recv_size, rmh, NULL);
	void *sr = net_isend_retry(p->send, src, send_size, smh, NULL);
	int got = -1, sent = -1, rdone = 0, sdone = 0;
	double t0 = now_s();
	while (!rdone || !sdone) {
		if (!sdone)
			cr_assert_eq(net_test(sr, &sdone, &sent), ncclSuccess);
		if (!rdone)
			cr_assert_eq(net_test(rr, &rdone, &got), ncclSuccess);
		cr_assert_lt(now_s() - t0, 60.0, "exchange of %zu bytes hung", send_size);
	}
	cr_expect_eq(got, (int)send_size, "receiver reported %d bytes, sent %zu", got, send_size);
	size_t bad = check_pattern(dst, send_size, seed);
	cr_expect_eq(bad, (size_t)-1, "byte %zu of %zu differs", bad, send_size);
	for (size_t i = send_size; i < recv_size; i++)
		if ((uint8_t)dst[i] != 0xa5) {
			cr_expect(0, "byte %zu past the message was written", i);
			break;
		}
	cr_expect_eq(net_dereg(p->send, smh), ncclSuccess);
	cr_expect_eq(net_dereg(p->recv, rmh), ncclSuccess);
	free(src);
	free(dst);
}

int net_over_ib(void)
{
	const char *t = getenv("RCMOE_TRANSPORT");
	return t && strcmp(t, "ib") == 0;
}

const struct rcmoe_transport_ops *net_transport_ops(void)
{
	return net_over_ib() ? &rcmoe_ib_ops : &rcmoe_socket_ops;
}

void raw_link_open(struct raw_link *l)
{
	char handle[NCCL_NET_HANDLE_MAXSIZE];
	ncclNetCommConfig_v11_t cfg = { .trafficClass = -1 };
	const struct rcmoe_transport_ops *t = net_transport_ops();
	memset(l, 0, sizeof(*l));
	cr_assert_eq(ncclNetPlugin_v11.init(&l->ctx, 7, &cfg, rcmoe_log_get(), NULL), ncclSuccess);
	cr_assert_eq(ncclNetPlugin_v11.listen(l->ctx, 0, handle, &l->listen), ncclSuccess);
	double t0 = now_s();
	while (!l->ts || !l->recv) {
		ncclNetDeviceHandle_v11_t *dh;
		if (!l->ts)
			cr_assert_eq(t->connect(0, handle, &l->ts), RCMOE_OK);
		if (!l->recv)
			cr_assert_eq(ncclNetPlugin_v11.accept(l->listen, &l->recv, &dh),
				     ncclSuccess);
		cr_assert_lt(now_s() - t0, 10.0);
	}
	active_link = l;
}

void raw_link_send(struct raw_link *l, const void *buf, size_t len, uint32_t flags)
{
	const struct rcmoe_transport_ops *t = net_transport_ops();
	int i = l->nsends;
	cr_assert_lt(i, RAW_LINK_MAX_SENDS);
	if (len > 0)
		cr_assert_eq(t->reg_mr(l->ts, NULL, (void *)buf, len, &l->mr[i]), RCMOE_OK);
	cr_assert_eq(t->isend(l->ts, buf, len, l->mr[i], 0, flags, &l->treq[i]), RCMOE_OK);
	cr_assert_not_null(l->treq[i], "the bare sender is full");
	l->nsends++;
}

/* Test each send not yet reported: done or failed, it is released and not tested again. */
static void raw_link_pump(void)
{
	struct raw_link *l = active_link;
	if (!l)
		return;
	for (int i = 0; i < l->nsends; i++) {
		int done = 0;
		if (l->treq[i] &&
		    (net_transport_ops()->test(l->treq[i], &done, NULL, NULL) != RCMOE_OK || done))
			l->treq[i] = NULL;
	}
}

void raw_link_close(struct raw_link *l)
{
	const struct rcmoe_transport_ops *t = net_transport_ops();
	active_link = NULL;
	t->close_send(l->ts);
	for (int i = 0; i < l->nsends; i++)
		if (l->mr[i])
			t->dereg_mr(l->ts, NULL, l->mr[i]);
	net_close_recv(l->recv);
	ncclNetPlugin_v11.closeListen(l->listen);
	ncclNetPlugin_v11.finalize(l->ctx);
}

int stats_send_cell(const char *path, const char *func, const char *dtype, unsigned long *messages,
		    unsigned long *logical, unsigned long *wire)
{
	char want[128], line[1024];
	snprintf(want, sizeof(want), "\"dir\":\"send\",\"func\":\"%s\",\"dtype\":\"%s\"", func,
		 dtype);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	int found = 0;
	while (fgets(line, sizeof(line), f)) {
		char *m = strstr(line, want) ? strstr(line, "\"messages\":") : NULL;
		if (m)
			found = sscanf(m,
				       "\"messages\":%lu,\"logical_bytes\":%lu,\"wire_bytes\":%lu",
				       messages, logical, wire) == 3;
	}
	fclose(f);
	return found;
}
