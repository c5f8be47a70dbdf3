/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The partitioning heuristic: maximise the co-activation weight inside devices (pairs of a token's
 * experts that share a device) under equal-sized devices. Greedy seeding fills one device at a
 * time with the experts most attached to it; Kernighan-Lin passes then swap pairs of experts
 * between devices: each step takes the best swap of two unlocked experts even when it loses,
 * locks them, and the pass keeps the best prefix, so a pass climbs out of shallow local optima.
 * A swap's gain is O(1) from conn[x][d], x's weight towards device d; a swap updates conn in
 * O(experts). Everything is integer and ties go to the lowest index: the result depends on the
 * seed only. Why pairs and not the exact device count: docs/placement.md.
 */
#include <stdlib.h>
#include <string.h>

#include "place.h"

#define MAX_PASSES  64
#define STALL_MOVES 32

int64_t pl_intra_weight(const struct pl_problem *pb, const uint16_t *dev)
{
	int64_t sum = 0;
	size_t e = pb->experts;
	for (size_t a = 0; a < e; a++)
		for (size_t b = a + 1; b < e; b++)
			if (dev[a] == dev[b])
				sum += (int64_t)pb->w[a * e + b];
	return sum;
}

static void swap_experts(const struct pl_problem *pb, uint16_t *dev, int64_t *conn, size_t a,
			 size_t b)
{
	size_t e = pb->experts, p = pb->devices;
	uint16_t da = dev[a], db = dev[b];
	const uint64_t *wa = pb->w + a * e, *wb = pb->w + b * e;
	for (size_t x = 0; x < e; x++) {
		int64_t d = (int64_t)wb[x] - (int64_t)wa[x];
		conn[x * p + da] += d;
		conn[x * p + db] -= d;
	}
	dev[a] = db;
	dev[b] = da;
}

int64_t pl_refine(const struct pl_problem *pb, uint16_t *dev)
{
	size_t e = pb->experts, p = pb->devices;
	int64_t *conn = calloc(e * p, sizeof(*conn));
	int64_t *self = malloc(e * sizeof(*self));
	unsigned char *locked = malloc(e);
	size_t *moves = malloc(e * sizeof(*moves)); /* pairs: a, b */
	int64_t total = 0;
	if (!conn || !self || !locked || !moves) {
		total = -1;
		goto out;
	}
	for (size_t x = 0; x < e; x++)
		for (size_t y = 0; y < e; y++)
			conn[x * p + dev[y]] += (int64_t)pb->w[x * e + y];

	for (int pass = 0; pass < MAX_PASSES; pass++) {
		memset(locked, 0, e);
		int64_t cum = 0, best = 0;
		size_t nmoves = 0, nbest = 0;
		for (size_t step = 0; step < e / 2; step++) {
			for (size_t x = 0; x < e; x++)
				self[x] = conn[x * p + dev[x]];
			int64_t bg = INT64_MIN;
			size_t ba = 0, bb = 0;
			for (size_t a = 0; a < e; a++) {
				if (locked[a])
					continue;
				const int64_t *ca = conn + a * p;
				const uint64_t *wa = pb->w + a * e;
				size_t da = dev[a];
				int64_t base = -self[a];
				for (size_t b = a + 1; b < e; b++) {
					if (locked[b] || dev[b] == da)
						continue;
					/* a leaves da for dev[b], b the other way; their own edge
					 * stays cut, counted once in each conn. */
					int64_t g = base + ca[dev[b]] + conn[b * p + da] - self[b] -
						    2 * (int64_t)wa[b];
					if (g > bg) {
						bg = g;
						ba = a;
						bb = b;
					}
				}
			}
			if (bg == INT64_MIN)
				break;
			swap_experts(pb, dev, conn, ba, bb);
			locked[ba] = locked[bb] = 1;
			moves[2 * nmoves] = ba;
			moves[2 * nmoves + 1] = bb;
			nmoves++;
			cum += bg;
			if (cum > best) {
				best = cum;
				nbest = nmoves;
			}
			/* FM's cut-off: a pass that found nothing better in STALL_MOVES swaps
			 * rarely does later, and the rest of it is most of its cost. */
			if (nmoves - nbest > STALL_MOVES)
				break;
		}
		while (nmoves > nbest) {
			nmoves--;
			swap_experts(pb, dev, conn, moves[2 * nmoves], moves[2 * nmoves + 1]);
		}
		if (best <= 0)
			break;
		total += best;
	}
out:
	free(conn);
	free(self);
	free(locked);
	free(moves);
	return total;
}

/* Fill devices one after another: a seed expert (the heaviest, or a random one), then always the
 * unassigned expert with the most weight towards the experts already there. */
static void seed_greedy(const struct pl_problem *pb, uint64_t *rng, int heaviest, uint16_t *dev,
			int64_t *attract, const int64_t *degree)
{
	size_t e = pb->experts;
	for (size_t x = 0; x < e; x++)
		dev[x] = UINT16_MAX;
	size_t left = e;
	for (uint16_t d = 0; d < pb->devices; d++) {
		memset(attract, 0, e * sizeof(*attract));
		size_t pick = e;
		if (heaviest) {
			for (size_t x = 0; x < e; x++)
				if (dev[x] == UINT16_MAX && (pick == e || degree[x] > degree[pick]))
					pick = x;
		} else {
			size_t nth = pl_rand_below(rng, (uint32_t)left);
			for (size_t x = 0; x < e; x++)
				if (dev[x] == UINT16_MAX && nth-- == 0) {
					pick = x;
					break;
				}
		}
		for (uint32_t i = 0; i < pb->per_device; i++) {
			if (i > 0) {
				/* Ties: from a random offset, so restarts differ where the graph
				 * does not decide. */
				size_t off = heaviest ? 0 : pl_rand_below(rng, (uint32_t)e);
				pick = e;
				for (size_t j = 0; j < e; j++) {
					size_t x = (j + off) % e;
					if (dev[x] == UINT16_MAX &&
					    (pick == e || attract[x] > attract[pick]))
						pick = x;
				}
			}
			dev[pick] = d;
			left--;
			const uint64_t *wp = pb->w + pick * e;
			for (size_t x = 0; x < e; x++)
				attract[x] += (int64_t)wp[x];
		}
	}
}

int pl_search(const struct pl_problem *pb, uint64_t seed, unsigned restarts, uint16_t *cand)
{
	size_t e = pb->experts;
	int64_t *attract = malloc(e * sizeof(*attract));
	int64_t *degree = calloc(e, sizeof(*degree));
	int rc = 0;
	if (!attract || !degree) {
		rc = -1;
		goto out;
	}
	for (size_t x = 0; x < e; x++)
		for (size_t y = 0; y < e; y++)
			degree[x] += (int64_t)pb->w[x * e + y];

	for (size_t x = 0; x < e; x++)
		cand[x] = (uint16_t)(x / pb->per_device);
	if (pl_refine(pb, cand) < 0)
		rc = -1;
	for (unsigned r = 1; r <= restarts && rc == 0; r++) {
		uint64_t rng = seed * 0x2545f4914f6cdd1dull + r;
		uint16_t *dev = cand + (size_t)r * e;
		seed_greedy(pb, &rng, r == 1, dev, attract, degree);
		if (pl_refine(pb, dev) < 0)
			rc = -1;
	}
out:
	free(attract);
	free(degree);
	return rc;
}
