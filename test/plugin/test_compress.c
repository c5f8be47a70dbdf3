/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compressed all-to-all on the CPU path (host buffers, the C codec), through the exported v11
 * table over 127.0.0.1: eligible sends arrive within the LSQ bound with their original size,
 * ineligible ones byte-exact, the counters' wire bytes equal the codec's stream length, and a
 * malformed compressed message is refused without touching the posted buffer.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec_math.h"
#include "codec_test_util.h"
#include "net_pair.h"
#include "prof_chain.h"
#include "rcmoe/codec.h"
#include "rcmoe/log.h"
#include "rcmoe/transport.h"
#include "test_log.h"

extern const ncclProfiler_v5_t ncclProfiler_v5;
extern const ncclNet_v11_t ncclNetPlugin_v11;

static char stats_path[64];

static void setup(void)
{
	test_log_init();
	setenv("RCMOE_SOCKET_IFNAME", "lo", 1);
	setenv("RCMOE_A2A_BITS", "8", 1);
	snprintf(stats_path, sizeof(stats_path), "/tmp/rcmoe-compress-%d.jsonl", (int)getpid());
	unlink(stats_path);
	setenv("RCMOE_STATS_FILE", stats_path, 1);
	signal(SIGPIPE, SIG_IGN);
}

static void teardown(void)
{
	unlink(stats_path);
}

TestSuite(compress, .init = setup, .fini = teardown, .timeout = 120);

/* Gaussian-like values (Box-Muller on a hash) in dtype, with a per-row scale. */
static void fill_float(void *buf, size_t n, int dtype, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t h = rcmoe_mix64(((uint64_t)seed << 40) ^ (i * 2 + 1));
		double u1 = ((h >> 11) + 1.0) / 9007199254740993.0;
		double u2 = (rcmoe_mix64(h) >> 11) / 9007199254740992.0;
		float v = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
		v *= (float)(1 + (i / 1024) % 7); /* rows of different magnitude */
		uint32_t raw = rcmoe_from_f32(dtype, v);
		if (dtype == RCMOE_DT_FP32)
			memcpy((char *)buf + i * 4, &raw, 4);
		else {
			uint16_t r16 = (uint16_t)raw;
			memcpy((char *)buf + i * 2, &r16, 2);
		}
	}
}

/* Send n elements with the given chains; returns the receiver's reported size. */
static int transfer(struct net_pair *p, const void *src, size_t bytes, void *dst, size_t cap,
		    struct fake_phandle *sph, struct fake_phandle *rph)
{
	void *smh, *rmh;
	cr_assert_eq(net_reg(p->send, (void *)src, bytes, NCCL_PTR_HOST, &smh), ncclSuccess);
	cr_assert_eq(net_reg(p->recv, dst, cap, NCCL_PTR_HOST, &rmh), ncclSuccess);
	void *rr = net_irecv_retry(p->recv, dst, cap, rmh, rph);
	void *sr = net_isend_retry(p->send, (void *)src, bytes, smh, sph);
	net_wait(sr, 20);
	int got = net_wait(rr, 20);
	net_dereg(p->send, smh);
	net_dereg(p->recv, rmh);
	return got;
}

static const char *dtype_str(int dtype)
{
	return dtype == RCMOE_DT_BF16   ? "ncclBfloat16"
	       : dtype == RCMOE_DT_FP16 ? "ncclFloat16"
					: "ncclFloat32";
}

