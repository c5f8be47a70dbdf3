/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The IB transport's own tests, over the test provider (fakeverbs/): devices and the
 * RCMOE_IB_HCA filter, run-time loading (a missing library or one without the verbs is
 * "unsupported", never a crash), verbs errors injected into completions (a WARN naming the
 * peer and the status, an error on both sides in under 5 s), the provider's own checks of
 * rkeys, bounds and access, the registry's choice between IB and sockets, and DMA-BUF
 * registrations (a memfd standing in for GPU memory the CPU must not touch).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../transport/sock_test.h"
#include "rcmoe/log.h"
#include "rcmoe/params.h"
#include "test_log.h"
#include "transport/ib/ib.h"
#include "tt.h"

const struct rcmoe_transport_ops *const TT_OPS = &rcmoe_ib_ops;

/* Every WARN's text, concatenated (the last one alone may be the other side's). */
static ncclDebugLogger_t chained;
static char warns[8192];

static void keep_warns(ncclDebugLogLevel level, unsigned long flags, const char *file, int line,
		       const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (level == NCCL_LOG_WARN && strlen(warns) + strlen(buf) + 2 < sizeof(warns)) {
		strcat(warns, buf);
		strcat(warns, "\n");
	}
	chained(level, flags, file, line, "%s", buf);
}

TestSuite(ib, .init = test_log_init, .timeout = 120);

Test(ib, one_device_per_active_port_with_its_properties)
{
	setenv("FAKEVERBS_NDEV", "3", 1);
	setenv("FAKEVERBS_PORT_DOWN", "fake1", 1);
	tt_init(NULL);
	int n = 0;
	cr_assert_eq(TT_OPS->device_count(&n), RCMOE_OK);
	cr_assert_eq(n, 2);
	struct rcmoe_device_info info;
	cr_assert_eq(TT_OPS->device_info(0, &info), RCMOE_OK);
	cr_assert_str_eq(info.name, "fake0:1");
	cr_assert_eq(info.speed_mbps, 100000);
	cr_assert_str_eq(info.pci_path, "");
	cr_assert_eq(TT_OPS->device_info(1, &info), RCMOE_OK);
	cr_assert_str_eq(info.name, "fake2:1");
	cr_assert_neq(TT_OPS->device_info(2, &info), RCMOE_OK);
	/* A connection from one device to a listener on another. */
	struct tt_pair p;
	tt_pair_open(&p, 1, 0);
	tt_exchange(&p, 100000, 100000, 3, 0);
	tt_pair_close(&p);
}

Test(ib, hca_filter)
{
	cr_assert(ib_hca_selected("", "mlx5_0", 1));
	cr_assert(ib_hca_selected("mlx5", "mlx5_0", 1));
	cr_assert_not(ib_hca_selected("=mlx5", "mlx5_0", 1));
	cr_assert(ib_hca_selected("=mlx5_0", "mlx5_0", 1));
	cr_assert(ib_hca_selected("mlx5_1,mlx5_0:1", "mlx5_0", 1));
	cr_assert_not(ib_hca_selected("mlx5_0:2", "mlx5_0", 1));
	cr_assert_not(ib_hca_selected("^mlx5_0", "mlx5_0", 1));
	cr_assert(ib_hca_selected("^mlx5_0", "mlx5_1", 1));
	cr_assert_not(ib_hca_selected("^=mlx5", "mlx5", 1));
}

Test(ib, hca_filter_selects_devices)
{
	setenv("FAKEVERBS_NDEV", "2", 1);
	const char *env[] = { "RCMOE_IB_HCA=^fake0", NULL };
	tt_init(env);
	int n = 0;
	struct rcmoe_device_info info;
	cr_assert_eq(TT_OPS->device_count(&n), RCMOE_OK);
	cr_assert_eq(n, 1);
	cr_assert_eq(TT_OPS->device_info(0, &info), RCMOE_OK);
	cr_assert_str_eq(info.name, "fake1:1");
}

Test(ib, no_active_port_is_unsupported)
{
	setenv("FAKEVERBS_PORT_DOWN", "fake0", 1);
	cr_assert_eq(tt_try_init(NULL), RCMOE_ERR_UNSUPPORTED);
	cr_assert_eq(test_log_warn_count(), 0, "no port is not a warning: sockets take over");
}

