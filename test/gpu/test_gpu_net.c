/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The exported ncclNetPlugin_v11 table with GPU buffers (NCCL_PTR_CUDA, what NCCL hands the
 * plugin with NCCL_NET_GDR_LEVEL=SYS), over 127.0.0.1 in one process, linked statically:
 *  - lossless: sizes 0 B to 64 MiB, 8 in flight, aligned and misaligned, byte for byte, sizes
 *    reported right, nothing written past a message;
 *  - compressed (RCMOE_A2A_BITS=8): the GPU encoder and decoder inside the plugin, within the LSQ
 *    bound, the counters' wire bytes equal to the CPU codec's stream length, and the stream the
 *    plugin puts on the wire (and what it decodes from one) equal to the CPU reference's bytes;
 *  - compressed bf16 and exact int64 messages in flight together;
 *  - the deadlock of the first GPU version, modelled without NCCL (see "The deadlock model").
 * Each test skips, saying why, when no GPU is visible. CUDA is touched only inside the tests
 * (each runs in its own forked process), never in Criterion's runner.
 */
#include <criterion/criterion.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec_test_util.h"
#include "gpu_spin.h"
#include "net_pair.h"
#include "prof_chain.h"
#include "sync_copy_model.h"
#include "rcmoe/codec.h"
#include "rcmoe/kernels.h"
#include "rcmoe/log.h"
#include "rcmoe/transport.h"
#include "test_log.h"

extern const ncclNet_v11_t ncclNetPlugin_v11;
extern const ncclProfiler_v5_t ncclProfiler_v5;

#define POISON 0xa5
#define GUARD  4096

/* Bounds on every wait: transfers, connection setup, the deadlock model's kernel. */
#define XFER_TIMEOUT_S  60.0
#define MODEL_XFER_S    15.0 /* the transfer while the application's copy waits */
#define MODEL_SPIN_S    5.0  /* the spin kernel gives up after this: must be < MODEL_XFER_S */
#define MODEL_CONTROL_S 5.0  /* the same, for the model check (which expects to block) */

static char stats_path[96];

static void setup(void)
{
	int count = 0;
	test_log_init();
	setenv("RCMOE_SOCKET_IFNAME", "lo", 1);
	setenv("RCMOE_CUDA_BUFFERS", "on", 1);
	unsetenv("RCMOE_A2A_BITS");
	snprintf(stats_path, sizeof(stats_path), "/tmp/rcmoe-gpu-net-%d.jsonl", (int)getpid());
	unlink(stats_path);
	setenv("RCMOE_STATS_FILE", stats_path, 1);
	signal(SIGPIPE, SIG_IGN);
	cudaError_t e = cudaGetDeviceCount(&count);
	if (e != cudaSuccess || count == 0)
		cr_skip_test("no CUDA device visible (cudaGetDeviceCount: %s, %d devices): the "
			     "plugin's GPU-buffer path needs one",
			     cudaGetErrorString(e), count);
}

static void teardown(void)
{
	unlink(stats_path);
}

TestSuite(gpu_net, .init = setup, .fini = teardown, .timeout = 300);

/* Compression on, with the defaults spelled out so that the environment cannot change them. */
static void compress_env(void)
{
	setenv("RCMOE_A2A_BITS", "8", 1);
	setenv("RCMOE_LSQ_BLOCK", "128", 1);
	setenv("RCMOE_MIN_BYTES", "65536", 1);
	setenv("RCMOE_A2A_SCOPE", "alltoall", 1);
}

/* A connected v11 pair; the plugin must claim GPU buffers, since a GPU is visible. */
static void gpu_pair_open(struct net_pair *p, ncclProfilerCallback_t prof)
{
	ncclNetProperties_v11_t props;
	net_version = 11;
	net_pair_open(p, prof);
	cr_assert_eq(net_props(0, &props), ncclSuccess);
	cr_assert(props.ptrSupport & NCCL_PTR_CUDA,
		  "a GPU is visible, but the plugin does not claim NCCL_PTR_CUDA (ptrSupport 0x%x)",
		  props.ptrSupport);
}

static void *dev_alloc(size_t bytes)
{
	void *p = NULL;
	CK(cudaMalloc(&p, bytes ? bytes : 1));
	return p;
}

static void *host_alloc(size_t bytes)
{
	void *p = malloc(bytes ? bytes : 1);
	cr_assert_not_null(p);
	return p;
}

static void to_dev(void *d, const void *h, size_t bytes)
{
	if (bytes)
		CK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
	/* From pageable memory the copy may return before its data has landed, and the plugin's
	 * kernels run in its own context, unordered with ours. */
	CK(cudaDeviceSynchronize());
}

static void to_host(void *h, const void *d, size_t bytes)
{
	if (bytes)
		CK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}

/* Index of the first byte in [from, to) that is not POISON, or (size_t)-1. */
static size_t first_unpoisoned(const uint8_t *b, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		if (b[i] != POISON)
			return i;
	return (size_t)-1;
}

static size_t first_difference(const uint8_t *a, const uint8_t *b, size_t n)
{
	if (memcmp(a, b, n) == 0)
		return (size_t)-1;
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return i;
	return (size_t)-1;
}

/* Length of the CPU codec's stream for these elements (it does not depend on the seed). */
static size_t cpu_lsq_len(const void *src, size_t n, int bits)
{
	struct rcmoe_lsq_cfg cfg = {
		.dtype = RCMOE_DT_BF16, .bits = bits, .block = 128, .seed = 1
	};
	size_t len = 0, cap = rcmoe_lsq_bound(n, &cfg);
	void *enc = host_alloc(cap);
	cr_assert_eq(rcmoe_lsq_encode(src, n, &cfg, enc, cap, &len), RCMOE_OK);
	free(enc);
	return len;
}

