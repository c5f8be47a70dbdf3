/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Window dedup (codec 4, RCMOE_CODEC_WDEDUP): exact dedup across the messages of one operation
 * on one connection, the all-to-all path's "collaboration dedup" (Occult). Unlike the one-buffer
 * dedup of rcmoe/codec.h, a block may refer to a block an earlier message of the same operation
 * carried, so both ends keep state: the sender a window of the raw blocks it sent (to byte-compare
 * candidates: hash collisions never match), the receiver a window of the blocks it decoded (what
 * references copy). Both windows number the literal blocks of an "epoch" (one operation) 0, 1, ...
 * and hold the last W of them, W = window bytes / block bytes; the sender references only blocks
 * the receiver still holds, and the receiver refuses any other reference.
 *
 * Composed with LSQ: duplicates are removed first, then the literal blocks (one LSQ block each)
 * are LSQ-encoded as one inner stream. A reference copies the receiver's decoded copy of its
 * literal, so a duplicated row decodes to exactly the values of its first copy, whatever the
 * stochastic rounding drew for it.
 *
 * Messages must be encoded, and decoded, one at a time and in their order on the connection
 * (each call reads and updates its window). Byte layout and matching rule:
 * docs/stream-format.md. The encoder and decoder allocate their per-message scratch (and the
 * windows, at their first use); none prints or keeps state outside the windows.
 */
#ifndef RCMOE_WDEDUP_H
#define RCMOE_WDEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "rcmoe/codec.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RCMOE_WDEDUP_PREAMBLE_BYTES 32

/* Sender side of one connection. Create empty; the first encode allocates. */
struct rcmoe_wdedup_tx {
	uint64_t window_bytes; /* the window's size (RCMOE_DEDUP_WINDOW) */
	uint32_t min_block;    /* smallest block it will see: sizes the per-slot tables */
	uint32_t bb;           /* block bytes of the current epoch */
	uint64_t w;            /* window blocks of the current epoch: window_bytes / bb */
	uint64_t epoch;        /* current epoch (0: none yet) */
	uint64_t op;           /* the operation the epoch belongs to */
	uint64_t count;        /* literals numbered in the epoch so far */
	uint64_t inserted;     /* dictionary inserts since it was last rebuilt */
	uint8_t *ring;         /* window_bytes: raw bytes of literal e at (e mod w) * bb */
	uint64_t *slot_hash;   /* per slot: the block's hash */
	uint64_t *slot_num;    /* per slot: literal number + 1 (0: empty) */
	uint32_t *slot_len;    /* per slot: bytes */
	uint64_t *dict_key;    /* hash -> latest literal number with it (0: empty slot) */
	uint64_t *dict_val;
	uint64_t dict_size; /* a power of two >= 4 x the most slots */
	/* the last encode, for the counters */
	uint64_t last_blocks, last_duplicates, last_saved_bytes;
};

/* Receiver side of one connection. */
struct rcmoe_wdedup_rx {
	uint64_t window_bytes;
	uint32_t min_block;
	uint32_t bb;
	uint64_t w;
	uint64_t epoch; /* 0: none yet */
	uint64_t count;
	uint8_t *ring;      /* decoded bytes of literal e at (e mod w) * bb */
	uint32_t *slot_len; /* per slot */
	uint64_t last_blocks, last_duplicates, last_saved_bytes;
};

/* window_bytes: at least RCMOE_WDEDUP_MIN_WINDOW; min_block: the smallest block bytes any stream
 * of the connection will use (a multiple of 4 >= RCMOE_DEDUP_MIN_BLOCK). Nothing is allocated
 * until the first message. RCMOE_ERR_INVALID for bad sizes. */
#define RCMOE_WDEDUP_MIN_WINDOW (64u << 10)
rcmoe_status_t rcmoe_wdedup_tx_init(struct rcmoe_wdedup_tx *tx, uint64_t window_bytes,
				    uint32_t min_block);
void rcmoe_wdedup_tx_free(struct rcmoe_wdedup_tx *tx);
rcmoe_status_t rcmoe_wdedup_rx_init(struct rcmoe_wdedup_rx *rx, uint64_t window_bytes,
				    uint32_t min_block);
void rcmoe_wdedup_rx_free(struct rcmoe_wdedup_rx *rx);

/* One message's encoding. `op` names the operation: a message of another operation than the
 * previous one (or of another block size) starts a new epoch, so references never cross
 * operations. lsq.bits 0: lossless; else the literal blocks are LSQ-encoded with `lsq` (its block
 * times the dtype's size must be block_bytes). op_id is stamped into the stream (and the inner
 * LSQ stream's op_id is lsq.op_id). */
struct rcmoe_wdedup_cfg {
	uint64_t op;
	uint64_t op_id;
	uint32_t block_bytes; /* a multiple of 4 in [min_block, window_bytes] */
	struct rcmoe_lsq_cfg lsq;
};

/* Largest stream for `bytes`: header, preamble, table and all blocks literal (raw, or the LSQ
 * bound of all of them); 0 for a bad cfg. */
size_t rcmoe_wdedup_bound(size_t bytes, const struct rcmoe_wdedup_cfg *cfg);

/* Encode `bytes` at src against the sender's window. The window is updated (the message is
 * "committed") only when the stream is shorter than `bytes`: a longer stream would go raw,
 * which the receiver never records, so the window must not record it either. *committed says
 * which; *len is the stream's length either way. cap must be >= rcmoe_wdedup_bound
 * (RCMOE_ERR_OVERFLOW, nothing written or committed, otherwise). */
rcmoe_status_t rcmoe_wdedup_encode(struct rcmoe_wdedup_tx *tx, const struct rcmoe_wdedup_cfg *cfg,
				   const void *src, size_t bytes, void *dst, size_t cap,
				   size_t *len, int *committed);

/* Full validation of a window-dedup stream against the receiver's window (unchanged) and a
 * destination of dst_bytes: header, preamble (epoch and base in step with the window), every
 * table entry (a literal is the next number; a reference must be earlier, within the window, and
 * to a block of its own length), the literal section (raw bytes, or a valid LSQ stream of
 * exactly the literal bytes). On failure *why (may be NULL) names the first fault. */
rcmoe_status_t rcmoe_wdedup_validate(const struct rcmoe_wdedup_rx *rx, const void *src, size_t len,
				     size_t dst_bytes, struct rcmoe_wire_header *hdr,
				     const char **why);
/* Scratch rcmoe_wdedup_decode needs for this (validated) stream: the decoded literal blocks when
 * LSQ-composed, 0 when lossless. */
size_t rcmoe_wdedup_decode_scratch(const struct rcmoe_wire_header *hdr);
/* Validate, then decode into dst and update the window. dst (and the window) are untouched on
 * error. scratch: rcmoe_wdedup_decode_scratch bytes (may be NULL when that is 0); NULL with
 * scratch_bytes 0 for an LSQ stream makes the decoder allocate it. */
rcmoe_status_t rcmoe_wdedup_decode(struct rcmoe_wdedup_rx *rx, const void *src, size_t len,
				   void *dst, size_t dst_bytes, void *scratch, size_t scratch_bytes,
				   size_t *out_bytes, const char **why);

#ifdef __cplusplus
}
#endif
#endif
