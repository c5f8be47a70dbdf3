/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The exported net tables (v11 and the v10 adapter) driven as NCCL drives them, over 127.0.0.1
 * in one process with host buffers: sizes, many in flight, receives larger than sends, the
 * profiler chain that tells the core what it carries, counters, and failures.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net_pair.h"
#include "prof_chain.h"
#include "rcmoe/log.h"
#include "test_log.h"
#include "gpu.h"

extern const ncclProfiler_v5_t ncclProfiler_v5;
extern const ncclNet_v11_t ncclNetPlugin_v11;

static void setup(void)
{
	test_log_init();
	setenv("RCMOE_SOCKET_IFNAME", "lo", 1);
	signal(SIGPIPE, SIG_IGN);
}

TestSuite(net, .init = setup, .timeout = 240);

static void both_versions_exchange(size_t send_size, size_t recv_size)
{
	for (int v = 11; v >= 10; v--) {
		struct net_pair p;
		net_version = v;
		net_pair_open(&p, NULL);
		net_exchange(&p, send_size, recv_size, (unsigned)send_size + v);
		net_pair_close(&p);
	}
}

Test(net, properties)
{
	for (int v = 11; v >= 10; v--) {
		ncclNetProperties_v11_t props;
		int ndev = 0;
		net_version = v;
		struct net_pair p;
		net_pair_open(&p, NULL);
		cr_assert_eq(ncclNetPlugin_v11.devices(&ndev), ncclSuccess);
		cr_assert_eq(net_props(0, &props), ncclSuccess);
		cr_expect_str_eq(props.name, net_over_ib() ? "fake0:1" : "lo");
		cr_expect(props.ptrSupport & NCCL_PTR_HOST);
		cr_expect_eq(props.maxRecvs, 1);
		cr_expect_eq(props.netDeviceType, NCCL_NET_DEVICE_HOST);
		cr_expect_gt(props.maxP2pBytes, 0);
		cr_expect_leq(props.maxP2pBytes, NCCL_MAX_NET_SIZE_BYTES);
		cr_expect_eq(props.vProps.ndevs, 1);
		cr_expect_neq(net_props(ndev + 3, &props), ncclSuccess,
			      "a bad device was accepted");
		net_pair_close(&p);
	}
}