/* ---- lossless ---- */

/* Eight messages of `size` bytes from device memory into device memory, all in flight, each
 * receive posted larger than its send; odd messages start off 16-byte alignment (the staging
 * kernels' byte path). The whole destination is poisoned first: afterwards each message's bytes
 * equal the source, and every other byte still holds the poison. */
static void lossless_in_flight(struct net_pair *p, size_t size, unsigned seed)
{
	enum { N = 8 };
	const size_t slack = 4099, stride = (size + slack + 64 + 4095) / 4096 * 4096;
	const size_t total = N * stride;
	size_t off[N];
	void *smh, *rmh, *reqs[2 * N];
	int sizes[2 * N];
	uint8_t *hsrc = host_alloc(total), *hdst = host_alloc(total);
	uint8_t *dsrc = dev_alloc(total), *ddst = dev_alloc(total);
	memset(hsrc, 0x3c, total);
	for (int i = 0; i < N; i++) {
		off[i] = (size_t)i * stride + (i % 2 ? 3 * (size_t)i : 0);
		fill_pattern(hsrc + off[i], size, seed + i);
	}
	to_dev(dsrc, hsrc, total);
	CK(cudaMemset(ddst, POISON, total));
	CK(cudaDeviceSynchronize());
	cr_assert_eq(net_reg(p->send, dsrc, total, NCCL_PTR_CUDA, &smh), ncclSuccess);
	cr_assert_eq(net_reg(p->recv, ddst, total, NCCL_PTR_CUDA, &rmh), ncclSuccess);
	for (int i = 0; i < N; i++) {
		reqs[2 * i] = net_irecv_retry(p->recv, ddst + off[i], size + slack, rmh, NULL);
		reqs[2 * i + 1] = net_isend_retry(p->send, dsrc + off[i], size, smh, NULL);
	}
	net_wait_all(reqs, 2 * N, sizes, XFER_TIMEOUT_S);

	to_host(hdst, ddst, total);
	size_t prev_end = 0;
	for (int i = 0; i < N; i++) {
		cr_expect_eq(sizes[2 * i], (int)size,
			     "message %d of %zu bytes: receiver reported %d", i, size,
			     sizes[2 * i]);
		cr_expect_eq(sizes[2 * i + 1], (int)size,
			     "message %d of %zu bytes: sender reported %d", i, size,
			     sizes[2 * i + 1]);
		size_t bad = first_difference(hdst + off[i], hsrc + off[i], size);
		cr_expect_eq(bad, (size_t)-1, "message %d of %zu bytes: byte %zu differs", i, size,
			     bad);
		bad = first_unpoisoned(hdst, prev_end, off[i]);
		cr_expect_eq(bad, (size_t)-1,
			     "size %zu: byte %zu outside every message was written", size, bad);
		prev_end = off[i] + size;
	}
	size_t bad = first_unpoisoned(hdst, prev_end, total);
	cr_expect_eq(bad, (size_t)-1, "size %zu: byte %zu after the last message was written", size,
		     bad);
	/* a send leaves its source alone */
	to_host(hdst, dsrc, total);
	cr_expect_eq(first_difference(hdst, hsrc, total), (size_t)-1, "a send modified its source");

	cr_expect_eq(net_dereg(p->send, smh), ncclSuccess);
	cr_expect_eq(net_dereg(p->recv, rmh), ncclSuccess);
	CK(cudaFree(dsrc));
	CK(cudaFree(ddst));
	free(hsrc);
	free(hdst);
}

Test(gpu_net, lossless_small_and_odd_sizes)
{
	static const size_t sizes[] = { 0, 1, 4097, (1u << 20) + 3 };
	struct net_pair p;
	gpu_pair_open(&p, NULL);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		lossless_in_flight(&p, sizes[i], 100 + (unsigned)i * 8);
	net_pair_close(&p);
}

Test(gpu_net, lossless_64_mib)
{
	struct net_pair p;
	gpu_pair_open(&p, NULL);
	lossless_in_flight(&p, 64u << 20, 200);
	net_pair_close(&p);
}

/* ---- compressed ---- */

/* 1 MiB of bf16 rows through the plugin with compression on: encoded by the GPU encoder into the
 * mapped shadow, decoded by the GPU decoder into device memory. */
