/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Window dedup (codec 4) on the GPU: the same streams, byte for byte, as the CPU reference of
 * rcmoe/wdedup.h for the same input and window history, with the sender's window (raw blocks,
 * per-slot tables, hash dictionary and numbering) in device memory, and the receiver's ring in
 * device memory beside a host copy of its bookkeeping (what rcmoe_wdedup_validate reads).
 *
 * The matching rule of docs/stream-format.md decides every block from the committed history
 * and the message alone, so the encoder needs no sequential pass: per block, in parallel, a
 * hash, the first block of the message with that hash, the window candidate (byte-compared with
 * the device ring), the message candidate (byte-compared), then one scan numbers the literals.
 * Whether a message is committed (its stream shorter than its bytes) is decided on the device
 * too, and the window takes it there: nothing about the window crosses to the host between
 * messages.
 *
 * Like every launcher in rcmoe/kernels.h these only enqueue kernels on `stream` (no
 * synchronization, no cudaMemset/cudaMemcpy); the init and free functions allocate and free
 * device memory and must run outside the data path. A window's messages must be encoded (and
 * decoded) in their order on the connection, on one stream or in stream order.
 */
#ifndef RCMOE_WDEDUP_GPU_H
#define RCMOE_WDEDUP_GPU_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#include "rcmoe/wdedup.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sender side of one connection, its window in one device allocation. */
struct rcmoe_gpu_wdedup_tx {
	uint64_t window_bytes;
	uint32_t min_block;
	uint64_t slots;     /* window_bytes / min_block */
	uint64_t dict_size; /* a power of two >= 4 x slots, as the CPU dictionary */
	uint8_t *d_mem;     /* state, ring, slot tables, dictionary */
	size_t mem_bytes;
};

/* What one encode reports, written by the device into d_result (device memory, or host memory
 * mapped into the device) once the stream is complete. */
struct rcmoe_gpu_wdedup_result {
	uint64_t len;           /* the stream's bytes (0 after the first phase of an LSQ encode) */
	uint64_t committed;     /* 1: len < bytes, the windows take the message; 0: send it raw */
	uint64_t blocks;        /* the message's blocks */
	uint64_t duplicates;    /* blocks sent as references (0 when not committed) */
	uint64_t saved_bytes;   /* duplicates x block bytes (0 when not committed) */
	uint64_t nlit;          /* literal blocks */
	uint64_t lit_raw_bytes; /* their bytes, before LSQ: rcmoe_gpu_wdedup_finish_lsq's input */
};

/* Same sizes as rcmoe_wdedup_tx_init. Allocates the window (device memory, about 1.6 x
 * window_bytes for 256-byte blocks) and clears it with kernels on `stream`: the first encode
 * must follow on the same stream (or after it). RCMOE_ERR_INVALID, _NOMEM, _CUDA. */
rcmoe_status_t rcmoe_gpu_wdedup_tx_init(struct rcmoe_gpu_wdedup_tx *tx, uint64_t window_bytes,
					uint32_t min_block, cudaStream_t stream);
/* Frees the window (cudaFree synchronizes: not from the data path). Safe on a zeroed struct. */
void rcmoe_gpu_wdedup_tx_free(struct rcmoe_gpu_wdedup_tx *tx);

/* Scratch bytes one encode of `bytes` with cfg needs (LSQ: the gathered literals and the LSQ
 * encoder's scratch included); 0 for a bad cfg. */
size_t rcmoe_gpu_wdedup_work_bytes(size_t bytes, const struct rcmoe_wdedup_cfg *cfg);

/* Encode `bytes` at d_src (4-byte aligned) against the device window into d_dst (16-byte
 * aligned, cap >= rcmoe_wdedup_bound), with d_work (16-byte aligned) of
 * rcmoe_gpu_wdedup_work_bytes.
 * - Lossless (cfg->lsq.bits 0): the whole encode; *d_result tells the length and whether the
 *   window took the message, exactly as rcmoe_wdedup_encode's *len and *committed.
 * - With LSQ: the first phase only. The table is written and the literal blocks gathered into
 *   d_work; d_result->lit_raw_bytes says how many. The LSQ encoder's grid depends on that
 *   count, so the caller reads it on the host (after an event) and then calls
 *   rcmoe_gpu_wdedup_finish_lsq with the same arguments; no other encode of this window may
 *   come between the two.
 * d_work must not be reused before the encode (both phases) has run. */
rcmoe_status_t rcmoe_gpu_wdedup_encode(struct rcmoe_gpu_wdedup_tx *tx,
				       const struct rcmoe_wdedup_cfg *cfg, const void *d_src,
				       size_t bytes, void *d_dst, size_t cap, void *d_work,
				       size_t work_bytes, struct rcmoe_gpu_wdedup_result *d_result,
				       cudaStream_t stream);
/* Second phase of an LSQ-composed encode, with the first phase's arguments (d_src still holding
 * the message) and its lit_raw_bytes: LSQ-codes the gathered literals, writes the preamble and
 * header, fills *d_result and commits the message to the window when the stream is shorter
 * than `bytes`. */
rcmoe_status_t rcmoe_gpu_wdedup_finish_lsq(struct rcmoe_gpu_wdedup_tx *tx,
					   const struct rcmoe_wdedup_cfg *cfg, const void *d_src,
					   size_t bytes, uint64_t lit_raw_bytes, void *d_dst,
					   size_t cap, void *d_work, size_t work_bytes,
					   struct rcmoe_gpu_wdedup_result *d_result,
					   cudaStream_t stream);

/* Receiver side: the window's bookkeeping on the host (meta: epoch, numbering, per-slot lengths;
 * its ring stays NULL), the decoded blocks in device memory. */
struct rcmoe_gpu_wdedup_rx {
	struct rcmoe_wdedup_rx meta;
	uint8_t *d_ring;
};

/* Same sizes as rcmoe_wdedup_rx_init; allocates the device ring and the host slot table. */
rcmoe_status_t rcmoe_gpu_wdedup_rx_init(struct rcmoe_gpu_wdedup_rx *rx, uint64_t window_bytes,
					uint32_t min_block);
void rcmoe_gpu_wdedup_rx_free(struct rcmoe_gpu_wdedup_rx *rx);

/* Scratch bytes rcmoe_gpu_wdedup_decode needs for a stream with this (validated) header: the
 * decoded literals and the LSQ decoder's scratch when LSQ-composed, else 0. */
size_t rcmoe_gpu_wdedup_decode_work_bytes(const struct rcmoe_wire_header *hdr);

/* Validate the stream (its host copy h_src of len bytes) against the window with
 * rcmoe_wdedup_validate, then decode its device copy d_src (16-byte aligned, the same bytes)
 * into d_dst and advance the window, as rcmoe_wdedup_decode does. Nothing is enqueued and the
 * window is unchanged on error; *why names a refused stream's fault. */
rcmoe_status_t rcmoe_gpu_wdedup_decode(struct rcmoe_gpu_wdedup_rx *rx, const void *h_src,
				       size_t len, const void *d_src, void *d_dst, size_t dst_bytes,
				       void *d_work, size_t work_bytes, size_t *out_bytes,
				       const char **why, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
