/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the all-reduce engine (ar_engine.c) shares with its GPU path (ar_gpu.c): the shard cut,
 * the operation ids, stream checks, worker jobs and buffers. Internal to plugin/coll/.
 */
#ifndef RCMOE_AR_INTERNAL_H
#define RCMOE_AR_INTERNAL_H

#include "coll.h"

#define LOSSLESS_UNIT 16 /* elements: shard boundaries of the lossless mode */

/* Shard s of n elements over nranks, cut at multiples of unit: [*off, *off + *len). */
void rcmoe_coll__shard(size_t n, int nranks, size_t unit, int s, size_t *off, size_t *len);
/* The operation id of a stream: call, phase (0 reduce-scatter / PTS, 1 all-gather), shard. */
uint64_t rcmoe_coll__op(uint64_t seq, int phase, int shard);
struct rcmoe_lsq_cfg rcmoe_coll__lsq_cfg(const struct coll_call *k, int phase, int shard, int rank);
/* LSQ two-step: where each shard's reduce-scatter stream goes in k->own (k->own_off[], each start
 * a multiple of `align`), their *total bytes, and the bound of this rank's all-gather stream. */
void rcmoe_coll__lsq_layout(struct coll_call *k, size_t align, size_t *total, size_t *rbound);
/* The PTS stream of call k from this rank (one per call: phase 0, shard 0), for both buffer kinds.
 */
struct rcmoe_codec_cfg rcmoe_coll__pts_cfg(const struct coll_call *k);
/* Is this stream the one the call expects from `rank` (codec, datatype, count, operation, and
 * whole: rcmoe_codec_validate)? Its header in *hdr (zeroed otherwise). */
rcmoe_status_t rcmoe_coll__check_stream(const struct coll_call *k, const void *src, size_t len,
					int codec, size_t count, uint64_t op, int rank,
					struct rcmoe_wire_header *hdr);
const void *rcmoe_coll__in_stream(struct coll_xfer *x);
int rcmoe_coll__all_done(const struct coll_xfer *x, int n, int skip);
int rcmoe_coll__job_finished(struct coll_call *k, int j);
void rcmoe_coll__submit(struct coll_call *k, struct rcmoe_cpu_job *job,
			rcmoe_status_t (*fn)(struct rcmoe_cpu_job *), int index);
/* The same job run on the calling thread (NCCL's proxy thread): done on return. */
void rcmoe_coll__run_here(struct coll_call *k, struct rcmoe_cpu_job *job,
			  rcmoe_status_t (*fn)(struct rcmoe_cpu_job *), int index);
rcmoe_status_t rcmoe_coll__take_job(struct coll_call *k, struct rcmoe_cpu_job *job,
				    const char *what);
void rcmoe_coll__xfer_init(struct coll_xfer *x, const void *sbuf, size_t len, void *dest,
			   size_t max_len, int ready);

/* Jobs the GPU path reuses (LSQ's on the proxy thread, rcmoe_coll__run_here; PTS's on a worker):
 * validations that fill k->srcs, k->lens and k->hdrs. */
rcmoe_status_t rcmoe_coll__job_pts_validate(struct rcmoe_cpu_job *job);
/* LSQ owner: the N streams of its shard (into hdrs[p]). */
rcmoe_status_t rcmoe_coll__job_lsq_validate(struct rcmoe_cpu_job *job);
/* LSQ: shard job->index's summed stream (into hdrs[nranks + index]). */
rcmoe_status_t rcmoe_coll__job_lsq_gather_validate(struct rcmoe_cpu_job *job);

/* The lossless mode on the host bytes k->hsend and k->hrecv. */
rcmoe_status_t rcmoe_coll__setup_lossless(struct coll_call *k);
rcmoe_status_t rcmoe_coll__progress_lossless(struct coll_call *k);
/* Every transfer and worker job of the call finished. */
int rcmoe_coll__host_complete(const struct coll_call *k);

/* Grow g to hold `need` bytes of `kind` (a host request is met by pinned memory too). Pinned
 * and device memory only inside rcmoe_gpu_enter/leave; what they replace is retired to the comm
 * (freed at close). ar_gpu.c. */
rcmoe_status_t rcmoe_coll__grow(struct rcmoe_coll_comm *c, struct rcmoe_growbuf *g, size_t need,
				int kind);
/* Free g if it holds malloc'd memory (pinned and device memory go in rcmoe_coll_gpu_close). */
void rcmoe_coll__buf_free_host(struct rcmoe_growbuf *g);

#endif