Test(gpu_net, compressed_bf16_within_bound)
{
	compress_env();
	const size_t n = 1u << 19, bytes = 2 * n;
	struct tu_rng rng = { 31 };
	uint16_t *hsrc = host_alloc(bytes);
	uint8_t *hdst = host_alloc(bytes + GUARD);
	tu_fill(RCMOE_DT_BF16, hsrc, n, TU_GAUSS, &rng);
	uint8_t *dsrc = dev_alloc(bytes), *ddst = dev_alloc(bytes + GUARD);
	to_dev(dsrc, hsrc, bytes);
	CK(cudaMemset(ddst, POISON, bytes + GUARD));
	CK(cudaDeviceSynchronize());

	void *pctx = prof_chain_init(4, 1);
	struct net_pair p;
	gpu_pair_open(&p, fake_nccl_callback);
	struct fake_phandle s = prof_chain(pctx, "Send", "ncclBfloat16", n, 4);
	struct fake_phandle r = prof_chain(pctx, "Recv", "ncclBfloat16", n, 4);
	void *smh, *rmh, *reqs[2];
	int sizes[2];
	cr_assert_eq(net_reg(p.send, dsrc, bytes, NCCL_PTR_CUDA, &smh), ncclSuccess);
	cr_assert_eq(net_reg(p.recv, ddst, bytes + GUARD, NCCL_PTR_CUDA, &rmh), ncclSuccess);
	reqs[0] = net_irecv_retry(p.recv, ddst, bytes + GUARD, rmh, &r);
	reqs[1] = net_isend_retry(p.send, dsrc, bytes, smh, &s);
	net_wait_all(reqs, 2, sizes, XFER_TIMEOUT_S);
	cr_expect_eq(sizes[0], (int)bytes, "receiver reported %d bytes, original %zu", sizes[0],
		     bytes);
	cr_expect_eq(sizes[1], (int)bytes, "sender reported %d bytes", sizes[1]);

	to_host(hdst, ddst, bytes + GUARD);
	size_t bad = tu_lsq_out_of_bound(hsrc, hdst, n, RCMOE_DT_BF16, 8, 128);
	cr_expect_eq(bad, 0, "%zu of %zu elements outside the 8-bit LSQ bound", bad, n);
	cr_expect_neq(memcmp(hsrc, hdst, bytes), 0, "arrived bit-exact: it was not compressed");
	bad = first_unpoisoned(hdst, bytes, bytes + GUARD);
	cr_expect_eq(bad, (size_t)-1, "the decoder wrote byte %zu, past the %zu-byte message", bad,
		     bytes);
	cr_expect_eq(net_dereg(p.send, smh), ncclSuccess);
	cr_expect_eq(net_dereg(p.recv, rmh), ncclSuccess);
	net_pair_close(&p); /* finalize writes the counters */
	ncclProfiler_v5.finalize(pctx);

	unsigned long messages = 0, logical = 0, wire = 0;
	size_t len = cpu_lsq_len(hsrc, n, 8);
	cr_assert(stats_send_cell(stats_path, "Send", "ncclBfloat16", &messages, &logical, &wire),
		  "no send counters for Send/ncclBfloat16 in %s", stats_path);
	cr_expect_eq(messages, 1);
	cr_expect_eq(logical, bytes);
	cr_expect_eq(wire, len, "wire bytes %lu, CPU codec stream %zu", wire, len);
	cr_expect_lt(wire, bytes);
	CK(cudaFree(dsrc));
	CK(cudaFree(ddst));
	free(hsrc);
	free(hdst);
}

/* The place callback of a raw transport receive: everything into one host buffer. */
struct host_sink {
	void *buf;
	size_t cap;
};

static rcmoe_status_t place_host(void *arg, size_t wire_len, uint32_t flags, void **dest,
				 struct rcmoe_tmr **mr)
{
	struct host_sink *s = arg;
	(void)flags;
	if (wire_len > s->cap)
		return RCMOE_ERR_OVERFLOW;
	*dest = s->buf;
	return RCMOE_OK;
}

/* The plugin's GPU codecs against the CPU reference, with the wire in between opened up: the
 * plugin's send comm (GPU encoder) talks to a raw transport receiver, which captures the stream
 * exactly as it crossed the wire; that stream must equal rcmoe_lsq_encode's bytes for the
 * configuration its header records (seed, op_id, rank). Then a raw transport sender replays it
 * into the plugin's receive comm (GPU decoder), whose output must equal rcmoe_codec_decode's
 * bytes. An element count with a partial last block and a partial last tile. */
/* Claiming GPU buffers, the plugin asks NCCL for them at any PCI distance (ctx.c), unless the
 * user chose a level. Each Criterion test is a process of its own: a fresh init. */
static const char *gdr_level_after_init(const char *user)
{
	void *ctx = NULL;
	ncclNetCommConfig_v11_t cfg = { .trafficClass = -1 };
	if (user)
		setenv("NCCL_NET_GDR_LEVEL", user, 1);
	else
		unsetenv("NCCL_NET_GDR_LEVEL");
	cr_assert_eq(ncclNetPlugin_v11.init(&ctx, 0x48, &cfg, rcmoe_log_get(), NULL), ncclSuccess);
	const char *v = getenv("NCCL_NET_GDR_LEVEL");
	cr_expect_eq(ncclNetPlugin_v11.finalize(ctx), ncclSuccess);
	return v;
}

/* auto claims GPU buffers only for the GPU codec, and only where the plugin's context runs
 * beside NCCL's kernels: MPS. (Each Criterion test is a process: a fresh init.) */
static int auto_claims(const char *bits)
{
	void *ctx = NULL;
	ncclNetCommConfig_v11_t cfg = { .trafficClass = -1 };
	ncclNetProperties_v11_t props;
	setenv("RCMOE_CUDA_BUFFERS", "auto", 1);
	setenv("RCMOE_A2A_BITS", bits, 1);
	cr_assert_eq(ncclNetPlugin_v11.init(&ctx, 0x49, &cfg, rcmoe_log_get(), NULL), ncclSuccess);
	cr_assert_eq(net_props(0, &props), ncclSuccess);
	cr_expect_eq(ncclNetPlugin_v11.finalize(ctx), ncclSuccess);
	return !!(props.ptrSupport & NCCL_PTR_CUDA);
}

Test(gpu_net, auto_claims_gpu_buffers_when_compressing_under_mps)
{
	int mps = 0;
	CK(cudaDeviceGetAttribute(&mps, cudaDevAttrMpsEnabled, 0));
	cr_expect_eq(auto_claims("8"), !!mps, "MPS %s", mps ? "on" : "off");
}

Test(gpu_net, auto_keeps_host_buffers_when_lossless)
{
	cr_expect_eq(auto_claims("0"), 0);
}

Test(gpu_net, sets_gdr_level_when_claiming_gpu_buffers)
{
	const char *v = gdr_level_after_init(NULL);
	cr_assert_not_null(v, "NCCL_NET_GDR_LEVEL not set");
	cr_expect_str_eq(v, "SYS");
}

