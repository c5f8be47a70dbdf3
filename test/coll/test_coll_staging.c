/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leftovers in NCCL's collNet staging (docs/compression.md, "What a call covers"). With
 * CollNetChain NCCL hands each iallreduce whole chunk slots of its staging buffer, so the last
 * call of a collective covers bytes that earlier collectives left there. These tests emulate
 * that: each rank registers a "staging" region first (as NCCL does at setup: send slots, then
 * receive slots, filled with NCCL's initial 0x33 pattern) and a user buffer second; a first call
 * fills a slot with large values, a second call writes real data into only the start of the slot
 * and covers all of it. The PTS and LSQ error bounds must hold on the real elements as if the
 * rest were zeros (the plugin clears what it encoded from the staging), and a user's buffer or a
 * lossless call's staging must never be cleared.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_math.h"
#include "coll_data.h"
#include "coll_mesh.h"
#include "test_log.h"

static void setup(void)
{
	test_log_init();
	setenv("RCMOE_SOCKET_IFNAME", "lo", 1);
	setenv("RCMOE_SOCKET_NSTREAMS", "2", 1);
	setenv("RCMOE_SOCKET_NTHREADS", "1", 1);
	setenv("RCMOE_AR_MIN_BYTES", "0", 1);
	signal(SIGPIPE, SIG_IGN);
}

TestSuite(coll_staging, .init = setup, .timeout = 300);

enum {
	SLOT = 40000, /* elements of one chunk slot: the count of every call */
	REAL = 25037, /* elements NCCL wrote for the last call: not a multiple of the block */
	NRANKS = 3,
};
#define DENSITY  0.1
#define LSQ_BITS 8
#define LSQ_L    127.0
#define LSQ_B    128

static ncclDataType_t test_dt;
static int lsq; /* 0: PTS, 1: LSQ */

static double rel_eps(ncclDataType_t dt)
{
	return dt == ncclFloat32 ? 1.2e-7 : dt == ncclBfloat16 ? 7.9e-3 : 9.8e-4;
}

/* PTS: an element is off by at most the sum over ranks of tau_r = ||x_r||_1 / (density n), n the
 * call's count (the cleared rest adds nothing to the norm), plus the roundings. */
static double pts_bound(const struct contrib *c, const double *tau_sum, size_t i)
{
	double mag = fabs(exact_sum(c, i)) + *tau_sum;
	return *tau_sum * 1.01 + mag * (rel_eps(c->dt) + 1e-6 * c->nranks) + 1e-30;
}

/* LSQ two-step (test_coll_codec.c's bound): each rank's block scale, the summed block's scale,
 * from the real elements of the block only (the rest of the block is cleared). */
static double lsq_bound(const struct contrib *c, size_t i)
{
	double m = 0;
	for (int r = 0; r < c->nranks; r++)
		m += block_maxabs(c, r, i / LSQ_B, LSQ_B);
	double s = m / LSQ_L, agg = (m + s) / LSQ_L;
	return (s + agg) * 1.01 + (fabs(exact_sum(c, i)) + m) * rel_eps(c->dt) * (c->nranks + 3);
}

static void put_elem(ncclDataType_t dt, void *buf, size_t i, float v)
{
	uint32_t bits = rcmoe_from_f32((int)dt, v);
	if (dt == ncclFloat32) {
		memcpy((char *)buf + 4 * i, &bits, 4);
	} else {
		uint16_t h = (uint16_t)bits;
		memcpy((char *)buf + 2 * i, &h, 2);
	}
}

/* The last call's real data: contrib_make's values for REAL elements (the rest of the slot is
 * whatever the earlier call left). */
static void leftover_body(struct mesh_rank *r)
{
	size_t es = dt_size(test_dt), slot_bytes = (size_t)SLOT * es;
	char *stage = malloc(2 * slot_bytes), *user = malloc(2 * slot_bytes);
	void *mh_stage = NULL, *mh_user = NULL;
	RCHECK(r, stage && user, "memory");
	memset(stage, 0x33, 2 * slot_bytes); /* NCCL's initial fill */
	RCHECK(r, coll_reg(r, stage, 2 * slot_bytes, &mh_stage) == ncclSuccess, "regMr staging");
	RCHECK(r, coll_reg(r, user, 2 * slot_bytes, &mh_user) == ncclSuccess, "regMr user");
	char *send = stage, *recv = stage + slot_bytes;

	/* An earlier collective fills the whole slot with large values. */
	for (size_t i = 0; i < SLOT; i++)
		put_elem(test_dt, send, i, 1.0e4f * (float)((int)(i % 7) - 3) + 0.5f);
	void *req = coll_post(r, send, recv, SLOT, test_dt, mh_stage, mh_stage);
	if (!req || coll_wait(r, req, slot_bytes, 60.0))
		return;

	/* The last call: real data in the first REAL elements only, count the whole slot. */
	struct contrib c;
	RCHECK(r, contrib_make(&c, r->m->nranks, test_dt, REAL, 77) == 0, "memory");
	memcpy(send, c.in[r->rank], (size_t)REAL * es);
	req = coll_post(r, send, recv, SLOT, test_dt, mh_stage, mh_stage);
	if (!req || coll_wait(r, req, slot_bytes, 60.0))
		return;

	double tau_sum = 0;
	for (int q = 0; q < c.nranks; q++) {
		double l1 = 0;
		for (size_t k = 0; k < REAL; k++)
			l1 += fabs(elem_f32(test_dt, c.in[q], k));
		tau_sum += l1 / (DENSITY * SLOT);
	}
	double worst = 0;
	size_t at = 0;
	for (size_t i = 0; i < REAL; i++) {
		double err = fabs(elem_f32(test_dt, recv, i) - exact_sum(&c, i));
		double b = lsq ? lsq_bound(&c, i) : pts_bound(&c, &tau_sum, i);
		if (!(err <= b) && !(err / b <= worst)) {
			worst = err / b;
			at = i;
		}
	}
	RCHECK(r, worst == 0,
	       "%s %s: real element %zu off by %g of its bound (leftovers counted in the encoding)",
	       lsq ? "LSQ" : "PTS", dt_name(test_dt), at, worst);
	/* What the plugin encoded from the staging is cleared; the receive side keeps the result.
	 */
	for (size_t b = 0; b < slot_bytes; b++)
		RCHECK(r, send[b] == 0, "staging send byte %zu not cleared: 0x%02x", b,
		       (unsigned char)send[b]);

	/* A user's buffer (a later registration) is never cleared. */
	char *before = malloc(slot_bytes);
	RCHECK(r, before != NULL, "memory");
	for (size_t i = 0; i < SLOT; i++)
		put_elem(test_dt, user, i, (float)(i % 13) - 6.0f);
	memcpy(before, user, slot_bytes);
	req = coll_post(r, user, user + slot_bytes, SLOT, test_dt, mh_user, mh_user);
	if (!req || coll_wait(r, req, slot_bytes, 60.0))
		return;
	RCHECK(r, memcmp(before, user, slot_bytes) == 0, "a user's send buffer was changed");
	free(before);

	contrib_free(&c);
	RCHECK(r, coll_dereg(r, mh_user) == ncclSuccess, "deregMr user");
	RCHECK(r, coll_dereg(r, mh_stage) == ncclSuccess, "deregMr staging");
	free(stage);
	free(user);
}

static void run_leftovers(int use_lsq, ncclDataType_t dt)
{
	lsq = use_lsq;
	test_dt = dt;
	if (use_lsq) {
		char bits[8];
		snprintf(bits, sizeof(bits), "%d", LSQ_BITS);
		setenv("RCMOE_AR_BITS", bits, 1);
	} else {
		setenv("RCMOE_AR_DENSITY", "0.1", 1);
	}
	struct mesh m;
	mesh_open(&m, 11, NRANKS, 1);
	mesh_run(&m, leftover_body);
	mesh_close(&m);
}

Test(coll_staging, pts_fp32_leftovers_do_not_count)
{
	run_leftovers(0, ncclFloat32);
}

Test(coll_staging, pts_bf16_leftovers_do_not_count)
{
	run_leftovers(0, ncclBfloat16);
}

Test(coll_staging, lsq_fp32_leftovers_do_not_count)
{
	run_leftovers(1, ncclFloat32);
}

Test(coll_staging, lsq_fp16_leftovers_do_not_count)
{
	run_leftovers(1, ncclFloat16);
}

/* Lossless calls never clear, even from the staging (the sum does not care about leftovers,
 * and the bytes are NCCL's). */
static void lossless_body(struct mesh_rank *r)
{
	size_t slot_bytes = (size_t)SLOT * 4;
	char *stage = malloc(2 * slot_bytes), *before = malloc(slot_bytes);
	void *mh = NULL;
	RCHECK(r, stage && before, "memory");
	memset(stage, 0x33, 2 * slot_bytes);
	RCHECK(r, coll_reg(r, stage, 2 * slot_bytes, &mh) == ncclSuccess, "regMr staging");
	for (size_t i = 0; i < SLOT; i++)
		put_elem(ncclFloat32, stage, i, (float)(i % 11) - 5.0f);
	memcpy(before, stage, slot_bytes);
	void *req = coll_post(r, stage, stage + slot_bytes, SLOT, ncclFloat32, mh, mh);
	if (!req || coll_wait(r, req, slot_bytes, 60.0))
		return;
	RCHECK(r, memcmp(before, stage, slot_bytes) == 0, "a lossless call changed its send bytes");
	for (size_t i = 0; i < SLOT; i++)
		RCHECK(r,
		       elem_f32(ncclFloat32, stage + slot_bytes, i) ==
			       (float)r->m->nranks * ((float)(i % 11) - 5.0f),
		       "lossless element %zu wrong", i);
	RCHECK(r, coll_dereg(r, mh) == ncclSuccess, "deregMr staging");
	free(stage);
	free(before);
}

Test(coll_staging, lossless_never_clears)
{
	struct mesh m;
	mesh_open(&m, 11, NRANKS, 1);
	mesh_run(&m, lossless_body);
	mesh_close(&m);
}
