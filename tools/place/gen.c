/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Synthetic routing traces with planted co-activation clusters: the tests' and the docs' ground
 * truth. The clusters are a seeded shuffle of the experts, so the identity placement does not
 * already hold them together.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"

#define BATCH 4096

/* The shuffled experts: members[c * size .. c * size + size) form cluster c. */
static void shuffle(const struct pl_gen *g, uint32_t *members)
{
	uint64_t rng = g->seed ^ 0x6a09e667f3bcc909ull;
	for (uint32_t i = 0; i < g->experts; i++)
		members[i] = i;
	for (uint32_t i = g->experts - 1; i > 0; i--) {
		uint32_t j = pl_rand_below(&rng, i + 1);
		uint32_t t = members[i];
		members[i] = members[j];
		members[j] = t;
	}
}

void pl_gen_clusters(const struct pl_gen *g, uint32_t *cluster_of)
{
	uint32_t *members = malloc(g->experts * sizeof(*members));
	if (!members)
		abort();
	shuffle(g, members);
	for (uint32_t i = 0; i < g->experts; i++)
		cluster_of[members[i]] = g->cluster_size ? i / g->cluster_size : 0;
	free(members);
}

static int taken(const uint16_t *tok, uint32_t n, uint32_t id)
{
	for (uint32_t i = 0; i < n; i++)
		if (tok[i] == id)
			return 1;
	return 0;
}

static void gen_token(const struct pl_gen *g, uint64_t *rng, const uint32_t *members, uint16_t *tok)
{
	uint32_t n = 0, size = g->cluster_size;
	int uniform = size == 0 || (double)(pl_rand(rng) >> 11) * 0x1p-53 < g->noise;
	if (uniform) {
		while (n < g->k) {
			uint32_t id = pl_rand_below(rng, g->experts);
			if (!taken(tok, n, id))
				tok[n++] = (uint16_t)id;
		}
		return;
	}
	uint32_t nclusters = g->experts / size;
	while (n < g->k) {
		/* A cluster not used yet: none of its members is in the token. */
		uint32_t c = pl_rand_below(rng, nclusters), used = 0;
		for (uint32_t i = 0; i < size; i++)
			used |= (uint32_t)taken(tok, n, members[c * size + i]);
		if (used)
			continue;
		uint32_t pick[PL_MAX_K], cnt = size;
		for (uint32_t i = 0; i < size && i < PL_MAX_K; i++)
			pick[i] = members[c * size + i];
		if (cnt > PL_MAX_K)
			cnt = PL_MAX_K;
		/* Members in a random order, as many as the token still needs. */
		for (uint32_t i = 0; i < cnt && n < g->k; i++) {
			uint32_t j = i + pl_rand_below(rng, cnt - i);
			uint32_t t = pick[i];
			pick[i] = pick[j];
			pick[j] = t;
			tok[n++] = (uint16_t)pick[i];
		}
	}
}

int pl_gen_write(const struct pl_gen *g, const char *path, int format, char *err, size_t errlen)
{
	if (g->experts == 0 || g->experts > PL_MAX_EXPERTS || g->k == 0 || g->k > PL_MAX_K ||
	    g->k > g->experts || (g->cluster_size && g->experts % g->cluster_size) ||
	    g->cluster_size > PL_MAX_K) {
		snprintf(err, errlen,
			 "need 1 <= k <= experts <= %u, k <= %u, cluster size <= %u dividing "
			 "the experts",
			 PL_MAX_EXPERTS, PL_MAX_K, PL_MAX_K);
		return -1;
	}
	uint32_t *members = malloc(g->experts * sizeof(*members));
	uint16_t *ids = malloc((size_t)BATCH * g->k * sizeof(*ids));
	struct pl_writer *w =
		members && ids ? pl_writer_open(path, format, g->k, g->experts) : NULL;
	int rc = 0;
	if (!w) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		rc = -1;
		goto out;
	}
	shuffle(g, members);
	uint64_t rng = g->seed * 0x9e3779b97f4a7c15ull + 1;
	for (uint64_t done = 0; done < g->tokens && rc == 0;) {
		size_t n = g->tokens - done < BATCH ? (size_t)(g->tokens - done) : BATCH;
		for (size_t t = 0; t < n; t++)
			gen_token(g, &rng, members, ids + t * g->k);
		rc = pl_writer_add(w, ids, n);
		done += n;
	}
	if (pl_writer_close(w) != 0)
		rc = -1;
	if (rc)
		snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
out:
	free(members);
	free(ids);
	return rc;
}