Test(gpu_net, keeps_the_users_gdr_level)
{
	const char *v = gdr_level_after_init("PHB");
	cr_assert_not_null(v);
	cr_expect_str_eq(v, "PHB");
}

Test(gpu_net, plugin_gpu_codecs_equal_cpu_reference)
{
	compress_env();
	const size_t n = (1u << 19) + 77, bytes = 2 * n;
	char handle[NCCL_NET_HANDLE_MAXSIZE];
	struct tu_rng rng = { 47 };
	uint16_t *hsrc = host_alloc(bytes);
	uint8_t *hdst = host_alloc(bytes + GUARD), *wire = host_alloc(bytes);
	tu_fill(RCMOE_DT_BF16, hsrc, n, TU_GAUSS, &rng);
	uint8_t *dsrc = dev_alloc(bytes), *ddst = dev_alloc(bytes + GUARD);
	to_dev(dsrc, hsrc, bytes);
	CK(cudaMemset(ddst, POISON, bytes + GUARD));
	CK(cudaDeviceSynchronize());

	void *pctx = prof_chain_init(4, 2), *ctx = NULL;
	ncclNetCommConfig_v11_t cfg = { .trafficClass = NCCL_NET_TRAFFIC_CLASS_UNDEF };
	ncclNetProperties_v11_t props;
	cr_assert_eq(ncclNetPlugin_v11.init(&ctx, 0x47, &cfg, rcmoe_log_get(), fake_nccl_callback),
		     ncclSuccess);
	cr_assert_eq(ncclNetPlugin_v11.getProperties(0, &props), ncclSuccess);
	cr_assert(props.ptrSupport & NCCL_PTR_CUDA, "NCCL_PTR_CUDA not claimed (ptrSupport 0x%x)",
		  props.ptrSupport);
	struct fake_phandle sph = prof_chain(pctx, "Send", "ncclBfloat16", n, 4);
	struct fake_phandle rph = prof_chain(pctx, "Recv", "ncclBfloat16", n, 4);

	/* 1. plugin send comm -> raw receiver: capture the GPU encoder's stream */
	struct rcmoe_tlisten *tl = NULL;
	struct rcmoe_trecv *tr = NULL;
	void *send = NULL, *smh;
	memset(handle, 0, sizeof(handle));
	cr_assert_eq(rcmoe_socket_ops.listen(0, handle, &tl), RCMOE_OK);
	double t0 = now_s();
	while (!send || !tr) {
		ncclNetDeviceHandle_v11_t *dh = NULL;
		if (!send)
			cr_assert_eq(ncclNetPlugin_v11.connect(ctx, 0, handle, &send, &dh),
				     ncclSuccess);
		if (!tr)
			cr_assert_eq(rcmoe_socket_ops.accept(tl, &tr), RCMOE_OK);
		cr_assert_lt(now_s() - t0, 10.0, "connect/accept did not complete in 10 s");
	}
	cr_assert_eq(net_reg(send, dsrc, bytes, NCCL_PTR_CUDA, &smh), ncclSuccess);
	struct host_sink sink = { .buf = wire, .cap = bytes };
	struct rcmoe_treq *treq = NULL;
	cr_assert_eq(rcmoe_socket_ops.irecv(tr, bytes, 0, place_host, &sink, &treq), RCMOE_OK);
	cr_assert_not_null(treq);
	void *sreq = net_isend_retry(send, dsrc, bytes, smh, &sph);
	int sdone = 0, rdone = 0, ssize = -1;
	size_t len = 0;
	uint32_t flags = 0;
	t0 = now_s();
	while (!sdone || !rdone) {
		if (!sdone)
			cr_assert_eq(net_test(sreq, &sdone, &ssize), ncclSuccess);
		if (!rdone)
			cr_assert_eq(rcmoe_socket_ops.test(treq, &rdone, &len, &flags), RCMOE_OK);
		cr_assert_lt(now_s() - t0, XFER_TIMEOUT_S, "capture did not complete");
	}
	cr_expect_eq(ssize, (int)bytes);
	cr_assert(flags & RCMOE_MSG_ENCODED, "the plugin sent the message raw (flags 0x%x)", flags);

	struct rcmoe_wire_header h;
	cr_assert_eq(rcmoe_codec_validate(wire, len, bytes, &h), RCMOE_OK,
		     "the GPU encoder's stream does not validate");
	cr_expect_eq(h.codec, RCMOE_CODEC_LSQ);
	cr_expect_eq(h.dtype, RCMOE_DT_BF16);
	cr_expect_eq(h.bits, 8);
	cr_expect_eq(h.block, 128);
	cr_expect_eq(h.count, n);
	struct rcmoe_lsq_cfg lc = { .dtype = h.dtype,
				    .bits = h.bits,
				    .block = h.block,
				    .seed = h.seed,
				    .op_id = h.op_id,
				    .rank = h.rank };
	size_t cap = rcmoe_lsq_bound(n, &lc), ref_len = 0, out = 0;
	uint8_t *ref = host_alloc(cap), *dec = host_alloc(bytes);
	cr_assert_eq(rcmoe_lsq_encode(hsrc, n, &lc, ref, cap, &ref_len), RCMOE_OK);
	cr_assert_eq(len, ref_len, "GPU stream %zu bytes, CPU %zu (seed %lu op %lu rank %u)", len,
		     ref_len, (unsigned long)h.seed, (unsigned long)h.op_id, h.rank);
	size_t bad = first_difference(wire, ref, len);
	cr_expect_eq(bad, (size_t)-1, "GPU stream differs from the CPU's at byte %zu of %zu", bad,
		     len);
	cr_assert_eq(rcmoe_codec_decode(ref, ref_len, dec, bytes, &out), RCMOE_OK);
	cr_assert_eq(out, bytes);

	/* 2. raw sender -> plugin receive comm: the GPU decoder on the CPU's stream */
	void *listen = NULL, *recv = NULL, *rmh;
	struct rcmoe_tsend *ts = NULL;
	cr_assert_eq(ncclNetPlugin_v11.listen(ctx, 0, handle, &listen), ncclSuccess);
	t0 = now_s();
	while (!ts || !recv) {
		ncclNetDeviceHandle_v11_t *dh = NULL;
		if (!ts)
			cr_assert_eq(rcmoe_socket_ops.connect(0, handle, &ts), RCMOE_OK);
		if (!recv)
			cr_assert_eq(ncclNetPlugin_v11.accept(listen, &recv, &dh), ncclSuccess);
		cr_assert_lt(now_s() - t0, 10.0, "connect/accept did not complete in 10 s");
	}
	cr_assert_eq(net_reg(recv, ddst, bytes + GUARD, NCCL_PTR_CUDA, &rmh), ncclSuccess);
	void *rreq = net_irecv_retry(recv, ddst, bytes + GUARD, rmh, &rph);
	struct rcmoe_treq *tsreq = NULL;
	cr_assert_eq(rcmoe_socket_ops.isend(ts, ref, ref_len, NULL, 0, RCMOE_MSG_ENCODED, &tsreq),
		     RCMOE_OK);
	cr_assert_not_null(tsreq);
	int got = -1;
	sdone = rdone = 0;
	t0 = now_s();
	while (!sdone || !rdone) {
		size_t l;
		uint32_t f;
		if (!sdone)
			cr_assert_eq(rcmoe_socket_ops.test(tsreq, &sdone, &l, &f), RCMOE_OK);
		if (!rdone)
			cr_assert_eq(net_test(rreq, &rdone, &got), ncclSuccess);
		cr_assert_lt(now_s() - t0, XFER_TIMEOUT_S, "replay did not complete");
	}
	cr_expect_eq(got, (int)bytes, "receiver reported %d bytes, original %zu", got, bytes);
	to_host(hdst, ddst, bytes + GUARD);
	bad = first_difference(hdst, dec, bytes);
	cr_expect_eq(bad, (size_t)-1, "GPU decode differs from the CPU's at byte %zu of %zu", bad,
		     bytes);
	bad = first_unpoisoned(hdst, bytes, bytes + GUARD);
	cr_expect_eq(bad, (size_t)-1, "the decoder wrote byte %zu, past the message", bad);

	cr_expect_eq(net_dereg(send, smh), ncclSuccess);
	cr_expect_eq(net_dereg(recv, rmh), ncclSuccess);
	cr_expect_eq(ncclNetPlugin_v11.closeSend(send), ncclSuccess);
	cr_expect_eq(ncclNetPlugin_v11.closeRecv(recv), ncclSuccess);
	cr_expect_eq(ncclNetPlugin_v11.closeListen(listen), ncclSuccess);
	rcmoe_socket_ops.close_send(ts);
	rcmoe_socket_ops.close_recv(tr);
	rcmoe_socket_ops.close_listen(tl);
	cr_expect_eq(ncclNetPlugin_v11.finalize(ctx), ncclSuccess);
	ncclProfiler_v5.finalize(pctx);
	CK(cudaFree(dsrc));
	CK(cudaFree(ddst));
	free(ref);
	free(dec);
	free(wire);
	free(hsrc);
	free(hdst);
}

