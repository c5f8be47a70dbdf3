/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pipeline of rcmoe-place: graph from a first pass over the trace, the search on the graph,
 * then a second pass that counts the exact a2a volume of the identity placement and of every
 * candidate at once, so the choice (and the guarantee against the identity) is exact.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "place.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Name devices in the order of their lowest expert: a placement's volume does not depend on the
 * names, and restarts that reach the same partition then compare equal. */
static void canonical(uint16_t *dev, uint32_t experts, uint32_t devices, uint16_t *map)
{
	uint16_t next = 0;
	for (uint32_t d = 0; d < devices; d++)
		map[d] = UINT16_MAX;
	for (uint32_t x = 0; x < experts; x++) {
		if (map[dev[x]] == UINT16_MAX)
			map[dev[x]] = next++;
		dev[x] = map[dev[x]];
	}
}

void pl_result_free(struct pl_result *res)
{
	free(res->dev);
	res->dev = NULL;
}

int pl_place(const char *path, int format, uint32_t devices, uint32_t per_device, uint32_t want_k,
	     uint64_t seed, unsigned restarts, struct pl_result *res, char *err, size_t errlen)
{
	memset(res, 0, sizeof(*res));
	res->devices = devices;
	res->per_device = per_device;
	res->seed = seed;
	res->restarts = restarts;
	uint64_t experts = (uint64_t)devices * per_device;
	if (devices == 0 || per_device == 0 || experts > PL_MAX_EXPERTS) {
		snprintf(err, errlen, "devices x experts per device = %llu, expected 1..%u",
			 (unsigned long long)experts, PL_MAX_EXPERTS);
		return -1;
	}
	uint32_t e = (uint32_t)experts;
	size_t ncand = (size_t)restarts + 2; /* the identity, then pl_search's candidates */
	struct pl_graph g;
	uint16_t *cand = malloc(ncand * e * sizeof(*cand));
	uint64_t *rows = calloc(ncand, sizeof(*rows));
	uint64_t *urows = calloc(ncand, sizeof(*urows));
	uint16_t *uniq = malloc(ncand * e * sizeof(*uniq));
	size_t *same = malloc(ncand * sizeof(*same));
	/* Also the scratch of canonical(): at least devices uint16_t. */
	uint32_t *stamp = calloc(devices, sizeof(*stamp));
	int rc = -1;
	if (pl_graph_init(&g, e) != 0 || !cand || !rows || !urows || !uniq || !same || !stamp) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}

	double t0 = now();
	if (pl_trace_scan(path, format, e, want_k, &res->info, pl_graph_add, &g, err, errlen))
		goto out;
	if (res->info.tokens == 0) {
		snprintf(err, errlen, "%s: the trace holds no tokens", path);
		goto out;
	}
	pl_graph_finish(&g);
	double t1 = now();

	struct pl_problem pb = {
		.experts = e, .devices = devices, .per_device = per_device, .w = g.w
	};
	for (uint32_t x = 0; x < e; x++)
		cand[x] = (uint16_t)(x / per_device);
	if (pl_search(&pb, seed, restarts, cand + e) != 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	double t2 = now();

	/* Count each distinct partition once: unique[] holds them, first of each at the front. */
	size_t nuniq = 0;
	for (size_t c = 0; c < ncand; c++) {
		uint16_t *dc = cand + c * e;
		canonical(dc, e, devices, (uint16_t *)stamp);
		size_t u = 0;
		while (u < nuniq && memcmp(uniq + u * e, dc, e * sizeof(*dc)) != 0)
			u++;
		if (u == nuniq)
			memcpy(uniq + nuniq++ * e, dc, e * sizeof(*dc));
		same[c] = u;
	}
	memset(stamp, 0, devices * sizeof(*stamp));
	struct pl_eval ev = { .experts = e,
			      .devices = devices,
			      .ncand = nuniq,
			      .dev = uniq,
			      .rows = urows,
			      .stamp = stamp };
	struct pl_trace_info again;
	if (pl_trace_scan(path, format, e, want_k, &again, pl_eval_add, &ev, err, errlen))
		goto out;
	if (again.tokens != res->info.tokens) {
		snprintf(err, errlen, "%s: changed while being read", path);
		goto out;
	}
	for (size_t c = 0; c < ncand; c++)
		rows[c] = urows[same[c]];
	/* Strictly fewer rows than the best so far: ties keep the identity (candidate 0). */
	size_t best = 0;
	for (size_t c = 1; c < ncand; c++)
		if (rows[c] < rows[best])
			best = c;
	res->t_read = t1 - t0;
	res->t_search = t2 - t1;
	res->t_eval = now() - t2;

	res->dev = malloc(e * sizeof(*res->dev));
	if (!res->dev) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	memcpy(res->dev, cand + best * e, e * sizeof(*res->dev));
	res->improved = best != 0;
	res->rows_id = rows[0];
	res->rows = rows[best];
	res->intra_id = pl_graph_intra_pairs(&g, cand);
	res->intra = pl_graph_intra_pairs(&g, res->dev);
	res->pairs = res->info.tokens * res->info.k * (res->info.k - 1) / 2;
	rc = 0;
out:
	pl_graph_free(&g);
	free(cand);
	free(rows);
	free(urows);
	free(uniq);
	free(same);
	free(stamp);
	return rc;
}