static void lsq_roundtrip(int dtype, int bits)
{
	char v[4];
	snprintf(v, sizeof(v), "%d", bits);
	setenv("RCMOE_A2A_BITS", v, 1);
	size_t n = (1 << 18) + 77, es = rcmoe_dtype_size(dtype), bytes = n * es;
	char *src = malloc(bytes), *dst = malloc(bytes + 4096);
	fill_float(src, n, dtype, (unsigned)(dtype * 10 + bits));
	memset(dst, 0x5a, bytes + 4096);

	void *pctx = prof_chain_init(4, 1);
	struct net_pair p;
	net_version = 11;
	net_pair_open(&p, fake_nccl_callback);
	struct fake_phandle s = prof_chain(pctx, "Send", dtype_str(dtype), n, 4);
	struct fake_phandle r = prof_chain(pctx, "Recv", dtype_str(dtype), n, 4);
	int got = transfer(&p, src, bytes, dst, bytes + 4096, &s, &r);
	cr_expect_eq(got, (int)bytes, "reported %d bytes, original %zu", got, bytes);
	size_t bad = tu_lsq_out_of_bound(src, dst, n, dtype, bits, 128);
	cr_expect_eq(bad, 0, "%zu of %zu elements outside the LSQ bound (%d bits)", bad, n, bits);
	cr_expect_neq(memcmp(src, dst, bytes), 0, "arrived bit-exact: it was not compressed");
	cr_expect_eq((uint8_t)dst[bytes], 0x5a, "decoder wrote past the message");
	net_pair_close(&p);
	ncclProfiler_v5.finalize(pctx);

	/* The wire carried exactly the codec's stream (its length does not depend on the seed). */
	struct rcmoe_lsq_cfg cfg = { .dtype = dtype, .bits = bits, .block = 128, .seed = 1 };
	size_t len = 0, cap = rcmoe_lsq_bound(n, &cfg);
	char *enc = malloc(cap);
	cr_assert_eq(rcmoe_lsq_encode(src, n, &cfg, enc, cap, &len), RCMOE_OK);
	unsigned long logical = 0, wire = 0;
	unsigned long messages;
	cr_assert(stats_send_cell(stats_path, "Send", dtype_str(dtype), &messages, &logical, &wire),
		  "no counters for the send");
	cr_expect_eq(logical, bytes);
	cr_expect_eq(wire, len, "wire bytes %lu, codec stream %zu", wire, len);
	cr_expect_lt(wire, bytes);
	free(enc);
	free(src);
	free(dst);
}

Test(compress, bf16_8_bits)
{
	lsq_roundtrip(RCMOE_DT_BF16, 8);
}

Test(compress, bf16_4_bits)
{
	lsq_roundtrip(RCMOE_DT_BF16, 4);
}

Test(compress, bf16_2_bits)
{
	lsq_roundtrip(RCMOE_DT_BF16, 2);
}

/* The codec on the proxy thread itself (no workers) gives the same result. */
Test(compress, bf16_8_bits_without_workers)
{
	setenv("RCMOE_CPU_CODEC_THREADS", "0", 1);
	lsq_roundtrip(RCMOE_DT_BF16, 8);
}

Test(compress, fp16_8_bits)
{
	lsq_roundtrip(RCMOE_DT_FP16, 8);
}

Test(compress, fp32_4_bits)
{
	lsq_roundtrip(RCMOE_DT_FP32, 4);
}