/* Compressed bf16 all-to-all sends and exact int64 sends (PyTorch's split sizes) in flight
 * together on one connection, GPU buffers both sides. */
Test(gpu_net, mixed_bf16_and_int64_in_flight)
{
	enum { SZ = 1 << 20, N = 8 };
	static const int is_i64[N] = { 0, 1, 0, 1, 1, 0, 0, 1 };
	compress_env();
	size_t len[N];
	void *smh, *rmh, *reqs[2 * N];
	int sizes[2 * N];
	struct tu_rng rng = { 53 };
	uint8_t *hsrc = host_alloc((size_t)N * SZ), *hdst = host_alloc((size_t)N * SZ);
	uint8_t *dsrc = dev_alloc((size_t)N * SZ), *ddst = dev_alloc((size_t)N * SZ);
	for (int i = 0; i < N; i++) {
		len[i] = is_i64[i] ? SZ - 24 : SZ;
		if (is_i64[i])
			fill_pattern(hsrc + (size_t)i * SZ, SZ, 300 + i); /* integers: any bits */
		else
			tu_fill(RCMOE_DT_BF16, hsrc + (size_t)i * SZ, SZ / 2, TU_GAUSS, &rng);
	}
	to_dev(dsrc, hsrc, (size_t)N * SZ);
	CK(cudaMemset(ddst, POISON, (size_t)N * SZ));
	CK(cudaDeviceSynchronize());

	void *pctx = prof_chain_init(4, 0);
	struct net_pair p;
	gpu_pair_open(&p, fake_nccl_callback);
	struct fake_phandle s_bf = prof_chain(pctx, "Send", "ncclBfloat16", SZ / 2, 4);
	struct fake_phandle s_i64 = prof_chain(pctx, "Send", "ncclInt64", (SZ - 24) / 8, 4);
	struct fake_phandle r_bf = prof_chain(pctx, "Recv", "ncclBfloat16", SZ / 2, 4);
	struct fake_phandle r_i64 = prof_chain(pctx, "Recv", "ncclInt64", (SZ - 24) / 8, 4);
	cr_assert_eq(net_reg(p.send, dsrc, (size_t)N * SZ, NCCL_PTR_CUDA, &smh), ncclSuccess);
	cr_assert_eq(net_reg(p.recv, ddst, (size_t)N * SZ, NCCL_PTR_CUDA, &rmh), ncclSuccess);
	for (int i = 0; i < N; i++) {
		reqs[2 * i] = net_irecv_retry(p.recv, ddst + (size_t)i * SZ, SZ, rmh,
					      is_i64[i] ? &r_i64 : &r_bf);
		reqs[2 * i + 1] = net_isend_retry(p.send, dsrc + (size_t)i * SZ, len[i], smh,
						  is_i64[i] ? &s_i64 : &s_bf);
	}
	net_wait_all(reqs, 2 * N, sizes, XFER_TIMEOUT_S);

	to_host(hdst, ddst, (size_t)N * SZ);
	size_t bf_wire = 0, i64_bytes = 0;
	for (int i = 0; i < N; i++) {
		const uint8_t *a = hsrc + (size_t)i * SZ, *b = hdst + (size_t)i * SZ;
		cr_expect_eq(sizes[2 * i], (int)len[i],
			     "message %d: receiver reported %d, sent %zu", i, sizes[2 * i], len[i]);
		cr_expect_eq(sizes[2 * i + 1], (int)len[i], "message %d: sender reported %d", i,
			     sizes[2 * i + 1]);
		if (is_i64[i]) {
			size_t bad = first_difference(a, b, len[i]);
			cr_expect_eq(bad, (size_t)-1, "int64 message %d: byte %zu differs", i, bad);
			bad = first_unpoisoned(b, len[i], SZ);
			cr_expect_eq(bad, (size_t)-1, "int64 message %d: byte %zu past it written",
				     i, bad);
			i64_bytes += len[i];
		} else {
			cr_expect_neq(memcmp(a, b, SZ), 0, "bf16 message %d was not compressed", i);
			size_t bad = tu_lsq_out_of_bound(a, b, SZ / 2, RCMOE_DT_BF16, 8, 128);
			cr_expect_eq(bad, 0, "bf16 message %d: %zu elements outside the bound", i,
				     bad);
			bf_wire += cpu_lsq_len(a, SZ / 2, 8);
		}
	}
	cr_expect_eq(net_dereg(p.send, smh), ncclSuccess);
	cr_expect_eq(net_dereg(p.recv, rmh), ncclSuccess);
	net_pair_close(&p);
	ncclProfiler_v5.finalize(pctx);

	unsigned long messages = 0, logical = 0, wire = 0;
	cr_assert(stats_send_cell(stats_path, "Send", "ncclBfloat16", &messages, &logical, &wire),
		  "no counters for Send/ncclBfloat16");
	cr_expect_eq(messages, 4);
	cr_expect_eq(logical, 4ul * SZ);
	cr_expect_eq(wire, bf_wire, "bf16 wire bytes %lu, CPU codec streams %zu", wire, bf_wire);
	cr_assert(stats_send_cell(stats_path, "Send", "ncclInt64", &messages, &logical, &wire),
		  "no counters for Send/ncclInt64");
	cr_expect_eq(messages, 4);
	cr_expect_eq(logical, i64_bytes);
	cr_expect_eq(wire, i64_bytes, "int64 went compressed: wire %lu, logical %zu", wire,
		     i64_bytes);
	CK(cudaFree(dsrc));
	CK(cudaFree(ddst));
	free(hsrc);
	free(hdst);
}