Test(ib, missing_library_is_unsupported)
{
	const char *env[] = { "RCMOE_IB_LIBRARY=/nonexistent/libibverbs.so.1", NULL };
	cr_assert_eq(tt_try_init(env), RCMOE_ERR_UNSUPPORTED);
	int n;
	cr_assert_neq(TT_OPS->device_count(&n), RCMOE_OK);
}

Test(ib, library_without_verbs_is_unsupported)
{
	const char *env[] = { "RCMOE_IB_LIBRARY=libc.so.6", NULL };
	cr_assert_eq(tt_try_init(env), RCMOE_ERR_UNSUPPORTED);
}

Test(ib, bad_gid_index_is_a_usage_error)
{
	const char *env[] = { "RCMOE_IB_GID_INDEX=5", NULL };
	cr_assert_eq(tt_try_init(env), RCMOE_ERR_USAGE);
	cr_assert_geq(test_log_warn_count(), 1);
}

Test(ib, wrong_secret_is_refused)
{
	tt_init(NULL);
	st_capture_warn();
	struct tt_pair p;
	memset(&p, 0, sizeof(p));
	cr_assert_eq(TT_OPS->listen(0, p.handle, &p.l), RCMOE_OK);
	struct ib_hello h = { .magic = IB_HELLO_MAGIC, .version = IB_PROTO_VERSION, .nqps = 2 };
	struct ib_handle hd;
	cr_assert_eq(ib_handle_decode(p.handle, &hd), RCMOE_OK);
	h.secret = hd.secret ^ 1;
	uint8_t wire[IB_HELLO_SIZE];
	ib_hello_encode(&h, wire);
	int fd = tt_raw_connect(p.handle);
	st_raw_send(fd, wire, sizeof(wire));
	double end = st_now() + 2;
	while (st_now() < end && !strstr(st_last_warn(), "wrong secret")) {
		struct rcmoe_trecv *r = NULL;
		cr_assert_eq(TT_OPS->accept(p.l, &r), RCMOE_OK);
		cr_assert_null(r);
	}
	cr_assert(strstr(st_last_warn(), "wrong secret"), "%s", st_last_warn());
	close(fd);
	tt_connect_accept(&p, 0, &p.s, &p.r);
	tt_exchange(&p, 1000, 1000, 1, 0);
	tt_pair_close(&p);
}

/* The N-th send WR of the process completes with `status`: the receiver's clear-to-send write
 * is WR 1, the sender's stripes WR 2 and 3. Both sides must fail within 5 s, the sender with a
 * WARN naming the peer and the status. */
static void injected(const char *spec, const char *status_name, const char *who)
{
	setenv("FAKEVERBS_FAIL_SEND", spec, 1);
	tt_init(NULL);
	chained = rcmoe_log_get();
	rcmoe_log_set(keep_warns);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	struct tt_buf src, dst;
	tt_buf_alloc(&src, 1 << 20, p.s, NULL);
	tt_buf_alloc(&dst, 1 << 20, NULL, p.r);
	struct tt_place pl = { .dest = dst.mem, .mr = dst.mr };
	struct rcmoe_treq *rr = tt_irecv(p.r, 1 << 20, 1, &pl);
	struct rcmoe_treq *sr = tt_isend(p.s, src.mem, 1 << 20, src.mr, 1, 0);
	rcmoe_status_t sst = RCMOE_OK, rst = RCMOE_OK;
	int sdone = 0, rdone = 0;
	double t0 = st_now();
	while ((sst == RCMOE_OK && !sdone) || (rst == RCMOE_OK && !rdone)) {
		if (sst == RCMOE_OK && !sdone)
			sst = TT_OPS->test(sr, &sdone, NULL, NULL);
		if (rst == RCMOE_OK && !rdone)
			rst = TT_OPS->test(rr, &rdone, NULL, NULL);
		cr_assert_lt(st_now() - t0, 5.0, "no error within 5 s");
	}
	cr_assert_neq(sst, RCMOE_OK, "the send must fail");
	cr_assert_neq(rst, RCMOE_OK, "the receive must fail");
	char expect[128];
	snprintf(expect, sizeof(expect), "connection %s 127.0.0.1:", who);
	cr_assert(strstr(warns, expect), "no WARN names the peer (%s): %s", expect, warns);
	cr_assert(strstr(warns, status_name), "no WARN names %s: %s", status_name, warns);
	tt_buf_free(&src);
	tt_buf_free(&dst);
	tt_pair_close(&p);
}