/* A stream mixing eligible and ineligible messages, several in flight. */
Test(compress, mixed_stream_ineligible_exact)
{
	enum { SZ = 1 << 20, N = 8 };
	void *pctx = prof_chain_init(4, 0);
	struct net_pair p;
	net_version = 11;
	net_pair_open(&p, fake_nccl_callback);
	struct fake_phandle s_a2a = prof_chain(pctx, "Send", "ncclBfloat16", SZ / 2, 4);
	struct fake_phandle s_i64 = prof_chain(pctx, "Send", "ncclInt64", SZ / 8, 4);
	struct fake_phandle s_pp = prof_chain(pctx, "Send", "ncclBfloat16", SZ / 2, 1);
	struct fake_phandle s_small = prof_chain(pctx, "Send", "ncclBfloat16", 1000, 4);
	struct fake_phandle r_any = prof_chain(pctx, "Recv", "ncclBfloat16", SZ / 2, 4);
	/* kind per message: 0 a2a bf16 (lossy), 1 int64, 2 lone send, 3 unknown, 4 small */
	int kind[N] = { 0, 1, 0, 2, 3, 0, 4, 1 };
	struct fake_phandle *sph[] = { &s_a2a, &s_i64, &s_pp, NULL, &s_small };
	size_t len[N];
	char *src = malloc((size_t)N * SZ), *dst = malloc((size_t)N * SZ);
	void *smh, *rmh, *sr[N], *rr[N];
	for (int i = 0; i < N; i++) {
		len[i] = kind[i] == 4 ? 2000 : SZ;
		if (kind[i] == 1)
			fill_pattern(src + (size_t)i * SZ, len[i], 77 + i); /* integers: any bits */
		else
			fill_float(src + (size_t)i * SZ, len[i] / 2, RCMOE_DT_BF16, 7 + i);
	}
	memset(dst, 0, (size_t)N * SZ);
	cr_assert_eq(net_reg(p.send, src, (size_t)N * SZ, NCCL_PTR_HOST, &smh), ncclSuccess);
	cr_assert_eq(net_reg(p.recv, dst, (size_t)N * SZ, NCCL_PTR_HOST, &rmh), ncclSuccess);
	for (int i = 0; i < N; i++) {
		rr[i] = net_irecv_retry(p.recv, dst + (size_t)i * SZ, SZ, rmh, &r_any);
		sr[i] = net_isend_retry(p.send, src + (size_t)i * SZ, len[i], smh, sph[kind[i]]);
	}
	for (int i = 0; i < N; i++) {
		net_wait(sr[i], 20);
		cr_expect_eq(net_wait(rr[i], 20), (int)len[i]);
		const char *a = src + (size_t)i * SZ, *b = dst + (size_t)i * SZ;
		if (kind[i] == 0) {
			cr_expect_neq(memcmp(a, b, len[i]), 0, "message %d was not compressed", i);
			cr_expect_eq(tu_lsq_out_of_bound(a, b, len[i] / 2, RCMOE_DT_BF16, 8, 128),
				     0, "message %d outside the bound", i);
		} else {
			cr_expect_eq(memcmp(a, b, len[i]), 0,
				     "ineligible message %d (kind %d) not exact", i, kind[i]);
		}
	}
	net_dereg(p.send, smh);
	net_dereg(p.recv, rmh);
	net_pair_close(&p);
	ncclProfiler_v5.finalize(pctx);
	free(src);
	free(dst);
}

/* RCMOE_A2A_SCOPE=p2p compresses a lone send too. */
Test(compress, scope_p2p_compresses_pipeline_sends)
{
	setenv("RCMOE_A2A_SCOPE", "p2p", 1);
	size_t n = 1 << 17, bytes = n * 2;
	char *src = malloc(bytes), *dst = malloc(bytes);
	fill_float(src, n, RCMOE_DT_BF16, 3);
	void *pctx = prof_chain_init(2, 0);
	struct net_pair p;
	net_version = 11;
	net_pair_open(&p, fake_nccl_callback);
	struct fake_phandle s = prof_chain(pctx, "Send", "ncclBfloat16", n, 1);
	struct fake_phandle r = prof_chain(pctx, "Recv", "ncclBfloat16", n, 1);
	cr_expect_eq(transfer(&p, src, bytes, dst, bytes, &s, &r), (int)bytes);
	cr_expect_neq(memcmp(src, dst, bytes), 0, "lone send not compressed under scope p2p");
	cr_expect_eq(tu_lsq_out_of_bound(src, dst, n, RCMOE_DT_BF16, 8, 128), 0);
	net_pair_close(&p);
	ncclProfiler_v5.finalize(pctx);
	free(src);
	free(dst);
}

/* A receive whose own attribution says it gets raw bytes (another datatype) while the peer sends
 * a stream still decodes it: over IB its destination was posted as NCCL's buffer, and the
 * stream moves to the shadow before it is decoded. */
Test(compress, stream_into_a_receive_guessed_raw)
{
	size_t n = 1 << 17, bytes = n * 2;
	char *src = malloc(bytes), *dst = malloc(bytes);
	fill_float(src, n, RCMOE_DT_BF16, 21);
	memset(dst, 0, bytes);
	void *pctx = prof_chain_init(4, 0);
	struct net_pair p;
	net_version = 11;
	net_pair_open(&p, fake_nccl_callback);
	struct fake_phandle s = prof_chain(pctx, "Send", "ncclBfloat16", n, 4);
	struct fake_phandle r = prof_chain(pctx, "Recv", "ncclInt64", n / 4, 4);
	cr_expect_eq(transfer(&p, src, bytes, dst, bytes, &s, &r), (int)bytes);
	cr_expect_neq(memcmp(src, dst, bytes), 0, "arrived bit-exact: it was not compressed");
	cr_expect_eq(tu_lsq_out_of_bound(src, dst, n, RCMOE_DT_BF16, 8, 128), 0);
	net_pair_close(&p);
	ncclProfiler_v5.finalize(pctx);
	free(src);
	free(dst);
}

