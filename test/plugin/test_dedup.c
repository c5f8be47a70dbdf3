/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Collaboration dedup (RCMOE_A2A_DEDUP=on) through the exported v11 table over 127.0.0.1, host
 * buffers: one all-to-all operation to one peer in several steps, all in flight at once, with
 * rows repeated across steps. Lossless it arrives exact; with LSQ a repeated row decodes to its
 * first copy's values; the counters name the peer and the duplicates; a stream whose references
 * the receiver's window cannot satisfy is refused with a WARN and nothing decoded.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec_test_util.h"
#include "net_pair.h"
#include "prof_chain.h"
#include "rcmoe/codec.h"
#include "rcmoe/log.h"
#include "rcmoe/params.h"
#include "rcmoe/transport.h"
#include "rcmoe/wdedup.h"
#include "test_log.h"

extern const ncclProfiler_v5_t ncclProfiler_v5;
extern const ncclNet_v11_t ncclNetPlugin_v11;

static char stats_path[64];

static void setup(void)
{
	test_log_init();
	setenv("RCMOE_SOCKET_IFNAME", "lo", 1);
	setenv("RCMOE_A2A_DEDUP", "on", 1);
	setenv("RCMOE_A2A_BITS", "0", 1);
	snprintf(stats_path, sizeof(stats_path), "/tmp/rcmoe-dedup-%d.jsonl", (int)getpid());
	unlink(stats_path);
	setenv("RCMOE_STATS_FILE", stats_path, 1);
	signal(SIGPIPE, SIG_IGN);
}

static void teardown(void)
{
	unlink(stats_path);
}

TestSuite(dedup_net, .init = setup, .fini = teardown, .timeout = 120);

enum { STEPS = 8, STEP = 128 << 10, ROW = 512, NROWS = STEPS * STEP / ROW };

/* bf16 rows; a third of the rows after the first repeat an earlier row, at random distances. */
static size_t plant(uint8_t *buf, size_t *src_of, unsigned seed)
{
	struct tu_rng r = { seed };
	size_t dups = 0;
	tu_fill(RCMOE_DT_BF16, buf, (size_t)STEPS * STEP / 2, TU_GAUSS, &r);
	src_of[0] = 0;
	for (size_t i = 1; i < NROWS; i++) {
		src_of[i] = i;
		if (tu_uniform(&r) < 1.0 / 3) {
			size_t j = (size_t)(tu_u64(&r) % i);
			memcpy(buf + i * ROW, buf + j * ROW, ROW);
			src_of[i] = src_of[j];
			dups++;
		}
	}
	return dups;
}

/* The dedup line of the stats file for dir and peer 0: 1 if found. */
static int stats_dedup_cell(const char *dir, unsigned long *blocks, unsigned long *dups,
			    unsigned long *saved)
{
	char want[96], line[1024];
	snprintf(want, sizeof(want), "\"record\":\"dedup\",\"dir\":\"%s\",\"peer\":0,", dir);
	FILE *f = fopen(stats_path, "r");
	int found = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		char *m = strstr(line, want) ? strstr(line, "\"blocks\":") : NULL;
		if (m)
			found = sscanf(m,
				       "\"blocks\":%lu,\"duplicate_blocks\":%lu,\"saved_bytes\":%"
				       "lu",
				       blocks, dups, saved) == 3;
	}
	fclose(f);
	return found;
}

