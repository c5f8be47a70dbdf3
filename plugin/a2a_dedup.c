/* SPDX-License-Identifier: Apache-2.0 */
/* Per-connection dedup windows and their CPU codec jobs (a2a_dedup.h). */
#include <stdlib.h>

#include "a2a_dedup.h"

rcmoe_status_t rcmoe_a2a_dedup_create(const struct rcmoe_params *p, int is_send,
				      struct rcmoe_a2a_dedup **out)
{
	rcmoe_status_t st;
	*out = NULL;
	if (p->a2a_dedup != RCMOE_A2A_DEDUP_ON)
		return RCMOE_OK;
	struct rcmoe_a2a_dedup *d = calloc(1, sizeof(*d));
	if (!d)
		return RCMOE_ERR_NOMEM;
	d->is_send = is_send;
	/* The smallest block a peer with these settings sends: RCMOE_LSQ_BLOCK bf16 elements. */
	uint32_t min_block = (uint32_t)p->lsq_block * 2;
	if (is_send)
		st = rcmoe_wdedup_tx_init(&d->tx, (uint64_t)p->dedup_window, min_block);
	else
		st = rcmoe_wdedup_rx_init(&d->rx, (uint64_t)p->dedup_window, min_block);
	if (st != RCMOE_OK) {
		free(d);
		return st;
	}
	*out = d;
	return RCMOE_OK;
}

void rcmoe_a2a_dedup_destroy(struct rcmoe_a2a_dedup *d)
{
	if (!d)
		return;
	rcmoe_wdedup_tx_free(&d->tx);
	rcmoe_wdedup_rx_free(&d->rx);
	free(d);
}

static rcmoe_status_t encode_call(struct rcmoe_cpu_job *job)
{
	struct rcmoe_a2a_dedup *d = job->arg;
	size_t len = 0;
	rcmoe_status_t st = rcmoe_wdedup_encode(&d->tx, &d->cfg, job->in, job->in_len, job->out,
						job->out_cap, &len, &d->committed);
	job->out_len = d->committed ? len : job->in_len;
	return st;
}

void rcmoe_a2a_dedup_encode_job(struct rcmoe_a2a_dedup *d, struct rcmoe_cpu_job *job,
				const struct rcmoe_wdedup_cfg *cfg, const void *src, size_t bytes,
				void *dst, size_t cap)
{
	d->cfg = *cfg;
	d->committed = 0;
	job->kind = RCMOE_JOB_CALL;
	job->call = encode_call;
	job->arg = d;
	job->in = src;
	job->in_len = bytes;
	job->out = dst;
	job->out_cap = cap;
	job->cfg.codec = RCMOE_CODEC_WDEDUP; /* for the messages that name the codec */
}

static rcmoe_status_t decode_call(struct rcmoe_cpu_job *job)
{
	struct rcmoe_a2a_dedup *d = job->arg;
	return rcmoe_wdedup_decode(&d->rx, job->in, job->in_len, job->out, job->out_cap, d->scratch,
				   d->scratch_bytes, &job->out_len, &d->why);
}

void rcmoe_a2a_dedup_decode_job(struct rcmoe_a2a_dedup *d, struct rcmoe_cpu_job *job,
				const void *src, size_t len, void *dst, size_t dst_bytes,
				void *scratch, size_t scratch_bytes)
{
	d->scratch = scratch;
	d->scratch_bytes = scratch_bytes;
	d->why = NULL;
	job->kind = RCMOE_JOB_CALL;
	job->call = decode_call;
	job->arg = d;
	job->in = src;
	job->in_len = len;
	job->out = dst;
	job->out_cap = dst_bytes;
	job->cfg.codec = RCMOE_CODEC_WDEDUP;
}