/* ---- The deadlock model (sync_copy_model.h) ----
 *
 * The test thread plays NCCL's proxy thread: while the application's copy waits, it posts and
 * tests the plugin's requests, and the plugin launches its staging (and codec) kernels and
 * records and queries events on its own stream. Everything the plugin allocates (pinned
 * shadows, streams, events, codec scratch) is set up before the copy starts, as NCCL does.
 *
 * A plugin call blocked on the copy's lock is the deadlock; it does not hang the test: the spin
 * kernel gives up by itself after MODEL_SPIN_S (device clock), then the copy returns and
 * releases the lock, and the plugin call returns. Each host wait is bounded as well.
 *
 * Measured on the H100 (CUDA 13, driver 580, with and without MPS): every call that enqueues
 * work (kernel launch, cudaMemcpyAsync, cudaMemsetAsync, cudaEventRecord) in the primary
 * context waits until the copy returns; only queries do not (deadlock_model_check). The plugin
 * therefore does all of its CUDA work in a context of its own (plugin/gpu_context.c). The tests
 * below check that this holds: the transfer must complete, with the right bytes, while the
 * application's copy still waits; a plugin call that blocked behind the copy fails them.
 */
/* Longest single plugin call so far, and which: tells a call blocked in the driver apart from
 * GPU work that could not run. */
struct call_watch {
	double longest;
	const char *which;
};

static void watch(struct call_watch *w, const char *which, double since)
{
	double d = now_s() - since;
	if (d > w->longest) {
		w->longest = d;
		w->which = which;
	}
}

/* One send and one receive through the plugin, tested until both are done, that never fails
 * the test itself (the spin kernel must be released first): NULL when both completed, else what
 * went wrong. No CUDA call here but the plugin's own. */