Test(net, zero_and_small_sizes)
{
	size_t sizes[] = { 0, 1, 7, 4095, 4096, 4097, 65536 + 3 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		both_versions_exchange(sizes[i], sizes[i]);
}

Test(net, large_sizes)
{
	both_versions_exchange((1 << 20) + 5, (1 << 20) + 5);
	net_version = 11;
	struct net_pair p;
	net_pair_open(&p, NULL);
	net_exchange(&p, 64u << 20, 64u << 20, 64);
	net_exchange(&p, 256u << 20, 256u << 20, 256);
	net_pair_close(&p);
}

Test(net, receive_larger_than_send)
{
	both_versions_exchange(1000, 4096);
	both_versions_exchange(0, 4096);
	both_versions_exchange((512 << 10) - 17, 512 << 10);
}

Test(net, random_sizes_stream)
{
	struct net_pair p;
	net_version = 11;
	net_pair_open(&p, NULL);
	srand(7);
	for (int i = 0; i < 60; i++) {
		size_t n = (size_t)rand() % (3 << 20);
		net_exchange(&p, n, n + (size_t)(rand() % 4096), (unsigned)i);
	}
	net_pair_close(&p);
}

/* 32 requests in flight each way, FIFO order, the 33rd refused with a NULL request. */
Test(net, thirty_two_in_flight)
{
	enum { N = NCCL_NET_MAX_REQUESTS, SZ = 200000 };
	struct net_pair p;
	net_version = 11;
	net_pair_open(&p, NULL);
	char *src = malloc((size_t)N * SZ), *dst = malloc((size_t)N * SZ);
	void *smh, *rmh, *sreq[N], *rreq[N], *extra = (void *)0x1;
	for (int i = 0; i < N; i++)
		fill_pattern(src + (size_t)i * SZ, SZ, 1000 + i);
	memset(dst, 0, (size_t)N * SZ);
	cr_assert_eq(net_reg(p.send, src, (size_t)N * SZ, NCCL_PTR_HOST, &smh), ncclSuccess);
	cr_assert_eq(net_reg(p.recv, dst, (size_t)N * SZ, NCCL_PTR_HOST, &rmh), ncclSuccess);
	for (int i = 0; i < N; i++) {
		sreq[i] = net_isend_retry(p.send, src + (size_t)i * SZ, SZ - i, smh, NULL);
		rreq[i] = net_irecv_retry(p.recv, dst + (size_t)i * SZ, SZ, rmh, NULL);
	}
	cr_assert_eq(net_isend(p.send, src, 10, smh, NULL, &extra), ncclSuccess);
	cr_expect_null(extra, "a 33rd send was accepted");
	extra = (void *)0x1;
	cr_assert_eq(net_irecv(p.recv, dst, 10, rmh, NULL, &extra), ncclSuccess);
	cr_expect_null(extra, "a 33rd receive was accepted");
	/* All tested together, as NCCL's proxy does: an IB sender writes only when tested. */
	void *all[2 * N];
	int got[2 * N];
	memcpy(all, rreq, sizeof(rreq));
	memcpy(all + N, sreq, sizeof(sreq));
	net_wait_all(all, 2 * N, got, 30);
	for (int i = 0; i < N; i++) {
		cr_expect_eq(got[i], SZ - i);
		cr_expect_eq(check_pattern(dst + (size_t)i * SZ, SZ - i, 1000 + i), (size_t)-1,
			     "message %d corrupted or out of order", i);
	}
	net_dereg(p.send, smh);
	net_dereg(p.recv, rmh);
	free(src);
	free(dst);
	net_pair_close(&p);
}

Test(net, buffer_outside_registration_is_refused)
{
	struct net_pair p;
	net_version = 11;
	net_pair_open(&p, NULL);
	char buf[4096];
	void *mh, *req = NULL;
	cr_assert_eq(net_reg(p.send, buf, 1024, NCCL_PTR_HOST, &mh), ncclSuccess);
	cr_expect_neq(net_isend(p.send, buf + 512, 1024, mh, NULL, &req), ncclSuccess);
	cr_expect_null(req);
	cr_expect_neq(net_reg(p.send, buf, 16, 0x40, &mh), ncclSuccess, "odd memory type taken");
	net_pair_close(&p);
}

/* The sender goes away in the middle of a large message: the receiver gets an error, fast. */
Test(net, peer_vanishing_mid_message_is_an_error)
{
	size_t n = 256u << 20;
	struct net_pair p;
	net_version = 11;
	net_pair_open(&p, NULL);
	char *src = malloc(n), *dst = malloc(n);
	void *smh, *rmh;
	memset(src, 1, n);
	cr_assert_eq(net_reg(p.send, src, n, NCCL_PTR_HOST, &smh), ncclSuccess);
	cr_assert_eq(net_reg(p.recv, dst, n, NCCL_PTR_HOST, &rmh), ncclSuccess);
	void *rr = net_irecv_retry(p.recv, dst, n, rmh, NULL);
	void *sr = net_isend_retry(p.send, src, n, smh, NULL);
	int done = 0, size;
	cr_assert_eq(net_test(sr, &done, &size), ncclSuccess);
	cr_assert_eq(net_test(rr, &done, &size), ncclSuccess);
	int warns = test_log_warn_count();
	cr_assert_eq(net_close_send(p.send), ncclSuccess);
	p.send = NULL;
	ncclResult_t r = net_wait_error(rr, 20.0);
	cr_expect(r == ncclRemoteError || r == ncclSystemError, "got %d", r);
	cr_expect_gt(test_log_warn_count(), warns, "the failure was not logged");
	net_dereg(p.recv, rmh);
	free(src);
	free(dst);
	net_pair_close(&p);
}

Test(net, finalize_tolerates_null_context)
{
	cr_expect_eq(ncclNetPlugin_v11.finalize(NULL), ncclSuccess);
}

Test(net, invalid_setting_fails_init_loudly)
{
	void *ctx = NULL;
	ncclNetCommConfig_v11_t cfg = { .trafficClass = -1 };
	setenv("RCMOE_SOCKET_NSTREAMS", "zero", 1);
	cr_expect_eq(ncclNetPlugin_v11.init(&ctx, 1, &cfg, rcmoe_log_get(), NULL),
		     ncclInvalidUsage);
	cr_expect_gt(test_log_warn_count(), 0);
}

/* NCCL reads NCCL_P2P_NET_CHUNKSIZE after the plugin's init: the plugin sets its default there
 * (each Criterion test runs in its own process, so every case starts from a fresh init). */
static const char *chunk_after_init(const char *user, const char *rcmoe)
{
	void *ctx = NULL;
	ncclNetCommConfig_v11_t cfg = { .trafficClass = -1 };
	if (user)
		setenv("NCCL_P2P_NET_CHUNKSIZE", user, 1);
	else
		unsetenv("NCCL_P2P_NET_CHUNKSIZE");
	if (rcmoe)
		setenv("RCMOE_NCCL_P2P_CHUNKSIZE", rcmoe, 1);
	cr_assert_eq(ncclNetPlugin_v11.init(&ctx, 1, &cfg, rcmoe_log_get(), NULL), ncclSuccess);
	const char *v = getenv("NCCL_P2P_NET_CHUNKSIZE");
	cr_expect_eq(ncclNetPlugin_v11.finalize(ctx), ncclSuccess);
	return v;
}

Test(net, sets_nccl_p2p_chunk_default)
{
	const char *v = chunk_after_init(NULL, NULL);
	cr_assert_not_null(v, "NCCL_P2P_NET_CHUNKSIZE not set");
	cr_expect_str_eq(v, "524288");
}

Test(net, keeps_the_users_nccl_p2p_chunk)
{
	const char *v = chunk_after_init("262144", NULL);
	cr_assert_not_null(v);
	cr_expect_str_eq(v, "262144");
}

Test(net, chunk_default_follows_rcmoe_setting)
{
	const char *v = chunk_after_init(NULL, "1M");
	cr_assert_not_null(v);
	cr_expect_str_eq(v, "1048576");
}

Test(net, chunk_default_zero_leaves_nccl_alone)
{
	cr_expect_null(chunk_after_init(NULL, "0"));
}

/* Host buffers only: NCCL's GDR level is none of the plugin's business. (With GPU buffers the
 * plugin sets it: test_gpu_net's sets_gdr_level_when_claiming_gpu_buffers.) */
Test(net, gdr_level_left_alone_with_host_buffers)
{
	void *ctx = NULL;
	ncclNetCommConfig_v11_t cfg = { .trafficClass = -1 };
	ncclNetProperties_v11_t props;
	unsetenv("NCCL_NET_GDR_LEVEL");
	setenv("RCMOE_CUDA_BUFFERS", "off", 1);
	cr_assert_eq(ncclNetPlugin_v11.init(&ctx, 1, &cfg, rcmoe_log_get(), NULL), ncclSuccess);
	cr_assert_eq(ncclNetPlugin_v11.getProperties(0, &props), ncclSuccess);
	cr_expect_eq(props.ptrSupport, NCCL_PTR_HOST, "ptrSupport 0x%x", props.ptrSupport);
	cr_expect_null(getenv("NCCL_NET_GDR_LEVEL"), "NCCL_NET_GDR_LEVEL=%s",
		       getenv("NCCL_NET_GDR_LEVEL"));
	cr_expect_eq(ncclNetPlugin_v11.finalize(ctx), ncclSuccess);
}

/* RCMOE_CUDA_BUFFERS=on is a demand: without a GPU, init refuses (with a WARN) rather than
 * quietly falling back to host buffers; with one, GPU buffers are claimed. */
Test(net, cuda_buffers_on_claims_or_refuses)
{
	void *ctx = NULL;
	ncclNetCommConfig_v11_t cfg = { .trafficClass = -1 };
	ncclNetProperties_v11_t props;
	setenv("RCMOE_CUDA_BUFFERS", "on", 1);
	ncclResult_t r = ncclNetPlugin_v11.init(&ctx, 1, &cfg, rcmoe_log_get(), NULL);
	if (!rcmoe_gpu_available()) {
		cr_expect_eq(r, ncclInvalidUsage, "init returned %d without a GPU", (int)r);
		cr_expect_gt(test_log_warn_count(), 0);
		return;
	}
	cr_assert_eq(r, ncclSuccess);
	cr_assert_eq(ncclNetPlugin_v11.getProperties(0, &props), ncclSuccess);
	cr_expect(props.ptrSupport & NCCL_PTR_CUDA, "ptrSupport 0x%x", props.ptrSupport);
	cr_expect_eq(ncclNetPlugin_v11.finalize(ctx), ncclSuccess);
}

static int count_lines(const char *path, const char *a, const char *b)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	int n = 0;
	cr_assert_not_null(f, "no stats file %s", path);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, a) && strstr(line, b))
			n++;
	fclose(f);
	return n;
}