/* One operation of STEPS messages, every receive and send posted before any completes. */
static void operation(int bits, unsigned seed)
{
	char v[4];
	snprintf(v, sizeof(v), "%d", bits);
	setenv("RCMOE_A2A_BITS", v, 1);
	const size_t bytes = (size_t)STEPS * STEP;
	uint8_t *src = malloc(bytes), *dst = malloc(bytes);
	size_t *src_of = malloc(NROWS * sizeof(size_t));
	size_t dup_rows = plant(src, src_of, seed);
	memset(dst, 0x5a, bytes);

	void *pctx = prof_chain_init(4, 1);
	struct net_pair p;
	net_version = 11;
	net_pair_open(&p, fake_nccl_callback);
	void *smh, *rmh, *reqs[2 * STEPS];
	cr_assert_eq(net_reg(p.send, src, bytes, NCCL_PTR_HOST, &smh), ncclSuccess);
	cr_assert_eq(net_reg(p.recv, dst, bytes, NCCL_PTR_HOST, &rmh), ncclSuccess);
	size_t count = bytes / 2;
	struct fake_phandle s[STEPS], r[STEPS];
	s[0] = prof_chain(pctx, "Send", "ncclBfloat16", count, 4);
	r[0] = prof_chain(pctx, "Recv", "ncclBfloat16", count, 4);
	for (int k = 1; k < STEPS; k++) {
		s[k] = prof_chain_next_step(&s[k - 1]);
		r[k] = prof_chain_next_step(&r[k - 1]);
	}
	for (int k = 0; k < STEPS; k++)
		reqs[k] = net_irecv_retry(p.recv, dst + (size_t)k * STEP, STEP, rmh, &r[k]);
	for (int k = 0; k < STEPS; k++)
		reqs[STEPS + k] = net_isend_retry(p.send, src + (size_t)k * STEP, STEP, smh, &s[k]);
	int sizes[2 * STEPS];
	net_wait_all(reqs, 2 * STEPS, sizes, 30);
	for (int k = 0; k < 2 * STEPS; k++)
		cr_expect_eq(sizes[k], STEP, "request %d reported %d bytes", k, sizes[k]);
	net_dereg(p.send, smh);
	net_dereg(p.recv, rmh);
	net_pair_close(&p);
	ncclProfiler_v5.finalize(pctx);

	if (bits == 0) {
		cr_expect_eq(memcmp(src, dst, bytes), 0, "lossless dedup did not arrive exact");
	} else {
		size_t bad = tu_lsq_out_of_bound(src, dst, bytes / 2, RCMOE_DT_BF16, bits, 128);
		cr_expect_eq(bad, 0u, "%zu elements outside the LSQ bound", bad);
		cr_expect_neq(memcmp(src, dst, bytes), 0, "arrived exact: not quantized");
	}
	for (size_t i = 0; i < NROWS; i++)
		if (memcmp(dst + i * ROW, dst + src_of[i] * ROW, ROW)) {
			cr_expect(0, "row %zu does not decode as its first copy (row %zu)", i,
				  src_of[i]);
			break;
		}
	/* Every repeated row is two duplicate blocks (a row is 256 bf16, two LSQ blocks), all
	 * found: the window (8 MiB) holds the whole operation. */
	unsigned long blocks = 0, dups = 0, saved = 0;
	cr_assert(stats_dedup_cell("send", &blocks, &dups, &saved), "no send dedup counters");
	cr_expect_eq(blocks, bytes / 256);
	cr_expect_eq(dups, 2 * dup_rows, "%lu duplicate blocks counted, %zu planted", dups,
		     2 * dup_rows);
	cr_expect_eq(saved, dups * 256);
	cr_assert(stats_dedup_cell("recv", &blocks, &dups, &saved), "no recv dedup counters");
	cr_expect_eq(dups, 2 * dup_rows);
	unsigned long messages, logical, wire;
	cr_assert(stats_send_cell(stats_path, "Send", "ncclBfloat16", &messages, &logical, &wire));
	cr_expect_eq(logical, bytes);
	cr_expect_lt(wire, bytes - dups * 256 + STEPS * (64 + 32 + STEP / 64) + 1,
		     "wire bytes %lu do not show the duplicates removed", wire);
	free(src_of);
	free(dst);
	free(src);
}

Test(dedup_net, lossless_operation_across_steps)
{
	operation(0, 21);
}

Test(dedup_net, lsq_8_bits_after_dedup)
{
	operation(8, 22);
}

Test(dedup_net, lsq_2_bits_after_dedup)
{
	operation(2, 23);
}

/* `valid` good steps (100 literals each), then one whose block `blk` refers to literal
 * `target`: the good ones arrive exact, the last is refused loudly and its buffer never
 * written. The sender's window is the receiver's (RCMOE_DEDUP_WINDOW). */