static const char *xfer_unchecked(struct net_pair *p, void *src, size_t bytes, void *smh, void *sph,
				  void *dst, size_t cap, void *rmh, void *rph, int sizes[2],
				  struct call_watch *w)
{
	void *reqs[2] = { NULL, NULL };
	int done[2] = { 0, 0 };
	ncclResult_t r;
	double t0 = now_s(), t;
	while (!reqs[0] || !reqs[1]) {
		if (!reqs[0]) {
			t = now_s();
			r = net_irecv(p->recv, dst, cap, rmh, rph, &reqs[0]);
			watch(w, "irecv", t);
			if (r != ncclSuccess)
				return "irecv failed";
		}
		if (!reqs[1]) {
			t = now_s();
			r = net_isend(p->send, src, bytes, smh, sph, &reqs[1]);
			watch(w, "isend", t);
			if (r != ncclSuccess)
				return "isend failed";
		}
		if (now_s() - t0 > MODEL_XFER_S)
			return "the plugin did not take the requests";
	}
	while (!done[0] || !done[1]) {
		for (int i = 0; i < 2; i++) {
			if (done[i])
				continue;
			t = now_s();
			r = net_test(reqs[i], &done[i], &sizes[i]);
			watch(w, i ? "test of the send" : "test of the receive", t);
			if (r != ncclSuccess)
				return "test failed";
		}
		if (now_s() - t0 > MODEL_XFER_S)
			return "the transfer was not done in time";
	}
	return NULL;
}

/* Run one transfer inside the model: it must complete while the copy still waits. */
static void transfer_beside_waiting_copy(struct net_pair *p, void *src, size_t bytes, void *smh,
					 void *sph, void *dst, size_t cap, void *rmh, void *rph,
					 const char *what)
{
	struct model m;
	struct call_watch w = { 0, "none" };
	int sizes[2] = { -1, -1 };
	model_start(&m, MODEL_SPIN_S);
	double t0 = now_s();
	const char *err = xfer_unchecked(p, src, bytes, smh, sph, dst, cap, rmh, rph, sizes, &w);
	double took = now_s() - t0;
	int copy_returned = atomic_load(&m.app.returned);
	uint32_t state = model_finish(&m);
	fprintf(stderr,
		"%s: transfer took %.3f s beside the waiting copy; longest plugin call "
		"%.3f s (%s)\n",
		what, took, w.longest, w.which);
	cr_assert_null(err, "%s: %s (after %.1f s; longest plugin call %.1f s: %s)", what, err,
		       took, w.longest, w.which);
	cr_expect(!copy_returned && state != GPU_SPIN_TIMED_OUT,
		  "%s: the transfer completed only after the application's synchronous copy "
		  "returned (%.1f s; longest plugin call %.1f s: %s): the plugin's CUDA work "
		  "waited behind the copy, which in a job is a deadlock",
		  what, took, w.longest, w.which);
	cr_expect_eq(sizes[0], (int)bytes, "%s: receiver reported %d of %zu bytes", what, sizes[0],
		     bytes);
	cr_expect_eq(sizes[1], (int)bytes, "%s: sender reported %d", what, sizes[1]);
}

/* 64 MiB from device memory to device memory, losslessly (staging kernels both ways), twice:
 * the first time the plugin's kernels have never run in this process (CUDA loads kernels
 * lazily by default, on their first launch), the second time they have. */
Test(gpu_net, device_buffers_beside_sync_copy_lossless)
{
	const size_t bytes = 64u << 20;
	const char *lazy = getenv("CUDA_MODULE_LOADING");
	uint8_t *hsrc = host_alloc(bytes), *hdst = host_alloc(bytes);
	uint8_t *dsrc = dev_alloc(bytes), *ddst = dev_alloc(bytes);
	fill_pattern(hsrc, bytes, 400);
	to_dev(dsrc, hsrc, bytes);
	struct net_pair p;
	void *smh, *rmh;
	gpu_pair_open(&p, NULL);
	cr_assert_eq(net_reg(p.send, dsrc, bytes, NCCL_PTR_CUDA, &smh), ncclSuccess);
	cr_assert_eq(net_reg(p.recv, ddst, bytes, NCCL_PTR_CUDA, &rmh), ncclSuccess);
	cr_log_info("CUDA_MODULE_LOADING=%s", lazy ? lazy : "(unset: lazy)");
	for (int round = 0; round < 2; round++) {
		CK(cudaMemset(ddst, POISON, bytes));
		CK(cudaDeviceSynchronize());
		transfer_beside_waiting_copy(&p, dsrc, bytes, smh, NULL, ddst, bytes, rmh, NULL,
					     round ? "lossless, kernels loaded"
						   : "lossless, first launch of the kernels");
		to_host(hdst, ddst, bytes);
		size_t bad = first_difference(hdst, hsrc, bytes);
		cr_expect_eq(bad, (size_t)-1, "round %d: byte %zu differs", round, bad);
	}
	cr_expect_eq(net_dereg(p.send, smh), ncclSuccess);
	cr_expect_eq(net_dereg(p.recv, rmh), ncclSuccess);
	net_pair_close(&p);
	CK(cudaFree(dsrc));
	CK(cudaFree(ddst));
	free(hsrc);
	free(hdst);
}

/* The same with compression on: GPU encode (scratch cleared by rcmoe_gpu_fill, not
 * cudaMemsetAsync) into the mapped shadow, GPU decode from it; first launch, then again. */
