/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe-place: finds a placement of MoE experts on devices that lowers the all-to-all volume of a
 * recorded routing trace (docs/placement.md). trace.c reads and writes the two trace formats,
 * graph.c builds the co-activation graph and evaluates placements exactly, search.c is the
 * partitioning heuristic, gen.c writes synthetic traces with planted clusters, main.c and
 * gen_main.c are the two command lines.
 */
#ifndef RCMOE_PLACE_H
#define RCMOE_PLACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PL_MAGIC       "RCMOETRC" /* 8 bytes, the binary format's first bytes */
#define PL_VERSION     1u
#define PL_HEADER_SIZE 32u
#define PL_MAX_K       64u   /* experts per token */
#define PL_MAX_EXPERTS 1024u /* the graph is experts x experts, the search O(experts^3) a pass */

enum { PL_FORMAT_AUTO = 0, PL_FORMAT_BINARY = 1, PL_FORMAT_TEXT = 2 };

/* What a trace holds; filled by pl_trace_scan. */
struct pl_trace_info {
	int format;       /* PL_FORMAT_BINARY or PL_FORMAT_TEXT */
	uint32_t k;       /* expert ids per token */
	uint32_t experts; /* from the binary header; for text, the count the caller gave */
	uint64_t tokens;
};

/* Called with consecutive batches of tokens, k ids each (ids < experts, distinct within a
 * token). Nonzero stops the scan and is returned by it. */
typedef int (*pl_token_fn)(void *ctx, const uint16_t *ids, size_t ntokens, uint32_t k);

/*
 * Stream the trace at path once (a regular file: rcmoe-place reads it twice). format is
 * PL_FORMAT_AUTO (the magic tells binary from text), or forces one. experts is the number of
 * experts the caller expects (devices x experts per device): a binary header that says otherwise,
 * or an id >= experts, is an error. want_k, when nonzero, must equal the trace's k. Returns 0, or
 * -1 with err holding "PATH: why" (bad magic, version, truncated, id out of range, k mismatch,
 * repeated id, trailing bytes), or fn's nonzero value.
 */
int pl_trace_scan(const char *path, int format, uint32_t experts, uint32_t want_k,
		  struct pl_trace_info *info, pl_token_fn fn, void *ctx, char *err, size_t errlen);

/* Incremental writer of either format: open, add tokens, close (which fills the binary header's
 * token count). 0 or -1 with errno set. */
struct pl_writer;
struct pl_writer *pl_writer_open(const char *path, int format, uint32_t k, uint32_t experts);
int pl_writer_add(struct pl_writer *w, const uint16_t *ids, size_t ntokens);
int pl_writer_close(struct pl_writer *w);

/* The co-activation graph: w[a * experts + b] = tokens routed to both a and b (symmetric, zero
 * diagonal), built in one pass over the trace in O(tokens * k^2). */
struct pl_graph {
	uint32_t experts, k;
	uint64_t tokens;
	uint64_t *w;
};
int pl_graph_init(struct pl_graph *g, uint32_t experts);
int pl_graph_add(void *graph, const uint16_t *ids, size_t ntokens, uint32_t k); /* a pl_token_fn */
void pl_graph_finish(struct pl_graph *g); /* mirrors the upper triangle */
void pl_graph_free(struct pl_graph *g);

/* Co-activated pairs of the tokens whose two experts share a device under dev (expert -> device).
 */
uint64_t pl_graph_intra_pairs(const struct pl_graph *g, const uint16_t *dev);

/* Exact a2a volume of several placements at once: rows[c] = sum over tokens of the number of
 * distinct devices of its experts under placement c. */
struct pl_eval {
	uint32_t experts, devices;
	size_t ncand;
	const uint16_t *dev; /* ncand x experts */
	uint64_t *rows;      /* ncand, zeroed by the caller */
	uint32_t *stamp;     /* devices > 64 only: per-device mark */
	uint32_t tick;
};
int pl_eval_add(void *eval, const uint16_t *ids, size_t ntokens, uint32_t k); /* a pl_token_fn */

/* The partitioning problem: experts = devices x per_device, w the co-activation graph. */
struct pl_problem {
	uint32_t experts, devices, per_device;
	const uint64_t *w;
};

/* The intra-device co-activation weight of a placement: the search's (approximate) objective. */
int64_t pl_intra_weight(const struct pl_problem *pb, const uint16_t *dev);

/*
 * Greedy seeding plus Kernighan-Lin pair-swap refinement, deterministic for seed. Writes
 * restarts + 1 candidate placements (expert -> device) to cand: the identity placement refined,
 * then one per restart seeded greedily. 0, or -1 on allocation failure.
 */
int pl_search(const struct pl_problem *pb, uint64_t seed, unsigned restarts, uint16_t *cand);

/* Refine dev in place by KL passes until a pass gains nothing; returns the weight gained. */
int64_t pl_refine(const struct pl_problem *pb, uint16_t *dev);

/* The whole tool (place.c): read the trace once for the graph, search, read it again to count the
 * exact volume of the identity placement and of every candidate, keep the best; the identity
 * unless a candidate is strictly better. */
struct pl_result {
	struct pl_trace_info info;
	uint32_t devices, per_device;
	uint64_t seed;
	unsigned restarts;
	uint16_t *dev;     /* the chosen placement, expert -> device */
	int improved;      /* 0: dev is the identity placement */
	uint64_t rows_id;  /* a2a volume (rows sent) of the identity placement */
	uint64_t rows;     /* and of dev */
	uint64_t intra_id; /* co-activated pairs on one device, identity and dev */
	uint64_t intra;
	uint64_t pairs;                  /* tokens x k(k-1)/2 */
	double t_read, t_search, t_eval; /* seconds */
};
int pl_place(const char *path, int format, uint32_t devices, uint32_t per_device, uint32_t want_k,
	     uint64_t seed, unsigned restarts, struct pl_result *res, char *err, size_t errlen);
void pl_result_free(struct pl_result *res);

/* report.c: the table, and the placement as JSON (0, or -1 with errno set). */
void pl_print_table(FILE *out, const char *path, const struct pl_result *res);
int pl_write_json(const char *path, const char *trace, const struct pl_result *res);

/* Deterministic generator (splitmix64) shared by the search and the trace generator. */
static inline uint64_t pl_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
static inline uint32_t pl_rand_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(((pl_rand(s) >> 32) * (uint64_t)n) >> 32);
}

/* Synthetic traces with planted co-activation clusters (gen.c). The experts are shuffled
 * (seeded) into clusters of cluster_size; a token takes whole clusters until it has k experts,
 * except with probability noise, when its k experts are uniform. cluster_size 0: every token is
 * uniform. */
struct pl_gen {
	uint32_t experts, k, cluster_size;
	uint64_t tokens, seed;
	double noise;
};
/* cluster_of[e] = the planted cluster of expert e (experts / cluster_size clusters). */
void pl_gen_clusters(const struct pl_gen *g, uint32_t *cluster_of);
/* Write the trace to path in format. 0, or -1 with err set. */
int pl_gen_write(const struct pl_gen *g, const char *path, int format, char *err, size_t errlen);

#endif