Test(ib, retry_exceeded_on_a_write_fails_both_sides)
{
	injected("2:12", "IBV_WC_RETRY_EXC_ERR", "to");
}

Test(ib, remote_access_error_on_a_write_fails_both_sides)
{
	injected("3:10", "IBV_WC_REM_ACCESS_ERR", "to");
}

Test(ib, error_on_the_clear_to_send_write_fails_both_sides)
{
	injected("1:12", "IBV_WC_RETRY_EXC_ERR", "from");
}

static const char *env_get(const char *name)
{
	return getenv(name);
}

/* The registry's choice (plugin/transport/registry.c) with `transport` and this verbs
 * library: its status, the transport it tried last in *t. */
static rcmoe_status_t select_with(int transport, const char *library,
				  const struct rcmoe_transport_ops **t)
{
	struct rcmoe_params params;
	setenv("RCMOE_SOCKET_IFNAME", "lo", 1);
	setenv("RCMOE_IB_LIBRARY", library, 1);
	cr_assert_eq(rcmoe_params_parse(&params, env_get, 0), RCMOE_OK);
	params.transport = transport;
	return rcmoe_transport_select(&params, t);
}

Test(ib, the_registry_gives_ib_when_asked)
{
	const struct rcmoe_transport_ops *t = NULL;
	cr_assert_eq(select_with(RCMOE_TRANSPORT_IB, FAKEVERBS_PATH, &t), RCMOE_OK);
	cr_assert_eq(t, &rcmoe_ib_ops);
	cr_assert_eq(test_log_warn_count(), 0);
}

/* Until the IB transport has run on real HCAs, `auto` keeps sockets even where a port is
 * active; IB is used when named. */
Test(ib, auto_keeps_sockets_where_a_port_is_active)
{
	const struct rcmoe_transport_ops *t = NULL;
	cr_assert_eq(select_with(RCMOE_TRANSPORT_AUTO, FAKEVERBS_PATH, &t), RCMOE_OK);
	cr_assert_eq(t, &rcmoe_socket_ops);
	cr_assert_eq(test_log_warn_count(), 0);
}

Test(ib, auto_uses_sockets_without_the_library)
{
	const struct rcmoe_transport_ops *t = NULL;
	cr_assert_eq(select_with(RCMOE_TRANSPORT_AUTO, "/nonexistent/libibverbs.so.1", &t),
		     RCMOE_OK);
	cr_assert_eq(t, &rcmoe_socket_ops);
	cr_assert_eq(test_log_warn_count(), 0, "a machine without verbs is no warning");
}

Test(ib, auto_uses_sockets_without_an_active_port)
{
	const struct rcmoe_transport_ops *t = NULL;
	setenv("FAKEVERBS_PORT_DOWN", "fake0", 1);
	cr_assert_eq(select_with(RCMOE_TRANSPORT_AUTO, FAKEVERBS_PATH, &t), RCMOE_OK);
	cr_assert_eq(t, &rcmoe_socket_ops);
}

/* Asked for by name, IB that cannot start is an error, not sockets in its place. */
Test(ib, ib_asked_for_without_the_library_fails)
{
	const struct rcmoe_transport_ops *t = NULL;
	cr_assert_eq(select_with(RCMOE_TRANSPORT_IB, "/nonexistent/libibverbs.so.1", &t),
		     RCMOE_ERR_UNSUPPORTED);
	cr_assert_eq(t, &rcmoe_ib_ops);
}

/* ---- DMA-BUF registrations (reg_mr_dmabuf) ---- */

/* A memfd stands in for GPU memory exported as a DMA-BUF: the test reads and writes it through
 * its own mapping, while the transport names it by an iova that is reserved PROT_NONE, so any
 * touch of it by the CPU (transport or provider) crashes the test, as GPU memory would. */
struct fake_gpu {
	int fd;
	size_t size;
	uint8_t *cpu;  /* the test's view */
	uint8_t *iova; /* the address transfers name; not accessible */
};

static void fake_gpu_open(struct fake_gpu *g, size_t size)
{
	g->size = size;
	g->fd = memfd_create("rcmoe-fake-gpu", 0);
	cr_assert_geq(g->fd, 0, "memfd_create: %s", strerror(errno));
	cr_assert_eq(ftruncate(g->fd, (off_t)size), 0);
	g->cpu = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd, 0);
	cr_assert_neq(g->cpu, MAP_FAILED);
	g->iova = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(g->iova, MAP_FAILED);
}