Test(gpu_net, device_buffers_beside_sync_copy_compressed)
{
	compress_env();
	const size_t n = 8u << 20, bytes = 2 * n;
	struct tu_rng rng = { 61 };
	uint16_t *hsrc = host_alloc(bytes);
	uint8_t *hdst = host_alloc(bytes);
	uint8_t *dsrc = dev_alloc(bytes), *ddst = dev_alloc(bytes);
	tu_fill(RCMOE_DT_BF16, hsrc, n, TU_GAUSS, &rng);
	to_dev(dsrc, hsrc, bytes);
	void *pctx = prof_chain_init(4, 3);
	struct net_pair p;
	void *smh, *rmh;
	gpu_pair_open(&p, fake_nccl_callback);
	struct fake_phandle s = prof_chain(pctx, "Send", "ncclBfloat16", n, 4);
	struct fake_phandle r = prof_chain(pctx, "Recv", "ncclBfloat16", n, 4);
	cr_assert_eq(net_reg(p.send, dsrc, bytes, NCCL_PTR_CUDA, &smh), ncclSuccess);
	cr_assert_eq(net_reg(p.recv, ddst, bytes, NCCL_PTR_CUDA, &rmh), ncclSuccess);
	for (int round = 0; round < 2; round++) {
		CK(cudaMemset(ddst, POISON, bytes));
		CK(cudaDeviceSynchronize());
		transfer_beside_waiting_copy(&p, dsrc, bytes, smh, &s, ddst, bytes, rmh, &r,
					     round ? "compressed, kernels loaded"
						   : "compressed, first launch of the kernels");
		to_host(hdst, ddst, bytes);
		cr_expect_neq(memcmp(hdst, hsrc, bytes), 0, "round %d: not compressed", round);
		size_t bad = tu_lsq_out_of_bound(hsrc, hdst, n, RCMOE_DT_BF16, 8, 128);
		cr_expect_eq(bad, 0, "round %d: %zu elements outside the bound", round, bad);
	}
	cr_expect_eq(net_dereg(p.send, smh), ncclSuccess);
	cr_expect_eq(net_dereg(p.recv, rmh), ncclSuccess);
	net_pair_close(&p);
	ncclProfiler_v5.finalize(pctx);
	CK(cudaFree(dsrc));
	CK(cudaFree(ddst));
	free(hsrc);
	free(hdst);
}

/* Does this machine reproduce the lock the model is about? Not a test of the plugin: it calls,
 * from the "proxy" thread while the copy waits, what the plugin used to call and what it calls
 * now, and prints how long each call took ("MODEL CHECK" lines on stderr). A call that blocks
 * returns only when the spin kernel gives up (MODEL_CONTROL_S). Expects the enqueueing calls to
 * block (what the default rests on) and the query not to, and fails if the model itself does
 * not work (model_start and model_finish). */
Test(gpu_net, deadlock_model_check)
{
	static const char *const names[] = {
		"kernel launch, first time (rcmoe_gpu_stage_copy)",
		"cudaMemcpyAsync device->pinned (the first GPU version)",
		"cudaMemsetAsync (the codecs before rcmoe_gpu_fill)",
		"kernel launch, loaded (rcmoe_gpu_stage_copy)",
		"cudaEventRecord on the plugin's stream",
		"cudaEventQuery of a completed event",
	};
	const size_t bytes = 1u << 20;
	void *pinned = NULL;
	uint8_t *dbuf = dev_alloc(bytes);
	cudaStream_t st;
	cudaEvent_t ev;
	int lo, hi;
	CK(cudaHostAlloc(&pinned, bytes, cudaHostAllocMapped | cudaHostAllocPortable));
	CK(cudaDeviceGetStreamPriorityRange(&lo, &hi));
	CK(cudaStreamCreateWithPriority(&st, cudaStreamNonBlocking, hi)); /* as the plugin's */
	CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
	for (int op = 0; op < (int)(sizeof(names) / sizeof(names[0])); op++) {
		struct model m;
		cudaError_t e = cudaSuccess;
		model_start(&m, MODEL_CONTROL_S);
		double t0 = now_s();
		switch (op) {
		case 0:
		case 3:
			if (rcmoe_gpu_stage_copy(pinned, dbuf, bytes, st) != RCMOE_OK)
				e = cudaErrorLaunchFailure;
			break;
		case 1: e = cudaMemcpyAsync(pinned, dbuf, bytes, cudaMemcpyDeviceToHost, st); break;
		case 2: e = cudaMemsetAsync(dbuf, 0, bytes, st); break;
		case 4: e = cudaEventRecord(ev, st); break;
		default: /* ev was recorded and has completed in the previous round */
			e = cudaEventQuery(ev);
			break;
		}
		double call = now_s() - t0;
		int returned_in_call = atomic_load(&m.app.returned);
		if (e == cudaSuccess && op < 4)
			e = cudaEventRecord(ev, st);
		/* the plugin's completion check: poll the event (bounded) */
		while (e == cudaSuccess && cudaEventQuery(ev) == cudaErrorNotReady &&
		       now_s() - t0 < MODEL_CONTROL_S + 5)
			;
		double done = now_s() - t0;
		int returned_at_done = atomic_load(&m.app.returned);
		uint32_t state = model_finish(&m);
		cr_expect_eq(e, cudaSuccess, "%s: %s", names[op], cudaGetErrorString(e));
		/* The call itself lasting until the copy returned is the lock; the work finishing
		 * only after it (short call) means the GPU serialized it behind the copy instead.
		 */
		fprintf(stderr,
			"MODEL CHECK: %s: call %.3f s, done after %.3f s (spin kernel %s): %s\n",
			names[op], call, done,
			state == GPU_SPIN_TIMED_OUT ? "timed out" : "released",
			returned_in_call
				? "the CALL BLOCKED until the copy returned: lock reproduced"
			: returned_at_done
				? "call returned at once, but the work completed only after "
				  "the copy"
				: "did not block");
		/* Why the plugin has a context of its own (plugin/gpu_context.c). */
		if (op < 5)
			cr_expect(returned_in_call,
				  "%s no longer waits behind a synchronous copy "
				  "in the primary context: the plugin's own context may no longer "
				  "be needed (docs/architecture.md, GPU buffers and CUDA contexts)",
				  names[op]);
		else
			cr_expect(!returned_in_call && !returned_at_done,
				  "%s waited behind the copy", names[op]);
		CK(cudaStreamSynchronize(st));
	}
	CK(cudaEventDestroy(ev));
	CK(cudaStreamDestroy(st));
	CK(cudaFreeHost(pinned));
	CK(cudaFree(dbuf));
}