/* A block holding NaN or Inf travels raw; the others are quantized. */
Test(compress, nan_and_inf_blocks_arrive_raw)
{
	size_t n = 1 << 16, bytes = n * 2;
	uint16_t *src = malloc(bytes), *dst = malloc(bytes);
	fill_float(src, n, RCMOE_DT_BF16, 11);
	src[300] = 0x7fc0;  /* NaN in block 2 */
	src[1000] = 0x7f80; /* +Inf in block 7 */
	void *pctx = prof_chain_init(4, 0);
	struct net_pair p;
	net_version = 11;
	net_pair_open(&p, fake_nccl_callback);
	struct fake_phandle s = prof_chain(pctx, "Send", "ncclBfloat16", n, 4);
	struct fake_phandle r = prof_chain(pctx, "Recv", "ncclBfloat16", n, 4);
	cr_expect_eq(transfer(&p, src, bytes, dst, bytes, &s, &r), (int)bytes);
	cr_expect_eq(memcmp(src + 256, dst + 256, 256), 0, "NaN block not raw");
	cr_expect_eq(memcmp(src + 896, dst + 896, 256), 0, "Inf block not raw");
	cr_expect_eq(tu_lsq_out_of_bound(src, dst, 256, RCMOE_DT_BF16, 8, 128), 0);
	cr_expect_neq(memcmp(src + 2048, dst + 2048, bytes - 4096), 0, "rest not compressed");
	net_pair_close(&p);
	ncclProfiler_v5.finalize(pctx);
	free(src);
	free(dst);
}

static void expect_untouched(const char *buf, size_t n, uint8_t fill, const char *what)
{
	for (size_t i = 0; i < n; i++)
		if ((uint8_t)buf[i] != fill) {
			cr_expect(0, "byte %zu of %s was written", i, what);
			return;
		}
}

/* A peer that claims to send a compressed stream but sends garbage, or a cut stream: the
 * receive fails with a WARN and its buffer is never written (unless `may_land`: over IB the
 * sender writes where the receive was posted, before anything is known of the message, and a
 * receiver without compression has no shadow to post instead). */
static void refuse_encoded_landing(const void *payload, size_t len, int may_land)
{
	struct raw_link l;
	void *rmh;
	raw_link_open(&l);
	enum { CAP = 1 << 20 };
	char *dst = malloc(CAP);
	memset(dst, 0x33, CAP);
	cr_assert_eq(net_reg(l.recv, dst, CAP, NCCL_PTR_HOST, &rmh), ncclSuccess);
	void *rr = net_irecv_retry(l.recv, dst, CAP, rmh, NULL);
	raw_link_send(&l, payload, len, RCMOE_MSG_ENCODED);
	int warns = test_log_warn_count();
	ncclResult_t res = net_wait_error(rr, 10);
	cr_expect_neq(res, ncclSuccess);
	cr_expect_gt(test_log_warn_count(), warns, "refusal was silent");
	if (!may_land)
		expect_untouched(dst, CAP, 0x33, "the posted buffer");
	raw_link_close(&l);
	free(dst);
}

static void refuse_encoded(const void *payload, size_t len)
{
	refuse_encoded_landing(payload, len, 0);
}

/* After the plugin refuses a message it fails the connection, and the other receives posted on
 * it fail too, but only once nothing can write into their buffers: a message whose bytes were
 * already arriving must not go on landing in a buffer NCCL was told had failed (and may free). */