static void refuse_reference(int valid, size_t blk, uint32_t target, size_t last_bytes)
{
	enum { BB = 256, NB = 128, BYTES = NB * BB, MAXS = 4 };
	const struct rcmoe_params *params;
	/* Receives shorter than RCMOE_MIN_BYTES get no stream from a peer with these settings: a
	 * transport that posts destinations ahead (IB) would put them in NCCL's buffer, where a
	 * refused stream lands before it is refused. This test's sender ignores the setting. */
	setenv("RCMOE_MIN_BYTES", "0", 1);
	cr_assert_eq(rcmoe_params_load(&params), RCMOE_OK);
	struct rcmoe_wdedup_tx tx;
	struct rcmoe_wdedup_cfg cfg = { .op = 1, .op_id = 0, .block_bytes = BB };
	uint8_t *m = malloc(BYTES), *enc[MAXS];
	size_t len[MAXS], cap = rcmoe_wdedup_bound(BYTES, &cfg);
	struct tu_rng rng = { 77 };
	int committed, n = valid + 1;
	cr_assert_eq(rcmoe_wdedup_tx_init(&tx, (uint64_t)params->dedup_window, 256), RCMOE_OK);
	for (int k = 0; k < n; k++) {
		for (size_t i = 0; i < BYTES; i++)
			m[i] = (uint8_t)tu_u64(&rng);
		for (int b = 100; b < NB; b++) /* copies within the step: worth a stream */
			memcpy(m + (size_t)b * BB, m, BB);
		enc[k] = malloc(cap);
		cfg.op_id = (uint64_t)k;
		cr_assert_eq(rcmoe_wdedup_encode(&tx, &cfg, m, k == valid ? last_bytes : BYTES,
						 enc[k], cap, &len[k], &committed),
			     RCMOE_OK);
		cr_assert(committed);
	}
	memcpy(enc[valid] + RCMOE_WIRE_HEADER_BYTES + RCMOE_WDEDUP_PREAMBLE_BYTES + 4 * blk,
	       &target, 4);

	struct raw_link l;
	void *rmh, *rr[MAXS];
	raw_link_open(&l);
	uint8_t *dst = malloc((size_t)n * BYTES);
	memset(dst, 0x33, (size_t)n * BYTES);
	cr_assert_eq(net_reg(l.recv, dst, (size_t)n * BYTES, NCCL_PTR_HOST, &rmh), ncclSuccess);
	for (int k = 0; k < n; k++)
		rr[k] = net_irecv_retry(l.recv, dst + (size_t)k * BYTES, BYTES, rmh, NULL);
	for (int k = 0; k < n; k++)
		raw_link_send(&l, enc[k], len[k], RCMOE_MSG_ENCODED);
	for (int k = 0; k < valid; k++)
		cr_expect_eq(net_wait(rr[k], 10), BYTES);
	int warns = test_log_warn_count();
	cr_expect_neq(net_wait_error(rr[valid], 10), ncclSuccess, "a bad reference was accepted");
	cr_expect_gt(test_log_warn_count(), warns, "refusal was silent");
	const uint8_t *last = dst + (size_t)valid * BYTES;
	for (size_t i = 0; i < BYTES; i++)
		if (last[i] != 0x33) {
			cr_expect(0, "byte %zu of the refused receive was written", i);
			break;
		}
	raw_link_close(&l);
	rcmoe_wdedup_tx_free(&tx);
	for (int k = 0; k < n; k++)
		free(enc[k]);
	free(dst);
	free(m);
}

Test(dedup_net, forward_reference_refused)
{
	/* at block 3 the receiver has numbered 103 literals */
	refuse_reference(1, 3, 250, 128 * 256);
}

Test(dedup_net, reference_out_of_the_window_refused)
{
	/* a 256-block window: after 3 steps (300 literals) literal 10 is long gone */
	setenv("RCMOE_DEDUP_WINDOW", "64K", 1);
	refuse_reference(3, 1, 10, 128 * 256);
}

Test(dedup_net, reference_of_the_wrong_length_refused)
{
	/* the short last block (156 bytes) may not copy a full block */
	refuse_reference(1, 127, 5, 128 * 256 - 100);
}