static void fake_gpu_close(struct fake_gpu *g)
{
	munmap(g->cpu, g->size);
	munmap(g->iova, g->size);
	close(g->fd);
}

static void pattern(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
}

/* One message of len bytes from src (registered as smr) into dst (dmr), tag `tag`: both sides
 * done, the whole message received. */
static void transfer(struct tt_pair *p, const void *src, struct rcmoe_tmr *smr, void *dst,
		     struct rcmoe_tmr *dmr, size_t len, int tag)
{
	struct tt_place pl = { .dest = dst, .mr = dmr };
	struct rcmoe_treq *rr = tt_irecv(p->r, len, tag, &pl);
	struct rcmoe_treq *sr = tt_isend(p->s, src, len, smr, tag, 0);
	size_t got = 0;
	cr_assert_eq(tt_wait(sr, 10, NULL, NULL), RCMOE_OK);
	cr_assert_eq(tt_wait(rr, 10, &got, NULL), RCMOE_OK);
	cr_assert_eq(got, len);
}

/* Bytes sent from DMA-BUF memory arrive; bytes written into DMA-BUF memory land at the fd's
 * offset, nothing around them changes; at page and odd offsets, sizes from 1 byte to 3 MiB. */
Test(ib, dmabuf_memory_is_sent_and_received_without_the_cpu)
{
	static const struct {
		uint64_t off;
		size_t len;
	} cases[] = { { 0, 1 }, { 4096, 1 << 20 }, { 12345, (3 << 20) + 7 }, { 65536, 4096 } };
	tt_init(NULL);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	struct fake_gpu g;
	fake_gpu_open(&g, 8 << 20);
	struct tt_buf host_src, host_dst;
	tt_buf_alloc(&host_src, 4 << 20, p.s, NULL);
	tt_buf_alloc(&host_dst, 4 << 20, NULL, p.r);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t off = cases[i].off;
		size_t len = cases[i].len;
		/* GPU -> host */
		struct rcmoe_tmr *smr = NULL;
		pattern(g.cpu, g.size, (unsigned)i);
		cr_assert_eq(TT_OPS->reg_mr_dmabuf(p.s, NULL, g.iova + off, len, g.fd, off, &smr),
			     RCMOE_OK, "case %zu", i);
		memset(host_dst.mem, 0x5a, host_dst.len);
		transfer(&p, g.iova + off, smr, host_dst.mem, host_dst.mr, len, 7);
		cr_assert(memcmp(host_dst.mem, g.cpu + off, len) == 0, "case %zu: GPU -> host", i);
		cr_assert_eq(host_dst.mem[len], 0x5a, "case %zu: written past the message", i);
		cr_assert_eq(TT_OPS->dereg_mr(p.s, NULL, smr), RCMOE_OK);

		/* host -> GPU */
		struct rcmoe_tmr *rmr = NULL;
		memset(g.cpu, 0x33, g.size);
		pattern(host_src.mem, len, 99 + (unsigned)i);
		cr_assert_eq(TT_OPS->reg_mr_dmabuf(NULL, p.r, g.iova + off, len, g.fd, off, &rmr),
			     RCMOE_OK);
		transfer(&p, host_src.mem, host_src.mr, g.iova + off, rmr, len, 8);
		cr_assert(memcmp(g.cpu + off, host_src.mem, len) == 0, "case %zu: host -> GPU", i);
		for (size_t b = 0; b < g.size; b++)
			if (b < off || b >= off + len)
				cr_assert_eq(g.cpu[b], 0x33, "case %zu: byte %zu outside changed",
					     i, b);
		cr_assert_eq(TT_OPS->dereg_mr(NULL, p.r, rmr), RCMOE_OK);
	}
	tt_buf_free(&host_src);
	tt_buf_free(&host_dst);
	fake_gpu_close(&g);
	tt_pair_close(&p);
}

/* A device or kernel without DMA-BUF support, a bad fd, or a range past the end of the buffer:
 * an error with a WARN naming the fd, never a crash, and the comm still works. */