Test(compress, refusal_stops_the_connection_before_reporting)
{
	struct raw_link l;
	void *rmh;
	static char junk[5000];
	fill_pattern(junk, sizeof(junk), 9);
	raw_link_open(&l);
	enum { CAP = 1 << 20 };
	const size_t big = (size_t)128 << 20; /* long enough to be mid-flight at the refusal */
	char *dst = malloc(CAP + big), *src = malloc(big), *snap = malloc(big);
	memset(dst, 0x33, CAP + big);
	fill_pattern(src, big, 11);
	cr_assert_eq(net_reg(l.recv, dst, CAP + big, NCCL_PTR_HOST, &rmh), ncclSuccess);
	void *r1 = net_irecv_retry(l.recv, dst, CAP, rmh, NULL);
	void *r2 = net_irecv_retry(l.recv, dst + CAP, big, rmh, NULL);
	/* Both messages are on the wire before the receiver looks: reading the first header
	 * also reads the second and starts its pieces. */
	raw_link_send(&l, junk, sizeof(junk), RCMOE_MSG_ENCODED);
	raw_link_send(&l, src, big, 0);
	usleep(50 * 1000);
	cr_expect_neq(net_wait_error(r1, 10), ncclSuccess);
	cr_expect_neq(net_wait_error(r2, 10), ncclSuccess, "the second receive did not fail");
	memcpy(snap, dst + CAP, big);
	usleep(300 * 1000); /* anything still moving would land now */
	cr_expect_eq(memcmp(snap, dst + CAP, big), 0,
		     "bytes kept arriving in the second receive's buffer after it failed");
	raw_link_close(&l);
	free(snap);
	free(src);
	free(dst);
}

Test(compress, garbage_claiming_to_be_compressed_is_refused)
{
	static char junk[5000];
	fill_pattern(junk, sizeof(junk), 9);
	refuse_encoded(junk, sizeof(junk));
}

Test(compress, truncated_stream_is_refused)
{
	size_t n = 1 << 16, len = 0;
	uint16_t *src = malloc(n * 2);
	fill_float(src, n, RCMOE_DT_BF16, 5);
	struct rcmoe_lsq_cfg cfg = { .dtype = RCMOE_DT_BF16, .bits = 8, .block = 128, .seed = 1 };
	size_t cap = rcmoe_lsq_bound(n, &cfg);
	char *enc = malloc(cap);
	cr_assert_eq(rcmoe_lsq_encode(src, n, &cfg, enc, cap, &len), RCMOE_OK);
	refuse_encoded(enc, len - 100);
	free(enc);
	free(src);
}

/* A receiver with compression off cannot take compressed messages: a clear error, not garbage. */
Test(compress, receiver_without_compression_refuses)
{
	setenv("RCMOE_A2A_BITS", "0", 1);
	size_t n = 1 << 16, len = 0;
	uint16_t *src = malloc(n * 2);
	fill_float(src, n, RCMOE_DT_BF16, 5);
	struct rcmoe_lsq_cfg cfg = { .dtype = RCMOE_DT_BF16, .bits = 8, .block = 128, .seed = 1 };
	size_t cap = rcmoe_lsq_bound(n, &cfg);
	char *enc = malloc(cap);
	cr_assert_eq(rcmoe_lsq_encode(src, n, &cfg, enc, cap, &len), RCMOE_OK);
	refuse_encoded_landing(enc, len, net_over_ib());
	free(enc);
	free(src);
}

/* With RCMOE_MIN_BYTES=0 even tiny sends are eligible; those too small for a stream go raw. */
Test(compress, tiny_sends_with_min_bytes_zero)
{
	setenv("RCMOE_MIN_BYTES", "0", 1);
	void *pctx = prof_chain_init(4, 0);
	struct net_pair p;
	net_version = 11;
	net_pair_open(&p, fake_nccl_callback);
	struct fake_phandle s = prof_chain(pctx, "Send", "ncclBfloat16", 1, 4);
	struct fake_phandle r = prof_chain(pctx, "Recv", "ncclBfloat16", 1, 4);
	size_t sizes[] = { 2, 8, 64, 256, 4096 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint16_t src[2048], dst[2048];
		fill_float(src, sizes[i] / 2, RCMOE_DT_BF16, (unsigned)i);
		cr_expect_eq(transfer(&p, src, sizes[i], dst, sizeof(dst), &s, &r), (int)sizes[i]);
		cr_expect_eq(tu_lsq_out_of_bound(src, dst, sizes[i] / 2, RCMOE_DT_BF16, 8, 128), 0,
			     "%zu-byte send outside the bound", sizes[i]);
	}
	net_pair_close(&p);
	ncclProfiler_v5.finalize(pctx);
}
