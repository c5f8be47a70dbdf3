/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Collaboration dedup on the all-to-all path (RCMOE_A2A_DEDUP): each connection's window of the
 * blocks already sent (or received) in the current operation, and the CPU codec jobs that encode
 * and decode against it (the codec: rcmoe/wdedup.h).
 *
 * A window is read and updated by every message, so a connection's window-dedup messages are
 * coded one at a time and in their order: data.c submits a send's encode only when it is the
 * next send to hand to the transport (every earlier one is encoded and posted), and a receive's
 * decode only when no earlier receive of the connection may still hold a window-dedup stream.
 * So no two jobs of one window ever run at once, and the fields below are only touched by the
 * job running and, once it is done, by NCCL's proxy thread.
 *
 * Operations: the profiler chain names the operation (the Coll or P2p event) each message
 * belongs to (msginfo.h, op_serial); a send of another operation starts a new epoch of the
 * window, which the receiver learns from the stream. Host buffers only: a GPU buffer is sent
 * with the stateless codec (LSQ) or raw, and a window-dedup stream arriving into a GPU buffer is
 * refused.
 */
#ifndef RCMOE_A2A_DEDUP_H
#define RCMOE_A2A_DEDUP_H

#include "rcmoe/params.h"
#include "rcmoe/status.h"
#include "rcmoe/wdedup.h"
#include "cpu_codec.h"

struct rcmoe_a2a_dedup {
	int is_send;
	struct rcmoe_wdedup_tx tx; /* send comms */
	struct rcmoe_wdedup_rx rx; /* recv comms */
	/* the message being coded (one at a time, see above) */
	struct rcmoe_wdedup_cfg cfg; /* encode */
	void *scratch;               /* decode: room for the decoded literal blocks */
	size_t scratch_bytes;
	const char *why; /* decode: why the stream was refused */
	int committed;   /* encode: the stream goes out, and the window holds its blocks */
};

/* The window of a new comm, sized by RCMOE_DEDUP_WINDOW (its memory comes at the first
 * deduplicated message); NULL in *out when dedup is off. */
rcmoe_status_t rcmoe_a2a_dedup_create(const struct rcmoe_params *p, int is_send,
				      struct rcmoe_a2a_dedup **out);
void rcmoe_a2a_dedup_destroy(struct rcmoe_a2a_dedup *d);

/* Fill `job` to encode `bytes` at src into dst (cap bytes) with `cfg` against d's window. When
 * done: job->out_len is the stream's length when it is to be sent, else (not shorter, nothing
 * committed) `bytes`, which sends the raw bytes. */
void rcmoe_a2a_dedup_encode_job(struct rcmoe_a2a_dedup *d, struct rcmoe_cpu_job *job,
				const struct rcmoe_wdedup_cfg *cfg, const void *src, size_t bytes,
				void *dst, size_t cap);
/* Fill `job` to decode the stream (len bytes) into dst (dst_bytes) against d's window, with
 * scratch for LSQ-composed streams. job->status is RCMOE_ERR_MALFORMED (d->why says why) for a
 * stream the window refuses: then nothing was written. */
void rcmoe_a2a_dedup_decode_job(struct rcmoe_a2a_dedup *d, struct rcmoe_cpu_job *job,
				const void *src, size_t len, void *dst, size_t dst_bytes,
				void *scratch, size_t scratch_bytes);

#endif