Test(net, profiler_chain_attributes_datatypes_in_counters)
{
	char stats[] = "/tmp/rcmoe-net-stats-XXXXXX";
	int fd = mkstemp(stats);
	cr_assert_geq(fd, 0);
	close(fd);
	setenv("RCMOE_STATS_FILE", stats, 1);

	void *pctx = prof_chain_init(2, 0);
	struct net_pair p;
	net_version = 11;
	net_pair_open(&p, fake_nccl_callback);

	enum { SZ = 8192 };
	static char src[SZ], dst[SZ];
	void *smh, *rmh;
	fill_pattern(src, SZ, 5);
	cr_assert_eq(net_reg(p.send, src, SZ, NCCL_PTR_HOST, &smh), ncclSuccess);
	cr_assert_eq(net_reg(p.recv, dst, SZ, NCCL_PTR_HOST, &rmh), ncclSuccess);
	struct fake_phandle sbf = prof_chain(pctx, "Send", "ncclBfloat16", 4096, 1);
	struct fake_phandle rbf = prof_chain(pctx, "Recv", "ncclBfloat16", 4096, 1);
	struct fake_phandle si64 = prof_chain(pctx, "Send", "ncclInt64", 4, 1);
	struct fake_phandle ri64 = prof_chain(pctx, "Recv", "ncclInt64", 4, 1);
	for (int i = 0; i < 3; i++) {
		void *rr = net_irecv_retry(p.recv, dst, SZ, rmh, &rbf);
		void *sr = net_isend_retry(p.send, src, SZ, smh, &sbf);
		net_wait(sr, 10);
		cr_expect_eq(net_wait(rr, 10), SZ);
	}
	void *rr = net_irecv_retry(p.recv, dst, SZ, rmh, &ri64);
	void *sr = net_isend_retry(p.send, src, 32, smh, &si64);
	net_wait(sr, 10);
	net_wait(rr, 10);
	/* no phandle: unknown */
	rr = net_irecv_retry(p.recv, dst, SZ, rmh, NULL);
	sr = net_isend_retry(p.send, src, 100, smh, NULL);
	net_wait(sr, 10);
	net_wait(rr, 10);
	net_dereg(p.send, smh);
	net_dereg(p.recv, rmh);
	net_pair_close(&p); /* finalize writes the counters */
	ncclProfiler_v5.finalize(pctx);

	cr_expect_eq(count_lines(stats,
				 "\"dir\":\"send\",\"func\":\"Send\",\"dtype\":\"ncclBfloat16\"",
				 "\"messages\":3,\"logical_bytes\":24576"),
		     1);
	cr_expect_eq(count_lines(stats,
				 "\"dir\":\"recv\",\"func\":\"Recv\",\"dtype\":\"ncclBfloat16\"",
				 "\"messages\":3,"),
		     1);
	cr_expect_eq(count_lines(stats, "\"func\":\"Send\",\"dtype\":\"ncclInt64\"",
				 "\"logical_bytes\":32,"),
		     1);
	cr_expect_eq(
		count_lines(stats, "\"func\":\"Recv\",\"dtype\":\"ncclInt64\"", "\"messages\":1,"),
		1);
	cr_expect_eq(
		count_lines(stats, "\"func\":\"unknown\",\"dtype\":\"unknown\"", "\"messages\":1,"),
		2);
	unlink(stats);
}

/* A stats file that cannot be written is loud but does not fail the communicator's teardown. */
Test(net, unwritable_stats_file_warns_without_failing_finalize)
{
	setenv("RCMOE_STATS_FILE", "/nonexistent-dir/rcmoe-stats.jsonl", 1);
	struct net_pair p;
	net_version = 11;
	net_pair_open(&p, NULL);
	net_exchange(&p, 1000, 1000, 3);
	int warns = test_log_warn_count();
	net_pair_close(&p); /* expects finalize to succeed */
	cr_expect_gt(test_log_warn_count(), warns, "the unwritable stats file went unreported");
}