Test(ib, dmabuf_registration_refusals_are_clear)
{
	setenv("FAKEVERBS_NO_DMABUF", "1", 1);
	tt_init(NULL);
	st_capture_warn();
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	struct fake_gpu g;
	fake_gpu_open(&g, 1 << 20);
	struct rcmoe_tmr *mr = NULL;
	cr_assert_eq(TT_OPS->reg_mr_dmabuf(p.s, NULL, g.iova, 4096, g.fd, 0, &mr),
		     RCMOE_ERR_UNSUPPORTED);
	cr_assert(strstr(st_last_warn(), "DMA-BUF fd"), "%s", st_last_warn());
	unsetenv("FAKEVERBS_NO_DMABUF");
	cr_assert_eq(TT_OPS->reg_mr_dmabuf(p.s, NULL, g.iova, 4096, g.fd, (1 << 20) - 100, &mr),
		     RCMOE_ERR_SYSTEM);
	cr_assert(strstr(st_last_warn(), "DMA-BUF fd"), "%s", st_last_warn());
	int bad = dup(g.fd);
	close(bad);
	cr_assert_eq(TT_OPS->reg_mr_dmabuf(p.s, NULL, g.iova, 4096, bad, 0, &mr), RCMOE_ERR_SYSTEM);
	cr_assert_eq(TT_OPS->reg_mr_dmabuf(p.s, NULL, g.iova, 4096, -1, 0, &mr), RCMOE_ERR_INVALID);
	cr_assert_null(rcmoe_socket_ops.reg_mr_dmabuf, "sockets cannot register DMA-BUF");
	fake_gpu_close(&g);
	tt_exchange(&p, 100000, 100000, 3, 0);
	tt_pair_close(&p);
}

/* iflush after a receive into DMA-BUF memory: an RDMA read through the comm's loopback flush
 * QP, which really reads that memory (the word it lands in holds the buffer's first bytes);
 * nothing to do (no request) for host memory and for 0 bytes; a range outside the
 * registration is refused with a WARN; sockets have no iflush. */
Test(ib, iflush_reads_received_dmabuf_memory_back)
{
	tt_init(NULL);
	st_capture_warn();
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	struct fake_gpu g;
	fake_gpu_open(&g, 1 << 20);
	struct tt_buf src, host_dst;
	tt_buf_alloc(&src, 1 << 20, p.s, NULL);
	tt_buf_alloc(&host_dst, 1 << 20, NULL, p.r);
	struct rcmoe_tmr *rmr = NULL;
	const uint64_t off = 8192 + 24;
	const size_t len = 100000;
	cr_assert_eq(TT_OPS->reg_mr_dmabuf(NULL, p.r, g.iova + off, len, g.fd, off, &rmr),
		     RCMOE_OK);
	struct ib_comm *rc = IB_TO(struct ib_comm, p.r);
	for (int round = 0; round < 40; round++) {
		pattern(src.mem, len, 7u * (unsigned)round);
		transfer(&p, src.mem, src.mr, g.iova + off, rmr, len, 3);
		struct rcmoe_treq *fr = NULL;
		memset(rc->flush_buf, 0, 4);
		cr_assert_eq(TT_OPS->iflush(p.r, g.iova + off, len, rmr, &fr), RCMOE_OK);
		cr_assert_not_null(fr, "a flush of DMA-BUF memory must read it");
		cr_assert_eq(tt_wait(fr, 10, NULL, NULL), RCMOE_OK);
		cr_assert(memcmp(rc->flush_buf, g.cpu + off, 4) == 0,
			  "round %d: the flush did not read the received bytes", round);
		cr_assert(memcmp(g.cpu + off, src.mem, len) == 0);
	}
	struct rcmoe_treq *none = (struct rcmoe_treq *)&none;
	cr_assert_eq(TT_OPS->iflush(p.r, host_dst.mem, 1000, host_dst.mr, &none), RCMOE_OK);
	cr_assert_null(none, "host memory needs no flush");
	none = (struct rcmoe_treq *)&none;
	cr_assert_eq(TT_OPS->iflush(p.r, g.iova + off, 0, rmr, &none), RCMOE_OK);
	cr_assert_null(none, "0 bytes need no flush");
	cr_assert_eq(TT_OPS->iflush(p.r, g.iova + off, len + 1, rmr, &none), RCMOE_ERR_INVALID);
	cr_assert(strstr(st_last_warn(), "flush"), "%s", st_last_warn());
	cr_assert_null(rcmoe_socket_ops.iflush, "sockets write no GPU memory");
	cr_assert_eq(TT_OPS->dereg_mr(NULL, p.r, rmr), RCMOE_OK);
	tt_exchange(&p, 5000, 5000, 9, 0);
	tt_buf_free(&src);
	tt_buf_free(&host_dst);
	fake_gpu_close(&g);
	tt_pair_close(&p);
}
