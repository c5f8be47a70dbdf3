/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The co-activation graph (one pass, O(tokens * k^2)) and the exact a2a volume of a set of
 * placements (one more pass, O(tokens * k) per placement).
 */
#include <stdlib.h>
#include <string.h>

#include "place.h"

int pl_graph_init(struct pl_graph *g, uint32_t experts)
{
	memset(g, 0, sizeof(*g));
	g->experts = experts;
	g->w = calloc((size_t)experts * experts, sizeof(*g->w));
	return g->w ? 0 : -1;
}

int pl_graph_add(void *graph, const uint16_t *ids, size_t ntokens, uint32_t k)
{
	struct pl_graph *g = graph;
	uint64_t *w = g->w;
	size_t e = g->experts;
	g->k = k;
	g->tokens += ntokens;
	for (size_t t = 0; t < ntokens; t++, ids += k)
		for (uint32_t i = 0; i < k; i++) {
			size_t a = ids[i];
			for (uint32_t j = i + 1; j < k; j++) {
				size_t b = ids[j];
				/* Upper triangle only; pl_graph_finish mirrors it. */
				w[a < b ? a * e + b : b * e + a]++;
			}
		}
	return 0;
}

void pl_graph_finish(struct pl_graph *g)
{
	size_t e = g->experts;
	for (size_t a = 0; a < e; a++)
		for (size_t b = a + 1; b < e; b++)
			g->w[b * e + a] = g->w[a * e + b];
}

void pl_graph_free(struct pl_graph *g)
{
	free(g->w);
	g->w = NULL;
}

uint64_t pl_graph_intra_pairs(const struct pl_graph *g, const uint16_t *dev)
{
	uint64_t sum = 0;
	size_t e = g->experts;
	for (size_t a = 0; a < e; a++)
		for (size_t b = a + 1; b < e; b++)
			if (dev[a] == dev[b])
				sum += g->w[a * e + b];
	return sum;
}

int pl_eval_add(void *eval, const uint16_t *ids, size_t ntokens, uint32_t k)
{
	struct pl_eval *ev = eval;
	for (size_t c = 0; c < ev->ncand; c++) {
		const uint16_t *dev = ev->dev + c * ev->experts;
		const uint16_t *tok = ids;
		uint64_t rows = 0;
		if (ev->devices <= 64) {
			/* Distinct devices of a token: the population count of their bit set. */
			for (size_t t = 0; t < ntokens; t++, tok += k) {
				uint64_t set = 0;
				for (uint32_t i = 0; i < k; i++)
					set |= 1ull << dev[tok[i]];
				rows += (uint64_t)__builtin_popcountll(set);
			}
		} else {
			for (size_t t = 0; t < ntokens; t++, tok += k) {
				if (++ev->tick == 0) {
					memset(ev->stamp, 0, ev->devices * sizeof(*ev->stamp));
					ev->tick = 1;
				}
				for (uint32_t i = 0; i < k; i++)
					if (ev->stamp[dev[tok[i]]] != ev->tick) {
						ev->stamp[dev[tok[i]]] = ev->tick;
						rows++;
					}
			}
		}
		ev->rows[c] += rows;
	}
	return 0;
}
