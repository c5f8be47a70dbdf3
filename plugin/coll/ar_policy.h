/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which way each all-reduce call goes: losslessly (exact two-step), PTS (each rank's stream to
 * every rank, accumulated in rank order) or LSQ two-step. Chosen per call from the RCMOE_AR_*
 * settings, the datatype and the size; every rank chooses the same, since connect checked that
 * all ranks have the same settings (their hello) and NCCL gives every rank the same calls.
 */
#ifndef RCMOE_AR_POLICY_H
#define RCMOE_AR_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "rcmoe/params.h"
#include "rcmoe/status.h"

enum { RCMOE_AR_LOSSLESS = 0, RCMOE_AR_PTS = 1, RCMOE_AR_LSQ = 2, RCMOE_AR_NMODES = 3 };

/* The settings every rank of a collective comm must share (they travel in the hello). */
struct rcmoe_ar_settings {
	int codec;      /* RCMOE_AR_LOSSLESS (compression off), _PTS or _LSQ */
	double density; /* PTS */
	int bits;       /* LSQ */
	uint32_t block; /* LSQ block (RCMOE_LSQ_BLOCK) */
	uint64_t min_bytes;
	uint64_t seed;
};

/* Resolve RCMOE_AR_CODEC against RCMOE_AR_DENSITY and RCMOE_AR_BITS. A contradiction (auto with
 * both set, pts without a density, lsq without bits) is a WARN naming the variables and
 * RCMOE_ERR_USAGE. */
rcmoe_status_t rcmoe_ar_settings_from_params(const struct rcmoe_params *p,
					     struct rcmoe_ar_settings *out);
/*
 * Two decisions, one per level, made consistent here (docs/compression.md, "Which all-reduces
 * are compressed"):
 *
 * - Whole all-reduces (the tuner, tuner.c, which sees the collective's size but no datatype):
 *   rcmoe_ar_steer says whether one of `bytes` goes to collNet (CollNetChain), i.e. compression
 *   is on and bytes >= RCMOE_AR_MIN_BYTES. Smaller ones are kept on NCCL's own algorithms.
 * - Calls (the collective side, which sees one chunk of a collective at a time, never the
 *   collective): NCCL cuts a CollNetChain all-reduce into calls of chunkSize bytes per channel of
 *   a group, chunkSize between 32 KiB and 256 KiB with NCCL's default buffers (NCCL 2.28.9
 *   enqueue.cc:2037-2040), so a call is often smaller than the collective's threshold. A call is
 *   therefore coded when it holds at least min(RCMOE_AR_MIN_BYTES, RCMOE_AR_CALL_FLOOR) bytes:
 *   every call of a steered collective is, except the short last call of a collective on
 *   registered buffers (and calls under NCCL_BUFFSIZE below 256 KiB), which are summed exactly.
 */
#define RCMOE_AR_CALL_FLOOR 32768u

/* 1 when a whole all-reduce of `bytes` bytes should be steered to collNet and compressed. */
int rcmoe_ar_steer(const struct rcmoe_ar_settings *s, size_t bytes);
/* The mode of one call of `count` elements of `dtype` (NCCL numbering). */
int rcmoe_ar_choose(const struct rcmoe_ar_settings *s, int dtype, size_t count);
/* "lossless", "PTS", "LSQ". */
const char *rcmoe_ar_mode_name(int mode);
/* One line for logs: "all-reduce PTS density 0.01 from 65536 bytes" and the like. */
void rcmoe_ar_describe(const struct rcmoe_ar_settings *s, char *out, size_t size);

#endif
