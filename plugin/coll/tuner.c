/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tuner (tuner.h). NCCL fills a cost table per collective, [algorithm][protocol] in
 * microseconds, NCCL_ALGO_PROTO_IGNORE (-1) for what it ruled out, and picks the cheapest entry
 * that is not negative, the first one on a tie (NCCL 2.28.9 enqueue.cc:1826-1841). What NCCL
 * ruled out stays ruled out here: the collNet rows are IGNORE whenever collNet cannot carry this
 * collective (NCCL_COLLNET_ENABLE off, fewer than two nodes, or a (datatype, op) the collective
 * side's reduceSupport declined: enqueue.cc:1762-1767, 1797), so an integer all-reduce, which the
 * tuner cannot tell apart (it sees no datatype), keeps NCCL's own algorithm.
 */
#include <float.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "rcmoe/log.h"
#include "rcmoe/params.h"
#include "tuner.h"

struct rcmoe_tuner {
	uint64_t comm_id;
	ncclDebugLogger_t log;
	struct rcmoe_ar_settings settings;
	atomic_int said_steered;    /* the first steered all-reduce is logged at INFO */
	atomic_int said_no_collnet; /* the first large all-reduce NCCL kept off collNet */
	atomic_int said_layout;     /* a table too small for the v5 layout: one WARN */
};

#define TUNER_LOG(t, level, flags, fmt, ...)                                                       \
	(t)->log((level), (flags), __FILE__, __LINE__, "NET/RCMoE tuner: " fmt, ##__VA_ARGS__)

/* NCCL uses an entry only when its cost is not negative (enqueue.cc:1834). */
static int usable(float cost)
{
	return cost >= 0.0f;
}

static int is_collnet(int algo)
{
	return algo == NCCL_ALGO_COLLNET_DIRECT || algo == NCCL_ALGO_COLLNET_CHAIN;
}

int rcmoe_tuner_apply(const struct rcmoe_ar_settings *s, int func, size_t nbytes, float *table,
		      int nalgo, int nproto)
{
	if (func != ncclFuncAllReduce || s->codec == RCMOE_AR_LOSSLESS)
		return RCMOE_TUNE_UNCHANGED;
	if (rcmoe_ar_steer(s, nbytes)) {
		float *chain = &table[NCCL_ALGO_COLLNET_CHAIN * nproto + NCCL_PROTO_SIMPLE];
		if (!usable(*chain))
			return RCMOE_TUNE_NO_COLLNET;
		/* 0 is the lowest cost NCCL accepts; any other entry at 0 (NCCL writes 0 only for a
		 * one-rank communicator, which has no collNet) goes just above it, so that
		 * CollNetChain wins although it comes later in NCCL's scan. */
		*chain = 0.0f;
		for (int i = 0; i < nalgo * nproto; i++)
			if (&table[i] != chain && usable(table[i]) && table[i] <= 0.0f)
				table[i] = FLT_MIN;
		return RCMOE_TUNE_STEERED;
	}
	/* Too small to compress: keep it on NCCL's own algorithms, unless collNet is all NCCL left
	 * (then NCCL would fail the collective with "no algorithm/protocol available"). */
	int collnet = 0, other = 0;
	for (int a = 0; a < nalgo; a++)
		for (int p = 0; p < nproto; p++)
			if (usable(table[a * nproto + p]))
				*(is_collnet(a) ? &collnet : &other) = 1;
	if (!collnet || !other)
		return RCMOE_TUNE_UNCHANGED;
	for (int a = 0; a < nalgo; a++)
		for (int p = 0; is_collnet(a) && p < nproto; p++)
			if (usable(table[a * nproto + p]))
				table[a * nproto + p] = (float)NCCL_ALGO_PROTO_IGNORE;
	return RCMOE_TUNE_KEPT_OFF;
}

rcmoe_status_t rcmoe_tuner_init(struct rcmoe_tuner **out, uint64_t comm_id, size_t nranks,
				size_t nnodes, ncclDebugLogger_t logger)
{
	const struct rcmoe_params *p;
	struct rcmoe_ar_settings s;
	if (!out)
		return RCMOE_ERR_INVALID;
	*out = NULL;
	/* The same checks as the net side's init, which already refused bad settings with WARNs. */
	RCMOE_CHECK(rcmoe_params_load(&p));
	RCMOE_CHECK(rcmoe_ar_settings_from_params(p, &s));
	struct rcmoe_tuner *t = calloc(1, sizeof(*t));
	if (!t)
		return RCMOE_ERR_NOMEM;
	t->comm_id = comm_id;
	t->log = logger ? logger : rcmoe_log_get();
	t->settings = s;
	if (s.codec == RCMOE_AR_LOSSLESS) {
		TUNER_LOG(t, NCCL_LOG_INFO, NCCL_INIT | NCCL_TUNING,
			  "comm 0x%llx: all-reduce compression off, NCCL's choices are kept",
			  (unsigned long long)comm_id);
	} else {
		char what[128];
		rcmoe_ar_describe(&s, what, sizeof(what));
		TUNER_LOG(t, NCCL_LOG_INFO, NCCL_INIT | NCCL_TUNING,
			  "comm 0x%llx (%zu ranks, %zu nodes): all-reduces of at least %llu bytes "
			  "to CollNetChain/Simple when NCCL offers it (%s), smaller ones kept off "
			  "collNet; other collectives are NCCL's choice",
			  (unsigned long long)comm_id, nranks, nnodes,
			  (unsigned long long)s.min_bytes, what);
	}
	*out = t;
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_tuner_coll_info(struct rcmoe_tuner *t, int func, size_t nbytes, float *table,
				     int nalgo, int nproto)
{
	if (!t || !table) {
		RCMOE_WARN("tuner: getCollInfo without %s: cost table left alone",
			   t ? "a cost table" : "a context");
		return RCMOE_ERR_INVALID;
	}
	if (func != ncclFuncAllReduce || t->settings.codec == RCMOE_AR_LOSSLESS)
		return RCMOE_OK;
	/* The v5 layout puts CollNetChain in row 3 and Simple in column 2; a table without them
	 * is not one this tuner understands, and steering is never worth failing a collective. */
	if (nalgo <= NCCL_ALGO_COLLNET_CHAIN || nproto <= NCCL_PROTO_SIMPLE) {
		if (!atomic_exchange(&t->said_layout, 1))
			TUNER_LOG(
				t, NCCL_LOG_WARN, NCCL_TUNING,
				"comm 0x%llx: cost table of %d algorithms x %d protocols, expected "
				"at least %d x %d: all-reduce not steered",
				(unsigned long long)t->comm_id, nalgo, nproto,
				NCCL_ALGO_COLLNET_CHAIN + 1, NCCL_PROTO_SIMPLE + 1);
		return RCMOE_OK;
	}
	int what = rcmoe_tuner_apply(&t->settings, func, nbytes, table, nalgo, nproto);
	if (what == RCMOE_TUNE_STEERED && !atomic_exchange(&t->said_steered, 1))
		TUNER_LOG(t, NCCL_LOG_INFO, NCCL_TUNING,
			  "comm 0x%llx: all-reduce of %zu bytes steered to CollNetChain/Simple "
			  "(the first; later ones are not logged)",
			  (unsigned long long)t->comm_id, nbytes);
	if (what == RCMOE_TUNE_NO_COLLNET && !atomic_exchange(&t->said_no_collnet, 1))
		TUNER_LOG(t, NCCL_LOG_INFO, NCCL_TUNING,
			  "comm 0x%llx: all-reduce of %zu bytes left to NCCL, not compressed: "
			  "CollNetChain is not available for it (NCCL_COLLNET_ENABLE off, fewer "
			  "than 2 nodes, or a datatype/op the collective side declines); logged "
			  "once",
			  (unsigned long long)t->comm_id, nbytes);
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_tuner_finalize(struct rcmoe_tuner *t)
{
	free(t); /* NCCL may finalize after a failed init: NULL is fine */
	return RCMOE_OK;
}
